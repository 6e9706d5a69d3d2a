//! The SFU core: rooms, sessions and media forwarding.
//!
//! [`Sfu`] is what the HTTP layer talks to: it admits a request into a room (room policy on
//! exact counts), turns an SDP offer into a running publisher or viewer session, and answers
//! PATCH/DELETE on it. Authentication is decided *before* anything here runs (see
//! `crate::auth`); the core only enforces what it was told (expiry, re-check).
//!
//! Its parts, by job:
//! - `admission`: room policy on exact counts, places held for sessions being set up;
//!   `capacity`: server-wide and per-client session limits.
//! - `ingest`: publishers — their connection and the readers that feed the hubs;
//!   `bitrate`: the cap on what one publisher may send.
//! - `viewer`: viewers — their connection on either driver, attached to the hubs.
//! - `supervise`: a session's life after set-up, and the one place it is torn down.
//! - `negotiate`: offer/answer, trickle and ICE restart; `candidates`: which remote ICE
//!   candidates may be checked (caps, forbidden addresses: no reflection).
//! - `registry`, `room`, `session`, `context`, `state`, `error`: what the parts share.
//! - The media path: `forward` (the hot path: fan-out from the publisher's reader),
//!   `layers` (which of a publisher's streams viewers get), `codec` (keyframe detection),
//!   `tap` (non-WebRTC consumers such as the recorder), `direct` (viewer connections driven
//!   from the forwarding path), `nack_guard` (bounded retransmission per viewer), `egress`
//!   (batched UDP sends), `runtime` (viewer sockets),
//!   `feedback` (keyframe requests out of RTCP), `peer` (building connections), `trickle`.

pub mod admission;
pub mod bitrate;
pub mod candidates;
pub mod capacity;
pub mod codec;
mod context;
pub mod direct;
pub mod egress;
pub mod error;
pub mod feedback;
pub mod forward;
mod ingest;
pub mod layers;
pub mod nack_guard;
mod negotiate;
pub mod peer;
pub mod registry;
pub mod room;
pub mod runtime;
pub mod session;
pub mod state;
mod supervise;
pub mod tap;
pub mod trickle;
mod viewer;

pub use admission::{Refusal, Reservation};
pub use error::{Fault, SfuError};
pub use session::{Created, Patched};

use crate::auth::{Action, AdmitRequest, Gatekeeper, Identity, RoomCounts};
use crate::config::Config;
use crate::events::EventBus;
use context::Context;
use room::Room;
use session::{EndReason, Session};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The SFU. Cheap to share (`Arc`); every method may be called concurrently.
pub struct Sfu {
    ctx: Arc<Context>,
}

impl Sfu {
    pub fn new(config: &Config, gate: Arc<dyn Gatekeeper>, events: EventBus) -> Arc<Sfu> {
        let ctx = Arc::new(Context::new(config, gate, events));
        // Revocation by reload reaches every live session (not only periodic re-checks).
        if let Some(mut reloads) = ctx.gate.reloads() {
            let weak = Arc::downgrade(&ctx);
            tokio::spawn(async move {
                while reloads.changed().await.is_ok() {
                    let Some(ctx) = weak.upgrade() else { return };
                    supervise::recheck_all(&ctx).await;
                }
            });
        }
        Arc::new(Sfu { ctx })
    }

    pub fn gate(&self) -> &Arc<dyn Gatekeeper> {
        &self.ctx.gate
    }

    /// Bind the shared ports (`webrtc.udp_port`, `webrtc.tcp_port`), where configured.
    pub fn start_shared_ports(&self) -> Result<(), peer::SharedPortError> {
        self.ctx.peers.start_mux()
    }

