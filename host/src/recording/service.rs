//! The recording service: records publish sessions as the recorder plugins decide.
//!
//! It follows the event bus as a durable sink (it must see every `publish.started` and
//! `publish.ended`; taking an event is a channel send that never blocks) and handles them in
//! order on one task. At `publish.started` it asks the [`RecordingTrigger`] with the session's
//! room, identity (attributes included) and tracks; a plan starts a [`Recording`] on the
//! room's tap, in `{recording.dir}/{recording id}/`. At `publish.ended` (the publisher left,
//! was replaced or deleted, or the server shuts down) the recording is stopped and its last
//! segment closed. A recording that ends by itself (maximum duration, a failed write) is
//! reported when it does. Events: `recording.started`, `recording.segment_closed`,
//! `recording.stopped`, `recording.failed` (and, from [`super::upload`], `recording.uploaded`
//! and `recording.upload_failed`).
//!
//! With a storage configured, each file is handed to the upload queue when it is created and
//! again when it is closed; the queue uploads it to the key the plugin's template names.

use super::sink::{Ended, Plan, Recording, TAP_QUEUE};
use super::trigger::{PublishInfo, RecordingTrigger};
use super::upload::config::StorageConfig;
use super::upload::key::{KeyParts, object_key};
use super::upload::queue::{QueuedFile, Stage};
use super::upload::{FileStatus, UploadState, Uploads};
use crate::events::{Event, EventBus, EventData, EventSink};
use crate::sfu::Sfu;
use crate::sfu::session::Peer;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// `[recording]` in config.toml.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Where recordings are written, one directory per recording.
    pub dir: PathBuf,
    /// `[[recording.storage]]`: where recordings are uploaded (none: they stay in `dir`).
    pub storage: Vec<StorageConfig>,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            dir: PathBuf::from("recordings"),
            storage: Vec::new(),
        }
    }
}

/// Finished recordings the catalog remembers (the oldest are forgotten first).
pub const CATALOG_FINISHED: usize = 1000;

/// One recording as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordingEntry {
    pub id: String,
    pub room: String,
    pub session: String,
    pub subject: String,
    /// `recording`, `pending_upload`, `uploaded`, `failed`, or `stopped` (files complete and
    /// kept locally: no storage).
    pub state: &'static str,
    /// Why it stopped (`stopped`, `max-duration`, `write-failed`), once it has.
    pub reason: Option<String>,
    /// Local directory of its files.
    pub dir: PathBuf,
    /// Closed segments: (index, file names, duration).
    pub segments: Vec<(u32, Vec<String>, Duration)>,
    pub started_at: SystemTime,
    pub dropped_packets: u64,
    /// The storage its files go to; `None`: kept locally.
    pub storage: Option<String>,
    /// Its files as the upload queue knows them (with a storage).
    pub files: Vec<FileStatus>,
}

/// Every recording in progress and the last [`CATALOG_FINISHED`] finished ones.
#[derive(Default)]
struct Catalog {
    entries: BTreeMap<String, RecordingEntry>,
    finished: std::collections::VecDeque<String>,
}

impl Catalog {
    /// Recordings from before a restart whose files are still queued for upload.
    fn add_recovered(&mut self, files: &[FileStatus]) {
        for status in files {
            let f = &status.file;
            let entry = self
                .entries
                .entry(f.recording.clone())
                .or_insert_with(|| RecordingEntry {
                    id: f.recording.clone(),
                    room: f.room.clone(),
                    session: f.session.clone(),
                    subject: f.subject.clone(),
                    state: "stopped",
                    reason: None,
                    dir: f.path.parent().map(PathBuf::from).unwrap_or_default(),
                    segments: Vec::new(),
                    started_at: std::time::UNIX_EPOCH + Duration::from_millis(f.started_at_ms),
                    dropped_packets: 0,
                    storage: Some(f.storage.clone()),
                    files: Vec::new(),
                });
            match entry.segments.iter_mut().find(|s| s.0 == f.segment) {
                Some(segment) => segment.1.push(f.file.clone()),
                None => entry
                    .segments
                    .push((f.segment, vec![f.file.clone()], Duration::ZERO)),
            }
        }
        let ids: Vec<String> = self.entries.keys().cloned().collect();
        self.finished.extend(ids);
    }

