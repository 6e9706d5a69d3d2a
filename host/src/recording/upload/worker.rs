//! The upload worker: one task, one file at a time, the due file that was queued first.
//!
//! A file fails → it waits [`BACKOFF_FIRST`] doubled per failure up to [`BACKOFF_MAX`], and
//! its storage is held for that long, so a storage that is down costs one attempt per backoff
//! step rather than one per queued file. Nothing is dropped: a file leaves the queue only when
//! the storage confirmed it, or when its local file is gone.

use super::queue::QueuedFile;
use super::s3::{self, UploadError};
use super::{BACKOFF_FIRST, BACKOFF_MAX, UploadState, Uploads, now_ms};
use crate::events::EventData;
use std::collections::HashMap;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Longest the worker sleeps without looking again (it also notices its owner is gone).
const IDLE_WAIT: Duration = Duration::from_secs(1);

pub(super) async fn run(uploads: Weak<Uploads>) {
    let mut clients: HashMap<String, aws_sdk_s3::Client> = HashMap::new();
    loop {
        let Some(uploads) = uploads.upgrade() else {
            return;
        };
        let now = now_ms();
        match next_due(&uploads, now) {
            Some(file) => attempt(&uploads, &mut clients, file).await,
            None => {
                let _ = tokio::time::timeout(IDLE_WAIT, uploads.wake.notified()).await;
            }
        }
    }
}

/// The first queued file that is due, its storage not held.
fn next_due(uploads: &Uploads, now: u64) -> Option<QueuedFile> {
    let held = uploads.held.lock();
    uploads
        .files
        .lock()
        .values()
        .filter(|s| s.state == UploadState::PendingUpload)
        .map(|s| &s.file)
        .find(|f| f.next_attempt_ms <= now && held.get(&f.storage).is_none_or(|&t| t <= now))
        .cloned()
}

async fn attempt(
    uploads: &Uploads,
    clients: &mut HashMap<String, aws_sdk_s3::Client>,
    mut file: QueuedFile,
) {
    let result = match uploads.storage(Some(&file.storage)) {
        Ok(storage) => {
            let storage = storage.clone();
            if !clients.contains_key(&storage.name) {
                clients.insert(storage.name.clone(), s3::client(&storage).await);
            }
            let client = &clients[&storage.name];
            s3::upload(client, &storage, &file.path, &file.key)
                .await
                .map(|size| (size, storage.delete_after_upload))
        }
        // The config changed since the file was queued: keep it until the storage is back.
        Err(e) => Err(UploadError::Storage(e)),
    };
    let id = file.id();
    match result {
        Ok((size, delete)) => {
            uploads.held.lock().remove(&file.storage);
            if let Err(e) = uploads.queue.remove(&file) {
                // Still queued: it is uploaded again (to the same key) after a restart.
                tracing::error!(file = %file.path.display(), error = %e, "cannot dequeue an uploaded file");
            }
            if delete {
                remove_local(&file);
            }
            uploads.counters.uploaded.fetch_add(1, Ordering::Relaxed);
            uploads.counters.bytes.fetch_add(size, Ordering::Relaxed);
            if let Some(s) = uploads.files.lock().get_mut(&id) {
                s.state = UploadState::Uploaded;
                s.uploaded_bytes = size;
            }
            uploads.remember_done(id);
            tracing::info!(recording = %file.recording, key = %file.key, storage = %file.storage, size, "recording file uploaded");
            uploads.events.publish(
                Some(&file.room),
                EventData::RecordingUploaded {
                    recording: file.recording,
                    session: file.session,
                    segment: file.segment,
                    file: file.file,
                    storage: file.storage,
                    key: file.key,
                    size_bytes: size,
                },
            );
        }
        Err(UploadError::Local { path, reason }) => {
            uploads
                .counters
                .failed_attempts
                .fetch_add(1, Ordering::Relaxed);
            let _ = uploads.queue.remove(&file);
            if let Some(s) = uploads.files.lock().get_mut(&id) {
                s.state = UploadState::Failed;
                s.file.last_error = Some(reason.clone());
            }
            uploads.remember_done(id);
            tracing::error!(recording = %file.recording, file = %path, error = %reason, "recorded file cannot be uploaded: it is gone");
            publish_failure(uploads, file, reason, 0);
        }
        Err(UploadError::Storage(reason)) => {
            uploads
                .counters
                .failed_attempts
                .fetch_add(1, Ordering::Relaxed);
            file.attempts += 1;
            let wait = backoff(file.attempts);
            let next = now_ms() + wait.as_millis() as u64;
            file.next_attempt_ms = next;
            file.last_error = Some(reason.clone());
            uploads.held.lock().insert(file.storage.clone(), next);
            if let Err(e) = uploads.queue.put(&file) {
                tracing::error!(file = %file.path.display(), error = %e, "cannot store an upload's retry");
            }
            if let Some(s) = uploads.files.lock().get_mut(&id) {
                s.file = file.clone();
            }
            tracing::warn!(
                recording = %file.recording, key = %file.key, storage = %file.storage,
                attempt = file.attempts, retry_in_ms = wait.as_millis() as u64, error = %reason,
                "recording upload failed; the file stays queued"
            );
            publish_failure(uploads, file, reason, wait.as_millis() as u64);
        }
    }
}

fn publish_failure(uploads: &Uploads, file: QueuedFile, error: String, retry_in_ms: u64) {
    uploads.events.publish(
        Some(&file.room),
        EventData::RecordingUploadFailed {
            recording: file.recording,
            session: file.session,
            segment: file.segment,
            file: file.file,
            storage: file.storage,
            key: file.key,
            attempt: file.attempts.max(1),
            error,
            retry_in_ms,
        },
    );
}

/// The wait after the `attempts`-th failure.
fn backoff(attempts: u32) -> Duration {
    let doubled = BACKOFF_FIRST.saturating_mul(1 << attempts.saturating_sub(1).min(16));
    doubled.min(BACKOFF_MAX)
}

/// Delete an uploaded file, and its recording's directory once that is empty.
fn remove_local(file: &QueuedFile) {
    if let Err(e) = std::fs::remove_file(&file.path) {
        tracing::warn!(file = %file.path.display(), error = %e, "cannot delete an uploaded file");
        return;
    }
    if let Some(dir) = file.path.parent() {
        // Fails (and is meant to) while other files remain.
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), BACKOFF_FIRST);
        assert_eq!(backoff(2), BACKOFF_FIRST * 2);
        assert_eq!(backoff(4), BACKOFF_FIRST * 8);
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
