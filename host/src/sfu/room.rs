//! A room: one publisher slot and the audio/video hubs its viewers hang off.

use super::forward::TrackHub;
use crate::auth::RoomCounts;
use parking_lot::Mutex;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub struct Room {
    pub name: String,
    pub audio: Arc<TrackHub>,
    pub video: Arc<TrackHub>,
    /// Id of the session currently publishing, if any.
    publisher: Mutex<Option<String>>,
    viewers: AtomicU32,
    /// Sessions being set up for this room; keeps it alive until they register.
    pending: AtomicU32,
}

impl Room {
    pub fn new(name: String, keyframe_interval: Duration) -> Self {
        Room {
            name,
            audio: Arc::new(TrackHub::new(keyframe_interval)),
            video: Arc::new(TrackHub::new(keyframe_interval)),
            publisher: Mutex::new(None),
            viewers: AtomicU32::new(0),
            pending: AtomicU32::new(0),
        }
    }

    pub fn hub(&self, kind: RtpCodecKind) -> &Arc<TrackHub> {
        match kind {
            RtpCodecKind::Audio => &self.audio,
            _ => &self.video,
        }
    }

    pub fn counts(&self) -> RoomCounts {
        RoomCounts {
            publishers: self.publisher.lock().is_some() as u32,
            viewers: self.viewers.load(Ordering::Relaxed),
        }
    }

    pub fn publisher(&self) -> Option<String> {
        self.publisher.lock().clone()
    }

    /// Install `id` as publisher, returning the one it replaces.
    pub fn set_publisher(&self, id: &str) -> Option<String> {
        self.publisher.lock().replace(id.to_owned())
    }

    /// Clear the publisher slot if `id` still holds it.
    pub fn clear_publisher(&self, id: &str) {
        let mut slot = self.publisher.lock();
        if slot.as_deref() == Some(id) {
            *slot = None;
        }
    }

    pub fn viewer_joined(&self) {
        self.viewers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn viewer_left(&self) {
        self.viewers.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn begin_pending(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    pub fn end_pending(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// True when nothing references the room any more and it can be dropped.
    pub fn is_idle(&self) -> bool {
        self.pending.load(Ordering::Relaxed) == 0
            && self.viewers.load(Ordering::Relaxed) == 0
            && self.publisher.lock().is_none()
    }
}
