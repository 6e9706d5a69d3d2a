//! Recordings, as operators see them: `GET /admin/recordings` lists the recordings in
//! progress, the last 1000 finished ones and any whose files still wait for upload from before
//! a restart, with their state, files (local path, object key, upload state), size and
//! duration.

use super::AdminState;
use super::error::ErrorBody;
use super::sessions::rfc3339;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

/// The recording routes (state applied by the admin router).
pub fn routes() -> axum::Router<AdminState> {
    axum::Router::new().route("/admin/recordings", get(list_recordings))
}

/// Recordings, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingList {
    pub recordings: Vec<RecordingItem>,
}

/// One recording.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingItem {
    /// `rec_...`, as in the `recording.*` events.
    pub id: String,
    pub room: String,
    pub session: String,
    pub subject: String,
    /// `recording`; then `pending_upload` (files queued, retried while the storage fails),
    /// `uploaded` (every file is in storage), `failed` (a write failed, or a file cannot be
    /// uploaded), or `stopped` (no storage: its files are complete and kept locally).
    pub state: String,
    /// Why it stopped: `stopped`, `max-duration`, `write-failed`.
    pub reason: Option<String>,
    /// Local directory of its files.
    pub path: String,
    /// Closed segments.
    pub segments: Vec<SegmentItem>,
    /// Bytes on disk now, open segment included.
    pub size_bytes: u64,
    /// Closed segments' total duration.
    pub duration_ms: u64,
    /// RFC 3339.
    pub started_at: String,
    /// Packets the recording itself lost (its queue was full); viewers lose none.
    pub dropped_packets: u64,
    /// The `[[recording.storage]]` its files go to; absent: kept locally.
    pub storage: Option<String>,
    /// Its files and where each stands (with a storage).
    pub files: Vec<FileItem>,
}

/// One recorded file and its upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileItem {
    pub segment: u32,
    /// Local path (gone after upload with `delete_after_upload`).
    pub path: String,
    /// Object key in the storage's bucket.
    pub key: String,
    /// `recording`, `pending_upload`, `uploaded`, `failed`.
    pub state: String,
    /// Bytes on disk, or uploaded once the local file is deleted.
    pub size_bytes: u64,
    /// Failed upload attempts so far, and the last one's error.
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// One closed segment.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentItem {
    pub index: u32,
    /// File names in `path`.
    pub files: Vec<String>,
    pub duration_ms: u64,
}

/// Recordings in progress and recently finished.
#[utoipa::path(
    get,
    path = "/admin/recordings",
    tag = "recordings",
    responses(
        (status = 200, description = "Recordings, oldest first", body = RecordingList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_recordings(State(state): State<AdminState>) -> Json<RecordingList> {
    let entries = state
        .recordings
        .as_ref()
        .map(|r| r.list())
        .unwrap_or_default();
    let recordings = entries
        .into_iter()
        .map(|e| {
            let size_bytes = std::fs::read_dir(&e.dir)
                .map(|dir| {
                    dir.flatten()
                        .filter_map(|f| f.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            let duration_ms = e.segments.iter().map(|s| s.2.as_millis() as u64).sum();
            RecordingItem {
                id: e.id,
                room: e.room,
                session: e.session,
                subject: e.subject,
                state: e.state.to_owned(),
                reason: e.reason,
                path: e.dir.display().to_string(),
                segments: e
                    .segments
                    .into_iter()
                    .map(|(index, files, duration)| SegmentItem {
                        index,
                        files,
                        duration_ms: duration.as_millis() as u64,
                    })
                    .collect(),
                size_bytes,
                duration_ms,
                started_at: rfc3339(e.started_at),
                dropped_packets: e.dropped_packets,
                storage: e.storage,
                files: e
                    .files
                    .into_iter()
                    .map(|f| FileItem {
                        segment: f.file.segment,
                        size_bytes: std::fs::metadata(&f.file.path)
                            .map_or(f.uploaded_bytes, |m| m.len()),
                        path: f.file.path.display().to_string(),
                        key: f.file.key,
                        state: serde_json::to_value(f.state)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        attempts: f.file.attempts,
                        last_error: f.file.last_error,
                    })
                    .collect(),
            }
        })
        .collect();
    Json(RecordingList { recordings })
}
