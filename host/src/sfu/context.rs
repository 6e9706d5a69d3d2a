//! What the parts of the SFU core share: how connections are built, the registry of rooms and
//! sessions, admission, events and the room settings. Owned by [`Sfu`](super::Sfu), handed to
//! each part by reference.

use super::candidates::CandidatePolicy;
use super::capacity::Capacity;
use super::peer::PeerFactory;
use super::registry::Registry;
use crate::auth::Gatekeeper;
use crate::config::{Config, RoomsConfig};
use crate::events::EventBus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub struct Context {
    pub peers: PeerFactory,
    /// Which remote ICE candidates may be checked.
    pub candidates: CandidatePolicy,
    pub registry: Arc<Registry>,
    /// Server-wide and per-client session limits.
    pub capacity: Arc<Capacity>,
    pub gate: Arc<dyn Gatekeeper>,
    pub events: EventBus,
    pub rooms: RoomsConfig,
    /// Cap on one publisher's bitrate (`limits.max_publisher_kbps`, 0 = none).
    pub max_publisher_kbps: u64,
    pub connect_timeout: Duration,
    /// How long a session survives re-checks that cannot run (`auth.recheck_grace_secs`).
    pub recheck_grace: Duration,
    pub shutting_down: AtomicBool,
    next_key: AtomicU64,
}

impl Context {
    pub fn new(config: &Config, gate: Arc<dyn Gatekeeper>, events: EventBus) -> Context {
        Context {
            peers: PeerFactory::new(config.webrtc.clone()),
            candidates: CandidatePolicy::new(&config.webrtc.bind_ips),
            registry: Arc::new(Registry::new(
                Duration::from_millis(config.rooms.keyframe_request_interval_ms),
                events.clone(),
            )),
            capacity: Arc::new(Capacity::new(config.limits.clone())),
            gate,
            events,
            rooms: config.rooms.clone(),
            max_publisher_kbps: config.limits.max_publisher_kbps,
            connect_timeout: Duration::from_secs(config.webrtc.connect_timeout_secs),
            recheck_grace: Duration::from_secs(config.auth.recheck_grace_secs),
            shutting_down: AtomicBool::new(false),
            next_key: AtomicU64::new(1),
        }
    }

    /// A small process-unique number for a new session (hub viewer sinks, publisher feeds).
    pub fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
