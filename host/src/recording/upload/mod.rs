//! Uploading recorded files to S3-compatible storage, without ever losing one.
//!
//! Parts:
//! - [`config`]: `[[recording.storage]]` — endpoint, region, bucket, prefix, path style,
//!   credentials, delete-after-upload, part size;
//! - [`key`]: a recorder plugin's key template filled in for one file;
//! - [`queue`]: the durable queue (`uploads.pending` in the one store file): a file is queued
//!   when it is opened, so a crash mid-segment still uploads that segment on the next start;
//! - [`s3`]: one file to one object with aws-sdk-s3 (multipart beyond the part size);
//! - [`worker`]: the task that uploads what is due, one file at a time, and backs off per
//!   storage while a storage fails.
//!
//! [`Uploads`] is what the recording service uses: it names the storage of a recording,
//! is told when each file opens and closes, and says where each file stands.

pub mod config;
pub mod key;
pub mod queue;
pub mod s3;
mod worker;

use crate::events::EventBus;
use crate::store::{Store, StoreError};
use config::StorageConfig;
use parking_lot::Mutex;
use queue::{Queue, QueuedFile, Stage};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First retry of a failed upload; doubled per failure of the same file.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between attempts: a storage that comes back is used within this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Uploaded and failed files remembered for the admin API (the oldest are forgotten).
pub const DONE_REMEMBERED: usize = 10_000;

/// Where one recorded file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Still being written.
    Recording,
    /// Queued (and retried while the storage fails).
    PendingUpload,
    Uploaded,
    /// Cannot be uploaded (its local file is gone).
    Failed,
}

/// One file as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileStatus {
    pub file: QueuedFile,
    pub state: UploadState,
    /// Bytes uploaded (0 until it is).
    pub uploaded_bytes: u64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct UploadCounters {
    pub uploaded: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub bytes: AtomicU64,
}

/// The upload queue and its worker; see the module docs.
pub struct Uploads {
    storages: Vec<StorageConfig>,
    queue: Queue,
    files: Mutex<BTreeMap<Vec<u8>, FileStatus>>,
    /// Storages failing now: not tried again before this (Unix ms).
    held: Mutex<HashMap<String, u64>>,
    done_order: Mutex<std::collections::VecDeque<Vec<u8>>>,
    wake: tokio::sync::Notify,
    events: EventBus,
    counters: UploadCounters,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Uploads {
    /// Read the queue back from `store` (files a crash left half-written become ready) and
    /// start uploading to `storages`.
    pub fn start(
        store: Arc<Store>,
        storages: Vec<StorageConfig>,
        events: EventBus,
    ) -> Result<Arc<Uploads>, StoreError> {
        let queue = Queue::new(store);
        let mut files = BTreeMap::new();
        for mut file in queue.all()? {
            if file.stage == Stage::Writing {
                tracing::warn!(
                    recording = %file.recording, file = %file.path.display(),
                    "a segment was being written when the server stopped: uploading it as it is"
                );
                file.stage = Stage::Ready;
                queue.put(&file)?;
            }
            let status = FileStatus {
                file,
                state: UploadState::PendingUpload,
                uploaded_bytes: 0,
            };
            files.insert(status.file.id(), status);
        }
        if !files.is_empty() {
            tracing::info!(
                files = files.len(),
                "recording uploads resumed from the store"
            );
        }
        let uploads = Arc::new(Uploads {
            storages,
            queue,
            files: Mutex::new(files),
            held: Mutex::new(HashMap::new()),
            done_order: Mutex::new(Default::default()),
            wake: tokio::sync::Notify::new(),
            events,
            counters: UploadCounters::default(),
            worker: Mutex::new(None),
        });
        let worker = tokio::spawn(worker::run(Arc::downgrade(&uploads)));
        *uploads.worker.lock() = Some(worker);
        Ok(uploads)
    }

    /// The storage a recording goes to: `name`, or the first configured. `Err`: the name is
    /// not configured.
    pub fn storage(&self, name: Option<&str>) -> Result<&StorageConfig, String> {
        match name {
            None => self
                .storages
                .first()
                .ok_or_else(|| "no [[recording.storage]] is configured".to_owned()),
            Some(name) => self
                .storages
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("storage {name:?} is not configured")),
        }
    }

    /// A file was created (called by the recording's thread): queued durably before any
    /// media is in it, so a crash cannot orphan it.
    pub fn opened(&self, file: QueuedFile) {
        if let Err(e) = self.queue.put(&file) {
            tracing::error!(file = %file.path.display(), error = %e, "cannot queue a recorded file");
        }
        let status = FileStatus {
            file,
            state: UploadState::Recording,
            uploaded_bytes: 0,
        };
        self.files.lock().insert(status.file.id(), status);
    }

    /// A file was closed: upload it.
    pub fn closed(&self, recording: &str, file: &str) {
        let id = queue::id(recording, file);
        let ready = {
            let mut files = self.files.lock();
            let Some(status) = files.get_mut(&id) else {
                return;
            };
            status.state = UploadState::PendingUpload;
            status.file.stage = Stage::Ready;
            status.file.clone()
        };
        if let Err(e) = self.queue.put(&ready) {
            tracing::error!(file = %ready.path.display(), error = %e, "cannot queue a recorded file");
        }
        self.wake.notify_one();
    }

    /// Every file of `recording` the queue knows, in file order.
    pub fn files_of(&self, recording: &str) -> Vec<FileStatus> {
        let prefix = queue::id(recording, "");
        self.files
            .lock()
            .range(prefix.clone()..)
            .take_while(|(id, _)| id.starts_with(&prefix))
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Every file the queue knows (those of recordings from before a restart included).
    pub fn all_files(&self) -> Vec<FileStatus> {
        self.files.lock().values().cloned().collect()
    }

    /// (files uploaded, failed attempts, bytes uploaded, files waiting) since start.
    pub fn figures(&self) -> (u64, u64, u64, u64) {
        let waiting = self
            .files
            .lock()
            .values()
            .filter(|s| s.state == UploadState::PendingUpload)
            .count() as u64;
        let c = &self.counters;
        (
            c.uploaded.load(Ordering::Relaxed),
            c.failed_attempts.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
            waiting,
        )
    }

    /// Stop uploading (shutdown): what is queued stays queued for the next start.
    pub fn stop(&self) {
        if let Some(worker) = self.worker.lock().take() {
            worker.abort();
        }
    }

    /// Remember `id` as finished, forgetting the oldest beyond [`DONE_REMEMBERED`].
    fn remember_done(&self, id: Vec<u8>) {
        let mut order = self.done_order.lock();
        order.push_back(id);
        while order.len() > DONE_REMEMBERED {
            if let Some(old) = order.pop_front() {
                self.files.lock().remove(&old);
            }
        }
    }
}

/// Now, Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
