//! The rooms and sessions that exist, by name and id.
//!
//! A room exists while anything references it: a live session, a session being set up, or a
//! request between lookup and admission ([`RoomHold`]). The last one out removes it.

use super::error::SfuError;
use super::room::Room;
use super::session::Session;
use crate::auth::RoomCounts;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct Registry {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    keyframe_interval: Duration,
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
    pub fn new(keyframe_interval: Duration) -> Self {
        Registry {
            rooms: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
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

    /// Remove `room` if nothing references it any more (and it is still the registered one).
    pub fn release_room(&self, room: &Arc<Room>) {
        let mut rooms = self.rooms.lock();
        if room.is_idle()
            && rooms
                .get(&room.name)
                .is_some_and(|current| Arc::ptr_eq(current, room))
        {
            rooms.remove(&room.name);
        }
    }

    pub fn room(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.lock().get(name).cloned()
    }

    pub fn counts(&self, room: &str) -> RoomCounts {
        self.room(room).map(|r| r.counts()).unwrap_or_default()
    }

    /// Look up a session by room and id, distinguishing an unknown room from an unknown id.
    pub fn session(&self, room: &str, id: &str) -> Result<Arc<Session>, SfuError> {
        let session = self.sessions.lock().get(id).cloned();
        match session {
            Some(s) if s.room.name == room => Ok(s),
            _ if !self.rooms.lock().contains_key(room) => Err(SfuError::RoomNotFound),
            _ => Err(SfuError::SessionNotFound),
        }
    }

    pub fn session_by_id(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(id).cloned()
    }

    pub fn insert_session(&self, session: Arc<Session>) {
        self.sessions.lock().insert(session.id.clone(), session);
    }

    pub fn remove_session(&self, id: &str) {
        self.sessions.lock().remove(id);
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().values().cloned().collect()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }
}
