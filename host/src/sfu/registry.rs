//! The rooms and sessions that exist, by name and id.
//!
//! A room exists while anything references it: a live session, a session being set up, or a
//! request between lookup and admission ([`RoomHold`]). The last one out removes it.
//!
//! [`Registry::totals`]: what the server moved since start, for `/metrics`. The media path
//! counts into each session's and hub's own atomics; what a session or room counted is
//! folded into the registry's totals when it is removed (under the same lock the totals are
//! read under), so the totals never go backwards and the hot path does no extra work.

use super::error::SfuError;
use super::room::Room;
use super::session::Session;
use crate::auth::{Action, RoomCounts};
use crate::events::EventBus;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

pub struct Registry {
    events: EventBus,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// What the rooms removed so far counted (taken under `rooms`' lock, then this one).
    finished_rooms: Mutex<RoomTotals>,
    sessions: Mutex<Sessions>,
    keyframe_interval: Duration,
}

/// Live sessions by id, and how many each client address has.
#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Arc<Session>>,
    by_ip: HashMap<IpAddr, usize>,
    /// What the sessions removed so far moved: publishers, viewers.
    ended: [MediaTotal; 2],
}

/// What the server's sessions and rooms did since start ([`Registry::totals`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Publishers: what they sent us (RTP payload), and packets over the bitrate cap dropped.
    pub publishers: MediaTotal,
    /// Viewers: what we sent them, and packets they could not take (full socket or queue).
    pub viewers: MediaTotal,
    pub rooms: RoomTotals,
}

/// Sessions of one kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaTotal {
    /// Sessions registered since start (live ones included).
    pub started: u64,
    /// Sessions live now.
    pub live: u64,
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
}

/// What the rooms' hubs (audio and video) counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoomTotals {
    /// Rooms existing now.
    pub live: u64,
    /// Keyframe requests (PLI) sent to publishers.
    pub keyframe_requests_sent: u64,
    /// Keyframe requests (PLI/FIR) received from viewers.
    pub viewer_keyframe_requests: u64,
}

impl MediaTotal {
    fn add_session(&mut self, session: &Session) {
        let media = &session.states.media;
        self.started += 1;
        self.packets += media.packets.load(Relaxed);
        self.bytes += media.bytes.load(Relaxed);
        self.dropped += media.dropped.load(Relaxed);
    }
}

impl RoomTotals {
    fn add_room(&mut self, room: &Room) {
        for hub in [&room.audio, &room.video] {
            self.keyframe_requests_sent += hub.stats.keyframe_requests.load(Relaxed);
            self.viewer_keyframe_requests += hub.stats.viewer_keyframe_requests.load(Relaxed);
        }
    }
}

fn kind_index(action: Action) -> usize {
    match action {
        Action::Publish => 0,
        Action::Play => 1,
    }
}

/// Keeps a room alive while a request decides about it; dropping it may remove the room.
pub struct RoomHold {
    room: Arc<Room>,
    registry: Arc<Registry>,
}

impl RoomHold {
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }
}

impl Drop for RoomHold {
    fn drop(&mut self) {
        self.room.release_hold();
        self.registry.release_room(&self.room);
    }
}

impl Registry {
    pub fn new(keyframe_interval: Duration, events: EventBus) -> Self {
        Registry {
            events,
            rooms: Mutex::new(HashMap::new()),
            finished_rooms: Mutex::new(RoomTotals::default()),
            sessions: Mutex::new(Sessions::default()),
            keyframe_interval,
        }
    }

