//! Connection state shared between a peer connection's driver and the session around it.

use tokio::sync::watch;
use webrtc::peer_connection::{RTCIceGatheringState, RTCPeerConnectionState};

/// Peer connection state, observed by the supervisor and by PATCH handling.
pub struct PeerStates {
    pub connection: watch::Sender<RTCPeerConnectionState>,
    pub gathering: watch::Sender<RTCIceGatheringState>,
}

impl Default for PeerStates {
    fn default() -> Self {
        PeerStates {
            connection: watch::channel(RTCPeerConnectionState::New).0,
            gathering: watch::channel(RTCIceGatheringState::New).0,
        }
    }
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