    fn finish(&mut self, id: &str, reason: &str, dropped: u64) {
        if let Some(e) = self.entries.get_mut(id) {
            e.state = "stopped";
            e.reason = Some(reason.to_owned());
            e.dropped_packets = dropped;
        }
        self.finished.push_back(id.to_owned());
        while self.finished.len() > CATALOG_FINISHED {
            if let Some(old) = self.finished.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

/// What the service does next, in the order events happened.
enum Work {
    Started {
        room: String,
        session: String,
    },
    Ended {
        room: String,
        session: String,
    },
    /// Answered once everything before it is done.
    Flush(oneshot::Sender<()>),
}

/// Takes the events the service acts on; never blocks.
struct Feed(mpsc::UnboundedSender<Work>);

impl EventSink for Feed {
    fn accept(&self, event: &Arc<Event>) {
        let work = match (&event.data, &event.room) {
            (EventData::PublishStarted { session, .. }, Some(room)) => Work::Started {
                room: room.clone(),
                session: session.clone(),
            },
            (EventData::PublishEnded { session, .. }, Some(room)) => Work::Ended {
                room: room.clone(),
                session: session.clone(),
            },
            _ => return,
        };
        let _ = self.0.send(work);
    }
}

/// A recording in progress: how to stop it and wait for its end.
struct Active {
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
}

/// Records publish sessions; see the module docs.
pub struct RecordingService {
    work: mpsc::UnboundedSender<Work>,
    catalog: Arc<Mutex<Catalog>>,
    uploads: Option<Arc<Uploads>>,
}

impl RecordingService {
    /// Follow `events` and record what `trigger` decides, into `config.dir`, uploading
    /// through `uploads` (when storages are configured).
    pub fn start(
        sfu: Arc<Sfu>,
        trigger: Arc<dyn RecordingTrigger>,
        events: &EventBus,
        config: RecordingConfig,
        uploads: Option<Arc<Uploads>>,
    ) -> Arc<RecordingService> {
        let (tx, rx) = mpsc::unbounded_channel();
        events.add_sink(Arc::new(Feed(tx.clone())));
        let catalog = Arc::new(Mutex::new(Catalog::default()));
        if let Some(uploads) = &uploads {
            catalog.lock().add_recovered(&uploads.all_files());
        }
        let worker = Worker {
            sfu,
            trigger,
            events: events.clone(),
            dir: config.dir,
            active: Arc::new(Mutex::new(HashMap::new())),
            catalog: catalog.clone(),
            uploads: uploads.clone(),
        };
        tokio::spawn(worker.run(rx));
        Arc::new(RecordingService {
            work: tx,
            catalog,
            uploads,
        })
    }

    /// Recordings in progress and recently finished, oldest first, with where their files
    /// stand.
    pub fn list(&self) -> Vec<RecordingEntry> {
        let mut entries: Vec<RecordingEntry> =
            self.catalog.lock().entries.values().cloned().collect();
        if let Some(uploads) = &self.uploads {
            for entry in &mut entries {
                entry.files = uploads.files_of(&entry.id);
                entry.state = overall_state(entry);
            }
        }
        entries
    }

    /// Stop uploading (shutdown, after [`RecordingService::flush`]): queued files stay queued.
    pub fn stop_uploads(&self) {
        if let Some(uploads) = &self.uploads {
            uploads.stop();
        }
    }

    /// Wait until every event published so far has been acted on, and every recording it
    /// stopped has closed its files (shutdown calls this after closing the sessions).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.work.send(Work::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Worker {
    sfu: Arc<Sfu>,
    trigger: Arc<dyn RecordingTrigger>,
    events: EventBus,
    dir: PathBuf,
    active: Arc<Mutex<HashMap<String, Active>>>,
    catalog: Arc<Mutex<Catalog>>,
    uploads: Option<Arc<Uploads>>,
}

impl Worker {
    async fn run(self, mut work: mpsc::UnboundedReceiver<Work>) {
        while let Some(item) = work.recv().await {
            match item {
                Work::Started { room, session } => self.started(&room, &session).await,
                Work::Ended { room, session } => {
                    let active = self.active.lock().remove(&session);
                    if let Some(active) = active {
                        let _ = active.stop.send(());
                        let _ = active.done.await;
                    }
                    if self.trigger.active() {
                        self.trigger.publish_ended(room, session).await;
                    }
                }
                Work::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn started(&self, room_name: &str, session_id: &str) {
        if !self.trigger.active() {
            return;
        }
        let Ok(session) = self.sfu.session(room_name, session_id) else {
            return; // already gone
        };
        let tracks = match &session.pc {
            Peer::Stack(pc) => pc
                .local_description()
                .await
                .map(|d| tracks_of(&d.sdp))
                .unwrap_or_default(),
            Peer::Direct(_) => Vec::new(),
        };
        let info = PublishInfo {
            room: room_name.to_owned(),
            session: session_id.to_owned(),
            subject: session.identity.subject.clone(),
            attributes: session.identity.attributes.clone(),
            tracks,
        };
        let failed = |reason: String| {
            self.events.publish(
                Some(room_name),
                EventData::RecordingFailed {
                    session: session_id.to_owned(),
                    reason,
                },
            );
        };
        let decision = match self.trigger.publish_started(info).await {
            Ok(Some(decision)) => decision,
            Ok(None) => return,
            Err(failure) => return failed(format!("recorder plugin {failure}")),
        };
        let storage = match (&self.uploads, decision.storage.as_deref()) {
            (None, None) => None,
            (None, Some(name)) => {
                return failed(format!(
                    "the recorder plugin named storage {name:?}; no [[recording.storage]] is configured"
                ));
            }
            (Some(uploads), name) => match uploads.storage(name) {
                Ok(storage) => Some((uploads.clone(), storage.clone())),
                Err(e) => return failed(e),
            },
        };
        let id = format!("rec_{}", uuid::Uuid::now_v7().simple());
        let dir = self.dir.join(&id);
        let started_at = SystemTime::now();
        let plan = Plan {
            layout: decision.layout,
            segment_length: decision.segment_length,
            max_duration: decision.max_duration,
            video: decision.video,
            audio: decision.audio,
            dir: dir.clone(),
        };
        let on_opened = on_opened(
            storage.clone(),
            QueuedFile {
                recording: id.clone(),
                room: room_name.to_owned(),
                session: session_id.to_owned(),
                subject: session.identity.subject.clone(),
                started_at_ms: started_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                segment: 0,
                file: String::new(),
                path: dir.clone(),
                storage: String::new(),
                key: String::new(),
                stage: Stage::Writing,
                attempts: 0,
                next_attempt_ms: 0,
                last_error: None,
            },
            decision.key_template.clone(),
            started_at,
        );
        let events = self.events.clone();
        let catalog = self.catalog.clone();
        let (room, sess, rec) = (room_name.to_owned(), session_id.to_owned(), id.clone());
        let uploads = storage.as_ref().map(|(u, _)| u.clone());
        let on_closed = move |closed: super::segment::ClosedSegment| {
            if let Some(uploads) = &uploads {
                for file in &closed.files {
                    uploads.closed(&rec, file);
                }
            }
            if let Some(e) = catalog.lock().entries.get_mut(&rec) {
                e.segments
                    .push((closed.index, closed.files.clone(), closed.duration));
            }
            events.publish(
                Some(&room),
                EventData::RecordingSegmentClosed {
                    recording: rec.clone(),
                    session: sess.clone(),
                    segment: closed.index,
                    files: closed.files,
                    duration_ms: closed.duration.as_millis() as u64,
                },
            );
        };
        self.catalog.lock().entries.insert(
            id.clone(),
            RecordingEntry {
                id: id.clone(),
                room: room_name.to_owned(),
                session: session_id.to_owned(),
                subject: session.identity.subject.clone(),
                state: "recording",
                reason: None,
                dir: dir.clone(),
                segments: Vec::new(),
                started_at,
                dropped_packets: 0,
                storage: storage.as_ref().map(|(_, s)| s.name.clone()),
                files: Vec::new(),
            },
        );
        let tap = session.room.tap(TAP_QUEUE);
        let recording = match Recording::start(tap, plan, on_opened, on_closed) {
            Ok(recording) => recording,
            Err(e) => {
                self.catalog.lock().entries.remove(&id);
                return failed(format!("cannot write {}: {e}", dir.display()));
            }
        };
        let kinds = [(decision.video, "video"), (decision.audio, "audio")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, kind)| kind.to_owned())
            .collect();
        self.events.publish(
            Some(room_name),
            EventData::RecordingStarted {
                recording: id.clone(),
                session: session_id.to_owned(),
                subject: session.identity.subject.clone(),
                kinds,
                dir: dir.display().to_string(),
            },
        );
        let (stop, stopped) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        self.active
            .lock()
            .insert(session_id.to_owned(), Active { stop, done });
        let events = self.events.clone();
        let active = self.active.clone();
        let catalog = self.catalog.clone();
        let (room, sess) = (room_name.to_owned(), session_id.to_owned());
        tokio::spawn(async move {
            tokio::select! {
                _ = stopped => {}
                _ = recording.finished() => { active.lock().remove(&sess); }
            }
            let summary = recording.stop().await;
            let (reason, detail) = match summary.ended {
                Ended::Stopped => ("stopped", String::new()),
                Ended::MaxDuration => ("max-duration", String::new()),
                Ended::WriteFailed(e) => ("write-failed", e),
            };
            catalog.lock().finish(&id, reason, summary.tap_dropped);
            if reason == "write-failed" {
                tracing::error!(recording = %id, room = %room, error = %detail, "recording stopped: a write failed");
            }
            events.publish(
                Some(&room),
                EventData::RecordingStopped {
                    recording: id,
                    session: sess,
                    reason: reason.to_owned(),
                    detail,
                    segments: summary.segments.len() as u32,
                    dropped_packets: summary.tap_dropped,
                },
            );
            let _ = done_tx.send(());
        });
    }
}

/// What the recording thread calls as it creates each file: with a storage, queue the file
/// for upload under its object key.
fn on_opened(
    storage: Option<(Arc<Uploads>, StorageConfig)>,
    template: QueuedFile,
    key_template: String,
    started_at: SystemTime,
) -> super::sink::OnOpened {
    let Some((uploads, storage)) = storage else {
        return Box::new(|_, _| {});
    };
    Box::new(move |segment, name| {
        let ext = name.rsplit('.').next().unwrap_or_default();
        let key = object_key(
            &storage.prefix,
            &key_template,
            &KeyParts {
                room: &template.room,
                subject: &template.subject,
                session: &template.session,
                started_at,
                segment,
                ext,
            },
        );
        uploads.opened(QueuedFile {
            segment,
            file: name.to_owned(),
            path: template.path.join(name),
            storage: storage.name.clone(),
            key,
            ..template.clone()
        });
    })
}

/// A finished recording's state from its files: `failed` if it could not be written or a
/// file cannot be uploaded, `pending_upload` while any file waits, `uploaded` once all are.
fn overall_state(entry: &RecordingEntry) -> &'static str {
    if entry.state == "recording" {
        return "recording";
    }
    let any = |state| entry.files.iter().any(|f| f.state == state);
    if entry.reason.as_deref() == Some("write-failed") || any(UploadState::Failed) {
        "failed"
    } else if any(UploadState::PendingUpload) || any(UploadState::Recording) {
        "pending_upload"
    } else if entry.storage.is_some() && !entry.files.is_empty() {
        "uploaded"
    } else {
        "stopped"
    }
}

/// (is video, MIME type) of each media section of an SDP: its first payload type's codec.
fn tracks_of(sdp: &str) -> Vec<(bool, String)> {
    let mut tracks = Vec::new();
    let mut section: Option<(bool, String)> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut fields = m.split(' ');
            let kind = fields.next().unwrap_or_default();
            let first_pt = fields.nth(2).unwrap_or_default().to_owned();
            section = match kind {
                "video" | "audio" => Some((kind == "video", first_pt)),
                _ => None,
            };
        } else if let (Some((video, pt)), Some(map)) = (&section, line.strip_prefix("a=rtpmap:")) {
            let (map_pt, codec) = map.split_once(' ').unwrap_or_default();
            if map_pt == pt {
                let name = codec.split('/').next().unwrap_or_default();
                let kind = if *video { "video" } else { "audio" };
                tracks.push((*video, format!("{kind}/{name}")));
                section = None;
            }
        }
    }
    tracks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_are_read_from_each_media_section() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        assert_eq!(
            tracks_of(sdp),
            [
                (false, "audio/opus".to_owned()),
                (true, "video/VP8".to_owned())
            ]
        );
    }
}
