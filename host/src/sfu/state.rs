//! Connection state shared between a peer connection's driver and the session around it.

use tokio::sync::watch;
use webrtc::peer_connection::{RTCIceGatheringState, RTCPeerConnectionState};

/// Peer connection state, observed by the supervisor and by PATCH handling.
pub struct PeerStates {
    pub connection: watch::Sender<RTCPeerConnectionState>,
    pub gathering: watch::Sender<RTCIceGatheringState>,
    /// Set when something serving this connection panicked: the session ends with it.
    fault: parking_lot::Mutex<Option<String>>,
    /// Media it moved: sent to a viewer, received from a publisher.
    pub media: MediaCounters,
}

/// Packets and bytes (RTP payload) a session moved, and packets dropped for it. Plain atomics,
/// added once per burst on the forwarding path and read by stats endpoints.
#[derive(Debug, Default)]
pub struct MediaCounters {
    pub packets: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    pub dropped: std::sync::atomic::AtomicU64,
}

impl MediaCounters {
    #[inline]
    pub fn add(&self, packets: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.packets.fetch_add(packets, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
}

impl Default for PeerStates {
    fn default() -> Self {
        PeerStates {
            connection: watch::channel(RTCPeerConnectionState::New).0,
            gathering: watch::channel(RTCIceGatheringState::New).0,
            fault: parking_lot::Mutex::new(None),
            media: MediaCounters::default(),
        }
    }
}

impl PeerStates {
    /// Something serving this connection failed (a panic caught at a task or hot-path
    /// boundary): record why and fail the connection, which ends the session — and only it.
    pub fn fault(&self, what: String) {
        tracing::error!(fault = %what, "a session's connection failed internally; ending it");
        self.fault.lock().get_or_insert(what);
        self.connection.send_replace(RTCPeerConnectionState::Failed);
    }

    /// The recorded fault, if the connection failed because of one.
    pub fn fault_reason(&self) -> Option<String> {
        self.fault.lock().clone()
    }
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// Receives a connection's state changes from the webrtc-rs driver (viewers on that driver;
/// publishers wrap it, see `ingest`). Must never block the driver.
pub struct StateHandler {
    pub states: std::sync::Arc<PeerStates>,
}

#[async_trait::async_trait]
impl webrtc::peer_connection::PeerConnectionEventHandler for StateHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.states.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.states.connection.send_replace(state);
    }
}
