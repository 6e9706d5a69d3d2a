//! What can go wrong in the SFU core, typed, so the HTTP layer decides the status by who is at
//! fault: the client (4xx), capacity (503), or the server (500).

use super::peer::PeerError;

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("room not found")]
    RoomNotFound,
    #[error("session not found")]
    SessionNotFound,
    #[error("ETag does not match the session's current state")]
    PreconditionFailed,
    #[error("an ICE restart must carry If-Match with the session's ETag")]
    PreconditionRequired,
    #[error("{0}")]
    TooManyCandidates(String),
    #[error("invalid SDP offer: {0}")]
    BadOffer(String),
    #[error("invalid trickle-ice-sdpfrag: {0}")]
    BadFragment(String),
    #[error("room {room:?} already has a publisher")]
    PublisherConflict { room: String },
    #[error("room {room:?} is being published by another identity; only it may take over")]
    Takeover { room: String },
    #[error("server is shutting down")]
    ShuttingDown,
    /// A server-wide limit is reached (503).
    #[error("{0}")]
    AtCapacity(String),
    /// One client is over its own limit (429 with `Retry-After`).
    #[error("{message}")]
    ClientLimit {
        message: String,
        retry_after: std::time::Duration,
    },
    /// Building the connection failed; [`PeerError::NoPort`] is capacity, the rest the server's.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The WebRTC stack refused something the server itself did (not the client's offer).
    #[error("WebRTC error: {0}")]
    WebRtc(String),
    /// The connection was closed while it was being set up.
    #[error("the connection closed during set-up")]
    Closed,
}

/// Who is at fault for an error: decides the HTTP status at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Unknown room or session (404).
    NotFound,
    /// Stale ETag (412).
    Precondition,
    /// A conditional request sent without its condition (428).
    PreconditionRequired,
    /// Malformed input (400).
    Client,
    /// The room's state forbids it (409).
    Conflict,
    /// The client is over its own limit (429).
    ClientLimit,
    /// Out of a resource, or stopping: try again later (503).
    Capacity,
    /// A bug or an environment problem on our side (500).
    Server,
}

impl SfuError {
    pub fn fault(&self) -> Fault {
        match self {
            SfuError::RoomNotFound | SfuError::SessionNotFound => Fault::NotFound,
            SfuError::PreconditionFailed => Fault::Precondition,
            SfuError::PreconditionRequired => Fault::PreconditionRequired,
            SfuError::BadOffer(_) | SfuError::BadFragment(_) | SfuError::TooManyCandidates(_) => {
                Fault::Client
            }
            SfuError::PublisherConflict { .. } | SfuError::Takeover { .. } => Fault::Conflict,
            SfuError::ShuttingDown
            | SfuError::AtCapacity(_)
            | SfuError::Peer(PeerError::NoPort(..)) => Fault::Capacity,
            SfuError::ClientLimit { .. } => Fault::ClientLimit,
            SfuError::Peer(PeerError::Build(_)) | SfuError::WebRtc(_) | SfuError::Closed => {
                Fault::Server
            }
        }
    }
}
