//! Recordings, as operators see them: `GET /admin/recordings` lists the recordings in
//! progress and the last 1000 finished ones, with their state, files, size and duration.

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
    /// `recording`, or `stopped` (its files are complete; upload to storage is not built yet).
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
            }
        })
        .collect();
    Json(RecordingList { recordings })
}
