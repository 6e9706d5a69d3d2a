//! The upload queue's durable half: one record per recorded file that is not in storage yet,
//! in the store's `uploads.pending` table (next to the webhook outbox, in the same file).
//!
//! A file is recorded here when it is *opened*, not when it is closed: after a `kill -9` the
//! next start finds the segment that was being written (`writing`), and uploads it as it is —
//! the writers leave a file that plays up to its last flushed frame. A record leaves the table
//! only when the storage has confirmed the upload (or the file is gone).

use crate::store::{Store, StoreError, Table};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const PENDING: Table = Table::new("uploads.pending");

/// Records read back per scan at start-up.
const SCAN_PAGE: usize = 1000;

/// Where a queued file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Still being written by a recording.
    Writing,
    /// Complete (or left by a crash): to be uploaded.
    Ready,
}

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedFile {
    pub recording: String,
    pub room: String,
    pub session: String,
    pub subject: String,
    /// Unix milliseconds the recording started.
    pub started_at_ms: u64,
    pub segment: u32,
    /// Its name in the recording's directory (`seg-00001.webm`).
    pub file: String,
    pub path: PathBuf,
    pub storage: String,
    pub key: String,
    pub stage: Stage,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Unix milliseconds before which it is not tried again.
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
}

impl QueuedFile {
    /// Its key in the table: recording ids are time-ordered, so this is recording order.
    pub fn id(&self) -> Vec<u8> {
        id(&self.recording, &self.file)
    }
}

pub fn id(recording: &str, file: &str) -> Vec<u8> {
    format!("{recording}/{file}").into_bytes()
}

/// The table, on the store.
pub struct Queue {
    store: std::sync::Arc<Store>,
}

impl Queue {
    pub fn new(store: std::sync::Arc<Store>) -> Self {
        Queue { store }
    }

    /// Insert or replace `file`'s record, durably.
    pub fn put(&self, file: &QueuedFile) -> Result<(), StoreError> {
        let value = serde_json::to_vec(file).map_err(|e| StoreError::new(e.to_string()))?;
        self.store.write(|w| w.insert(PENDING, &file.id(), &value))
    }

    /// Forget `file` (uploaded, or cannot be).
    pub fn remove(&self, file: &QueuedFile) -> Result<(), StoreError> {
        self.store
            .write(|w| w.remove(PENDING, &file.id()))
            .map(drop)
    }

    /// Every record, in key order. A record that cannot be read is reported and skipped.
    pub fn all(&self) -> Result<Vec<QueuedFile>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .read(|r| r.scan(PENDING, b"", after.as_deref(), SCAN_PAGE))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in page {
                match serde_json::from_slice(&value) {
                    Ok(file) => out.push(file),
                    Err(e) => tracing::error!(
                        record = %String::from_utf8_lossy(&key),
                        error = %e,
                        "unreadable upload record skipped"
                    ),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening_in_recording_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let file = |recording: &str, name: &str| QueuedFile {
            recording: recording.into(),
            room: "r".into(),
            session: "s".into(),
            subject: "u".into(),
            started_at_ms: 1,
            segment: 1,
            file: name.into(),
            path: dir.path().join(name),
            storage: "archive".into(),
            key: format!("k/{name}"),
            stage: Stage::Writing,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
        };
        {
            let queue = Queue::new(std::sync::Arc::new(Store::open(&path).unwrap()));
            queue.put(&file("rec_2", "seg-00001.webm")).unwrap();
            queue.put(&file("rec_1", "seg-00002.webm")).unwrap();
            queue.put(&file("rec_1", "seg-00001.webm")).unwrap();
            let mut ready = file("rec_1", "seg-00001.webm");
            ready.stage = Stage::Ready;
            queue.put(&ready).unwrap();
            queue.remove(&file("rec_1", "seg-00002.webm")).unwrap();
        }
        let queue = Queue::new(std::sync::Arc::new(Store::open(&path).unwrap()));
        let all = queue.all().unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|f| (f.recording.as_str(), f.file.as_str(), f.stage))
            .collect();
        assert_eq!(
            names,
            [
                ("rec_1", "seg-00001.webm", Stage::Ready),
                ("rec_2", "seg-00001.webm", Stage::Writing)
            ]
        );
    }
}
