//! A room: one publisher slot, the audio/video hubs its viewers hang off, and who is in it.
//!
//! Occupancy counts sessions still being set up (reserved at admission) as well as live
//! ones, so limits decided by room policy hold under concurrent joins (see `admission`).

use super::forward::TrackHub;
use super::tap::{MediaTap, Tapped};
use crate::auth::{Action, RoomCounts};
use parking_lot::Mutex;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::Arc;
use std::time::Duration;

pub struct Room {
    pub name: String,
    pub audio: Arc<TrackHub>,
    pub video: Arc<TrackHub>,
    occupancy: Mutex<Occupancy>,
    /// Held while room policy decides on a join, so each decision sees exact counts.
    pub(super) admission: tokio::sync::Mutex<()>,
    /// Whether `room.started` was announced (so `room.finished` is, once).
    started: std::sync::atomic::AtomicBool,
}

/// The live publisher of a room.
#[derive(Debug, Clone)]
pub struct PublisherSlot {
    pub session: String,
    pub subject: String,
}

#[derive(Default)]
struct Occupancy {
    publisher: Option<PublisherSlot>,
    viewers: u32,
    /// Admitted, still being set up: their subjects.
    pending_publishers: Vec<String>,
    pending_viewers: u32,
    /// Requests between lookup and admission; they keep the room alive.
    holds: u32,
}

impl Room {
    pub fn new(name: String, keyframe_interval: Duration) -> Self {
        Room {
            name,
            audio: Arc::new(TrackHub::new(keyframe_interval)),
            video: Arc::new(TrackHub::new(keyframe_interval)),
            occupancy: Mutex::new(Occupancy::default()),
            admission: tokio::sync::Mutex::new(()),
            started: Default::default(),
        }
    }

    pub fn hub(&self, kind: RtpCodecKind) -> &Arc<TrackHub> {
        match kind {
            RtpCodecKind::Audio => &self.audio,
            _ => &self.video,
        }
    }

    /// Tap this room's media (both kinds) with a queue of `capacity` packets.
    pub fn tap(&self, capacity: usize) -> MediaTap {
        MediaTap::attach(
            [
                (RtpCodecKind::Audio, self.audio.clone() as Arc<dyn Tapped>),
                (RtpCodecKind::Video, self.video.clone() as Arc<dyn Tapped>),
            ],
            capacity,
        )
    }

    /// Sessions in the room, live or being set up.
    pub fn counts(&self) -> RoomCounts {
        let o = self.occupancy.lock();
        RoomCounts {
            publishers: o.publisher.is_some() as u32 + o.pending_publishers.len() as u32,
            viewers: o.viewers + o.pending_viewers,
        }
    }

    /// Whether a publisher other than `subject` holds the room or is being set up for it.
    pub fn published_by_other(&self, subject: &str) -> bool {
        let o = self.occupancy.lock();
        o.publisher.as_ref().is_some_and(|p| p.subject != subject)
            || o.pending_publishers.iter().any(|s| s != subject)
    }

    /// What room policy sees for a new `action` request: the counts without the caller, and
    /// for a publish that takes over the room (`replace`), without the publisher it would
    /// replace — whose subject is returned.
    pub fn counts_for(&self, action: Action, replace: bool) -> (RoomCounts, Option<String>) {
        let o = self.occupancy.lock();
        let mut counts = RoomCounts {
            publishers: o.publisher.is_some() as u32 + o.pending_publishers.len() as u32,
            viewers: o.viewers + o.pending_viewers,
        };
        let mut replacing = None;
        if action == Action::Publish && replace {
            // One publisher per room: a new one replaces whoever holds the slot when it is
            // ready, including publishers still being set up.
            counts.publishers = 0;
            replacing = o.publisher.as_ref().map(|p| p.subject.clone());
        }
        (counts, replacing)
    }

    /// Whether a publisher holds the room or is being set up for it.
    pub fn has_publisher(&self) -> bool {
        let o = self.occupancy.lock();
        o.publisher.is_some() || !o.pending_publishers.is_empty()
    }

    pub fn publisher(&self) -> Option<PublisherSlot> {
        self.occupancy.lock().publisher.clone()
    }

    pub(super) fn reserve(&self, action: Action, subject: &str) {
        let mut o = self.occupancy.lock();
        match action {
            Action::Publish => o.pending_publishers.push(subject.to_owned()),
            Action::Play => o.pending_viewers += 1,
        }
    }

    pub(super) fn unreserve(&self, action: Action, subject: &str) {
        let mut o = self.occupancy.lock();
        match action {
            Action::Publish => remove_one(&mut o.pending_publishers, subject),
            Action::Play => o.pending_viewers = o.pending_viewers.saturating_sub(1),
        }
    }

    /// A reserved viewer is live: one step, so counts never see it twice or not at all.
    pub(super) fn commit_viewer(&self) {
        let mut o = self.occupancy.lock();
        o.pending_viewers = o.pending_viewers.saturating_sub(1);
        o.viewers += 1;
    }

    /// A reserved publisher is live; returns the one it replaces.
    pub(super) fn commit_publisher(&self, slot: PublisherSlot) -> Option<PublisherSlot> {
        let mut o = self.occupancy.lock();
        remove_one(&mut o.pending_publishers, &slot.subject);
        o.publisher.replace(slot)
    }

    /// Clear the publisher slot if `session` still holds it.
    pub(super) fn clear_publisher(&self, session: &str) {
        let mut o = self.occupancy.lock();
        if o.publisher.as_ref().is_some_and(|p| p.session == session) {
            o.publisher = None;
        }
    }

    pub(super) fn viewer_left(&self) {
        let mut o = self.occupancy.lock();
        o.viewers = o.viewers.saturating_sub(1);
    }

    pub(super) fn hold(&self) {
        self.occupancy.lock().holds += 1;
    }

    pub(super) fn release_hold(&self) {
        let mut o = self.occupancy.lock();
        o.holds = o.holds.saturating_sub(1);
    }

    /// Mark the room started (its first session is live); true the first time only.
    pub(super) fn mark_started(&self) -> bool {
        !self
            .started
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `room.started` was announced for it.
    pub fn was_started(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// True when nothing references the room any more and it can be dropped.
    pub fn is_idle(&self) -> bool {
        let o = self.occupancy.lock();
        o.holds == 0
            && o.viewers == 0
            && o.pending_viewers == 0
            && o.pending_publishers.is_empty()
            && o.publisher.is_none()
    }
}

fn remove_one(subjects: &mut Vec<String>, subject: &str) {
    if let Some(i) = subjects.iter().position(|s| s == subject) {
        subjects.swap_remove(i);
    }
}
