//! Admission: who may publish or play in which room.
//!
//! The SFU core and the HTTP layer only see the [`Gatekeeper`] trait. The plugin runtime
//! (`crate::plugins`) implements it with WebAssembly auth and room-policy plugins; with no auth
//! plugin configured, [`OpenGate`] admits everyone (the server warns loudly at start-up).

use std::time::{Duration, SystemTime};

/// What the caller wants to do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Publish,
    Play,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Publish => "publish",
            Action::Play => "play",
        })
    }
}

/// How many sessions a room holds right now, so policy can enforce limits.
///
/// Counts include sessions still being set up (admitted but not yet answered), and never
/// the caller itself, nor the publisher the caller would replace (see
/// [`AdmitRequest::replacing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoomCounts {
    pub publishers: u32,
    pub viewers: u32,
}

/// Everything a gatekeeper may look at to decide.
#[derive(Debug, Clone)]
pub struct AdmitRequest {
    pub room: String,
    pub action: Action,
    /// The `Authorization` header value with any `Bearer ` prefix removed; `None` if absent.
    pub credential: Option<String>,
    pub remote_addr: Option<std::net::SocketAddr>,
    pub counts: RoomCounts,
    /// For a publish request to a room whose live publisher it would take over
    /// (`rooms.on_publisher_conflict = "replace"`): that publisher's subject. The replaced
    /// publisher is then not in [`AdmitRequest::counts`].
    pub replacing: Option<String>,
}

/// Who was admitted, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// Stable subject (JWT `sub`, wallet address, "anonymous", ...), used in logs and events.
    pub subject: String,
    /// Named facts an auth plugin attached (a role, a JWT claim such as `record = "true"`),
    /// for later hooks (recording, webhooks) to decide on. Empty from 0.1.0 plugins.
    pub attributes: Vec<(String, String)>,
    /// The session is ended by the host when this instant passes (e.g. the JWT's `exp`).
    pub expires_at: Option<SystemTime>,
    /// Re-run the admission check for the live session at this interval; a denial ends it.
    pub recheck_every: Option<Duration>,
}

/// Why admission was refused. Maps onto HTTP status codes in the signalling layer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Denied {
    /// No or unusable credential: 401.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Valid credential, but not allowed here (wrong room, wrong role, room full): 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The policy itself failed (trap, timeout, bad output). Fails closed: 503.
    #[error("policy unavailable: {0}")]
    Unavailable(String),
}

/// Decides admission. Implementations must be cheap to call concurrently.
///
/// Admission has two steps because they need different concurrency: [`Gatekeeper::authenticate`]
/// (who is this?) runs freely in parallel; [`Gatekeeper::check_room`] (may they, given the
/// room's counts?) is run by the SFU under the room's admission lock, with counts that include
/// sessions still being set up, so concurrent joins cannot all pass one limit.
#[async_trait::async_trait]
pub trait Gatekeeper: Send + Sync + 'static {
    /// Who is the caller? (credential -> identity).
    async fn authenticate(&self, req: &AdmitRequest) -> Result<Identity, Denied>;

    /// May `identity` do `req.action` in `req.room`, given `req.counts`? Default: yes.
    async fn check_room(&self, _req: &AdmitRequest, _identity: &Identity) -> Result<(), Denied> {
        Ok(())
    }

    /// Both steps at once, with the counts in `req` (tests, benchmarks; the server goes
    /// through the SFU's admission so counts are exact).
    async fn admit(&self, req: &AdmitRequest) -> Result<Identity, Denied> {
        let identity = self.authenticate(req).await?;
        self.check_room(req, &identity).await?;
        Ok(identity)
    }

    /// Re-check a live session (called every `Identity::recheck_every`). The default re-runs
    /// [`Gatekeeper::authenticate`] with the original request.
    async fn recheck(&self, req: &AdmitRequest, _identity: &Identity) -> Result<(), Denied> {
        self.authenticate(req).await.map(|_| ())
    }

    /// True when this gatekeeper admits anyone (no auth configured).
    fn is_open(&self) -> bool {
        false
    }

    /// Changes whenever the policy itself changed (plugins reloaded): live sessions are then
    /// re-checked at once, so revoking a credential by reload reaches every session, not only
    /// those with a periodic re-check.
    fn reloads(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// Admits everyone. Used when no auth plugin is configured.
pub struct OpenGate;

#[async_trait::async_trait]
impl Gatekeeper for OpenGate {
    async fn authenticate(&self, _req: &AdmitRequest) -> Result<Identity, Denied> {
        Ok(Identity {
            subject: "anonymous".into(),
            ..Default::default()
        })
    }

    fn is_open(&self) -> bool {
        true
    }
}
