//! Admission into a room: room policy decided on exact counts, and a place held for the
//! session while it is set up.
//!
//! Authentication runs before this, in parallel. Here, per room, one decision at a time
//! (the room's admission lock): the counts handed to room policy include sessions still being
//! set up, the caller reserves its place before the lock is released, and a set-up that fails
//! gives the place back ([`Reservation`] on drop). So 50 concurrent joins against
//! `max_viewers = 10` admit exactly 10.

use super::capacity::{Capacity, SetupPermit};
use super::error::SfuError;
use super::registry::{Registry, RoomHold};
use super::room::{PublisherSlot, Room};
use crate::auth::{Action, AdmitRequest, Denied, Gatekeeper, Identity};
use crate::config::{PublisherConflict, RoomsConfig, Takeover};
use std::sync::Arc;

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Room policy said no (or failed: fail closed).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The room's state forbids it (a publisher already there, shutting down).
    #[error(transparent)]
    Sfu(#[from] SfuError),
}

/// A place in a room held for a session being set up. Dropping it without committing gives
/// the place back (and may remove the room).
pub struct Reservation {
    hold: RoomHold,
    /// Counts the session against the server's and its client's limits while it is set up.
    _setup: SetupPermit,
    action: Action,
    subject: String,
    committed: bool,
}

impl Reservation {
    pub fn room(&self) -> &Arc<Room> {
        self.hold.room()
    }

    /// The viewer is live: it now counts as a viewer instead of a pending one.
    pub fn commit_viewer(mut self) {
        self.room().commit_viewer();
        self.committed = true;
    }

    /// The publisher is live; returns the publisher it replaces.
    pub fn commit_publisher(mut self, slot: PublisherSlot) -> Option<PublisherSlot> {
        self.committed = true;
        self.room().commit_publisher(slot)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed {
            self.hold.room().unreserve(self.action, &self.subject);
        }
    }
}

/// Decide on `req` for `identity` and hold its place. `req.counts` and `req.replacing` are
/// filled in here, from the room.
pub async fn admit(
    registry: &Arc<Registry>,
    capacity: &Arc<Capacity>,
    gate: &dyn Gatekeeper,
    rooms: &RoomsConfig,
    mut req: AdmitRequest,
    identity: &Identity,
) -> Result<Reservation, Refusal> {
    // Server and client limits first: nothing else is done for a request over them.
    let setup = capacity.admit(registry, req.remote_addr.map(|a| a.ip()))?;
    let hold = registry.hold_room(&req.room);
    let room = hold.room().clone();
    let _one_decision_at_a_time = room.admission.lock().await;
    let replace = rooms.on_publisher_conflict == PublisherConflict::Replace;
    if req.action == Action::Publish {
        let name = room.name.clone();
        match (replace, rooms.takeover) {
            (false, _) if room.has_publisher() => {
                return Err(SfuError::PublisherConflict { room: name }.into());
            }
            // Only the same identity may take over (an encoder reconnecting).
            (true, Takeover::SameSubject) if room.published_by_other(&identity.subject) => {
                return Err(SfuError::Takeover { room: name }.into());
            }
            _ => {}
        }
    }
    let (counts, replacing) = room.counts_for(req.action, replace);
    req.counts = counts;
    req.replacing = replacing;
    gate.check_room(&req, identity).await?;
    room.reserve(req.action, &identity.subject);
    Ok(Reservation {
        hold,
        _setup: setup,
        action: req.action,
        subject: identity.subject.clone(),
        committed: false,
    })
}
