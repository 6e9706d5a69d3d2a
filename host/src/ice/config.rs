//! `[webrtc.turn]`: a TURN server that shares a secret with us.

use serde::{Deserialize, Serialize};

/// A TURN server configured with coturn's `use-auth-secret`: every session is handed its own
/// credentials, minted from the shared secret (see [`super::turn_rest`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs of the server, e.g. `turn:turn.example.com:3478?transport=udp`.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret` (set it from the environment:
    /// `SWITCHBOARD_WEBRTC__TURN__SECRET`).
    pub secret: String,
    /// How long a minted credential is accepted. It must outlast the longest session: TURN
    /// allocations are refreshed with the same credential.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
    /// Also hand credentials out on `OPTIONS` (to the identity the request's bearer token
    /// authenticates), so clients can gather relay candidates before their offer — the
    /// embedded pages do. Off: only session answers carry them.
    #[serde(default = "yes")]
    pub on_options: bool,
    /// Gather the server's own relay candidates through this server too (a server whose
    /// UDP is not reachable at all). Viewers then use the webrtc-rs driver.
    #[serde(default)]
    pub server_relay: bool,
}

fn default_ttl_secs() -> u64 {
    24 * 3600
}

fn yes() -> bool {
    true
}

/// What is wrong with a `[webrtc.turn]` section: the key and why.
pub fn validate(turn: &TurnConfig) -> Result<(), (&'static str, String)> {
    if turn.urls.is_empty() {
        return Err((
            "webrtc.turn.urls",
            "at least one turn: or turns: URL".into(),
        ));
    }
    if let Some(url) = turn
        .urls
        .iter()
        .find(|u| !u.starts_with("turn:") && !u.starts_with("turns:"))
    {
        return Err((
            "webrtc.turn.urls",
            format!("{url:?} is not a turn: or turns: URL"),
        ));
    }
    if turn.secret.len() < 16 {
        return Err((
            "webrtc.turn.secret",
            "use coturn's static-auth-secret, at least 16 characters".into(),
        ));
    }
    if !(60..=7 * 24 * 3600).contains(&turn.ttl_secs) {
        return Err((
            "webrtc.turn.ttl_secs",
            format!("{} is outside 60..=604800 seconds", turn.ttl_secs),
        ));
    }
    Ok(())
}