    /// The room called `name`, created if needed, held until the returned guard drops.
    pub fn hold_room(self: &Arc<Self>, name: &str) -> RoomHold {
        let mut rooms = self.rooms.lock();
        let room = rooms
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Room::new(name.to_owned(), self.keyframe_interval)))
            .clone();
        room.hold();
        RoomHold {
            room,
            registry: self.clone(),
        }
    }

    /// Remove `room` if nothing references it any more (and it is still the registered one);
    /// a room that had started is announced `room.finished`.
    pub fn release_room(&self, room: &Arc<Room>) {
        let removed = {
            let mut rooms = self.rooms.lock();
            let removed = room.is_idle()
                && rooms
                    .get(&room.name)
                    .is_some_and(|current| Arc::ptr_eq(current, room))
                && rooms.remove(&room.name).is_some();
            if removed {
                self.finished_rooms.lock().add_room(room);
            }
            removed
        };
        if removed && room.was_started() {
            self.events
                .publish(Some(&room.name), crate::events::EventData::RoomFinished {});
        }
    }

    pub fn room(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.lock().get(name).cloned()
    }

    /// Every room, by name.
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        let mut rooms: Vec<_> = self.rooms.lock().values().cloned().collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// The live sessions of `room`, oldest first.
    pub fn sessions_in(&self, room: &str) -> Vec<Arc<Session>> {
        let mut sessions: Vec<_> = self
            .sessions
            .lock()
            .by_id
            .values()
            .filter(|s| s.room.name == room)
            .cloned()
            .collect();
        sessions.sort_by_key(|s| s.created_at);
        sessions
    }

    pub fn counts(&self, room: &str) -> RoomCounts {
        self.room(room).map(|r| r.counts()).unwrap_or_default()
    }

    /// Look up a session by room and id, distinguishing an unknown room from an unknown id.
    pub fn session(&self, room: &str, id: &str) -> Result<Arc<Session>, SfuError> {
        let session = self.sessions.lock().by_id.get(id).cloned();
        match session {
            Some(s) if s.room.name == room => Ok(s),
            _ if !self.rooms.lock().contains_key(room) => Err(SfuError::RoomNotFound),
            _ => Err(SfuError::SessionNotFound),
        }
    }

    pub fn session_by_id(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().by_id.get(id).cloned()
    }

    pub fn insert_session(&self, session: Arc<Session>) {
        let mut sessions = self.sessions.lock();
        if let Some(ip) = client_ip(&session) {
            *sessions.by_ip.entry(ip).or_default() += 1;
        }
        sessions.by_id.insert(session.id.clone(), session);
    }

    pub fn remove_session(&self, id: &str) {
        let mut sessions = self.sessions.lock();
        let Some(session) = sessions.by_id.remove(id) else {
            return;
        };
        sessions.ended[kind_index(session.action)].add_session(&session);
        if let Some(ip) = client_ip(&session)
            && let Some(n) = sessions.by_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                sessions.by_ip.remove(&ip);
            }
        }
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().by_id.values().cloned().collect()
    }

    /// What the server's sessions and rooms did since start: the live ones plus those removed.
    /// Each figure is read under the lock that folds a removed one into it, so none goes
    /// backwards. O(sessions + rooms): for scrapes, not for the media path.
    pub fn totals(&self) -> Totals {
        let [mut publishers, mut viewers] = {
            let sessions = self.sessions.lock();
            let mut totals = sessions.ended;
            for session in sessions.by_id.values() {
                let total = &mut totals[kind_index(session.action)];
                total.add_session(session);
                total.live += 1;
            }
            totals
        };
        publishers.started = publishers.started.max(publishers.live);
        viewers.started = viewers.started.max(viewers.live);
        let rooms = {
            let rooms = self.rooms.lock();
            let mut totals = *self.finished_rooms.lock();
            for room in rooms.values() {
                totals.add_room(room);
                totals.live += 1;
            }
            totals
        };
        Totals {
            publishers,
            viewers,
            rooms,
        }
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().by_id.len()
    }

    /// Live sessions opened from client address `ip`.
    pub fn sessions_from(&self, ip: IpAddr) -> usize {
        self.sessions.lock().by_ip.get(&ip).copied().unwrap_or(0)
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session.admit.remote_addr.map(|a| a.ip())
}
