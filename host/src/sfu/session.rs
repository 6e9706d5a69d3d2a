//! A WHIP or WHEP session: one peer connection, its HTTP resource state, and its lifetime.
//!
//! Each session has a supervisor task that ends it when ICE fails, the client never
//! connects, its identity expires, a periodic re-check denies it, or it is deleted —
//! whichever comes first — and then releases everything it held.

use super::direct::DirectViewer;
use super::room::Room;
use super::state::PeerStates;
use crate::auth::{Action, AdmitRequest, Identity};
use crate::ice::MuxBinding;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit};

/// A session's connection: a webrtc-rs peer connection, or a viewer on the direct driver.
#[derive(Clone)]
pub enum Peer {
    /// Publishers, and viewers when the direct driver is off (see `PeerFactory::direct_viewers`).
    Stack(Arc<dyn PeerConnection>),
    Direct(Arc<DirectViewer>),
}

impl Peer {
    pub async fn close(&self) {
        match self {
            Peer::Stack(pc) => {
                let _ = pc.close().await;
            }
            Peer::Direct(conn) => conn.close(),
        }
    }

    /// The offer (or last restart offer) the client sent, as SDP text.
    pub async fn remote_sdp(&self) -> Option<String> {
        match self {
            Peer::Stack(pc) => pc.remote_description().await.map(|d| d.sdp),
            Peer::Direct(conn) => conn.remote_sdp(),
        }
    }

    pub async fn add_ice_candidate(&self, candidate: RTCIceCandidateInit) -> Result<(), String> {
        match self {
            Peer::Stack(pc) => pc
                .add_ice_candidate(candidate)
                .await
                .map_err(|e| e.to_string()),
            Peer::Direct(conn) => conn.add_remote_candidate(candidate),
        }
    }
}

/// A freshly created session, as the HTTP layer needs to answer it.
pub struct Created {
    pub session_id: String,
    pub answer: String,
    pub etag: String,
}

/// What a PATCH did.
pub enum Patched {
    /// Candidates added; nothing to send back (204).
    Trickled,
    /// ICE restarted; send this answer fragment with the new ETag (200).
    Restarted { fragment: String, etag: String },
}

/// Why a session ended; logged and sent with the `SessionEnded` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    Deleted,
    Replaced,
    IceFailed,
    ConnectTimeout,
    PeerClosed,
    Expired,
    Revoked(String),
    Shutdown,
    /// Something serving the session failed internally (a caught panic).
    Fault(String),
    /// An operator ended this session (admin API).
    Kicked,
    /// An operator closed the whole room (admin API).
    RoomClosed,
}

impl EndReason {
    /// The code consumers see in events.
    pub fn code(&self) -> crate::events::EndCode {
        use crate::events::EndCode;
        match self {
            EndReason::Deleted => EndCode::Deleted,
            EndReason::Replaced => EndCode::Replaced,
            EndReason::IceFailed => EndCode::IceFailed,
            EndReason::ConnectTimeout => EndCode::ConnectTimeout,
            EndReason::PeerClosed => EndCode::PeerClosed,
            EndReason::Expired => EndCode::CredentialExpired,
            EndReason::Revoked(_) => EndCode::RevokedOnRecheck,
            EndReason::Shutdown => EndCode::Shutdown,
            EndReason::Fault(_) => EndCode::InternalFault,
            EndReason::Kicked => EndCode::Kicked,
            EndReason::RoomClosed => EndCode::RoomClosed,
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Deleted => f.write_str("deleted by client"),
            EndReason::Replaced => f.write_str("replaced by a new publisher"),
            EndReason::IceFailed => f.write_str("ICE failed"),
            EndReason::ConnectTimeout => f.write_str("did not connect in time"),
            EndReason::PeerClosed => f.write_str("peer connection closed"),
            EndReason::Expired => f.write_str("credential expired"),
            EndReason::Revoked(why) => write!(f, "authorization revoked: {why}"),
            EndReason::Shutdown => f.write_str("server shutting down"),
            EndReason::Fault(why) => write!(f, "internal fault: {why}"),
            EndReason::Kicked => f.write_str("ended by an operator"),
            EndReason::RoomClosed => f.write_str("room closed by an operator"),
        }
    }
}

/// What a new session is made of.
pub struct NewSession {
    pub id: String,
    pub key: u64,
    pub room: Arc<Room>,
    pub action: Action,
    pub peer: Peer,
    pub identity: Identity,
    pub admit: AdmitRequest,
    pub states: Arc<PeerStates>,
    /// Remote ICE candidates its offer carried (see `candidates`).
    pub remote_candidates: usize,
    /// Its place on the single-port mux, if any (its routes go when the session does).
    pub mux: Option<MuxBinding>,
}

pub struct Session {
    pub id: String,
    /// Small numeric id used on the hot path to find this viewer's sink.
    pub key: u64,
    pub room: Arc<Room>,
    pub action: Action,
    pub pc: Peer,
    pub identity: Identity,
    pub admit: AdmitRequest,
    pub states: Arc<PeerStates>,
    pub created_at: Instant,
    etag: Mutex<String>,
    end: watch::Sender<Option<EndReason>>,
    /// Serialises PATCH handling (ICE restarts) for this session.
    pub patch_lock: tokio::sync::Mutex<()>,
    /// Remote ICE candidates accepted since the last ICE restart (capped, see `candidates`).
    pub remote_candidates: std::sync::atomic::AtomicUsize,
    /// When its connection first came up.
    pub connected_at: std::sync::OnceLock<std::time::SystemTime>,
    /// Its place on the single-port mux (`webrtc.udp_port`), if any.
    pub mux: Option<MuxBinding>,
}

impl Session {
    pub fn new(new: NewSession) -> Self {
        Session {
            id: new.id,
            key: new.key,
            room: new.room,
            action: new.action,
            pc: new.peer,
            identity: new.identity,
            admit: new.admit,
            states: new.states,
            created_at: Instant::now(),
            etag: Mutex::new(new_etag()),
            end: watch::channel(None).0,
            patch_lock: tokio::sync::Mutex::new(()),
            remote_candidates: new.remote_candidates.into(),
            connected_at: std::sync::OnceLock::new(),
            mux: new.mux,
        }
    }

    /// The current entity tag, quoted as sent in `ETag` headers.
    pub fn etag(&self) -> String {
        self.etag.lock().clone()
    }

    pub fn rotate_etag(&self) -> String {
        let tag = new_etag();
        *self.etag.lock() = tag.clone();
        tag
    }

    /// Does a client-sent `If-Match`/`ETag` value name the current state?
    pub fn etag_matches(&self, given: &str) -> bool {
        let current = self.etag.lock();
        given
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| {
                t == "*"
                    || t == current.as_str()
                    || t.trim_matches('"') == current.trim_matches('"')
            })
    }

    /// Ask the supervisor to end the session. Idempotent; the first reason wins.
    pub fn end(&self, reason: EndReason) {
        self.end.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub fn ending(&self) -> watch::Receiver<Option<EndReason>> {
        self.end.subscribe()
    }

    pub fn is_ending(&self) -> bool {
        self.end.borrow().is_some()
    }
}

fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4().simple())
}