    /// The single-port mux's addresses, if bound.
    pub fn udp_mux_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.ctx
            .peers
            .mux()
            .map(|m| m.local_addrs())
            .unwrap_or_default()
    }

    /// The ICE-TCP listeners' addresses, if bound.
    pub fn tcp_mux_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.ctx
            .peers
            .tcp_mux()
            .map(|m| m.local_addrs())
            .unwrap_or_default()
    }

    /// The ICE servers clients are told about and the server gathers through.
    pub fn ice_servers(&self) -> Arc<crate::ice::IceServers> {
        self.ctx.peers.ice_servers().clone()
    }

    pub fn events(&self) -> &EventBus {
        &self.ctx.events
    }

    /// Sessions in `room`, live or being set up.
    pub fn counts(&self, room: &str) -> RoomCounts {
        self.ctx.registry.counts(room)
    }

    pub fn session_count(&self) -> usize {
        self.ctx.registry.session_count()
    }

    /// What the sessions and rooms moved since start, live and ended (`/metrics`).
    pub fn totals(&self) -> registry::Totals {
        self.ctx.registry.totals()
    }

    /// Whether the server is shutting down (readiness).
    pub fn is_shutting_down(&self) -> bool {
        self.ctx.is_shutting_down()
    }

    pub fn room(&self, name: &str) -> Option<Arc<Room>> {
        self.ctx.registry.room(name)
    }

    /// Look up a session by room and id, distinguishing an unknown room from an unknown id.
    pub fn session(&self, room: &str, id: &str) -> Result<Arc<Session>, SfuError> {
        self.ctx.registry.session(room, id)
    }

    /// Admit an authenticated request into its room: room policy decides on exact counts
    /// (sessions being set up included) and the caller's place is held until it is set up.
    pub async fn admit(
        &self,
        req: AdmitRequest,
        identity: &Identity,
    ) -> Result<Reservation, Refusal> {
        if self.ctx.is_shutting_down() {
            return Err(SfuError::ShuttingDown.into());
        }
        admission::admit(
            &self.ctx.registry,
            &self.ctx.capacity,
            self.ctx.gate.as_ref(),
            &self.ctx.rooms,
            req,
            identity,
        )
        .await
    }

    /// Set up the admitted session: a publisher (WHIP) or a viewer (WHEP), as admitted.
    pub async fn open(
        &self,
        reservation: Reservation,
        identity: Identity,
        admit: AdmitRequest,
        offer: String,
    ) -> Result<Created, SfuError> {
        if self.ctx.is_shutting_down() {
            return Err(SfuError::ShuttingDown);
        }
        match admit.action {
            Action::Publish => {
                ingest::start_publisher(&self.ctx, reservation, identity, admit, offer).await
            }
            Action::Play => {
                viewer::start_viewer(&self.ctx, reservation, identity, admit, offer).await
            }
        }
    }

    /// Every room, by name (admin, lobby pages).
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        self.ctx.registry.rooms()
    }

    /// The live sessions of `room`, oldest first.
    pub fn sessions_in(&self, room: &str) -> Vec<Arc<Session>> {
        self.ctx.registry.sessions_in(room)
    }

    /// End every session of `room` (reason `room-closed`); returns how many.
    pub fn close_room(&self, room: &str) -> Result<usize, SfuError> {
        if self.ctx.registry.room(room).is_none() {
            return Err(SfuError::RoomNotFound);
        }
        let sessions = self.sessions_in(room);
        for s in &sessions {
            s.end(EndReason::RoomClosed);
        }
        Ok(sessions.len())
    }

    /// End one session as an operator (reason `kicked`).
    pub fn kick(&self, room: &str, id: &str) -> Result<(), SfuError> {
        self.session(room, id)?.end(EndReason::Kicked);
        Ok(())
    }

    /// DELETE on a session resource.
    pub fn delete(&self, room: &str, id: &str) -> Result<(), SfuError> {
        let session = self.session(room, id)?;
        session.end(EndReason::Deleted);
        Ok(())
    }

    /// PATCH on a session resource: trickle candidates, or an ICE restart when the fragment
    /// carries new credentials.
    pub async fn patch(
        &self,
        room: &str,
        id: &str,
        if_match: Option<&str>,
        body: &[u8],
    ) -> Result<Patched, SfuError> {
        let session = self.session(room, id)?;
        negotiate::patch(
            &self.ctx.peers,
            &self.ctx.candidates,
            &session,
            if_match,
            body,
        )
        .await
    }

    /// End every session (graceful shutdown) and wait briefly for them to close.
    pub async fn close_all(&self) {
        self.ctx.shutting_down.store(true, Ordering::Relaxed);
        for s in self.ctx.registry.sessions() {
            s.end(EndReason::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.session_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
