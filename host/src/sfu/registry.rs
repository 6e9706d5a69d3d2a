//! The rooms and sessions that exist, by name and id.
//!
//! A room exists while anything references it: a live session, a session being set up, or a
//! request between lookup and admission ([`RoomHold`]). The last one out removes it.

use super::error::SfuError;
use super::room::Room;
use super::session::Session;
use crate::auth::RoomCounts;
use crate::events::EventBus;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct Registry {
    events: EventBus,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    sessions: Mutex<Sessions>,
    keyframe_interval: Duration,
}

/// Live sessions by id, and how many each client address has.
#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Arc<Session>>,
    by_ip: HashMap<IpAddr, usize>,
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
            room.is_idle()
                && rooms
                    .get(&room.name)
                    .is_some_and(|current| Arc::ptr_eq(current, room))
                && rooms.remove(&room.name).is_some()
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
