//! The admin API: operator endpoints under `/admin/`, behind `Authorization: Bearer
//! <admin.token>`, and the public read-only room list for lobby pages (`/api/rooms`).
//!
//! - this file: [`router`] — merges every admin route and checks the bearer token in front
//!   of all of them (constant-time). With no token configured every admin route answers 404,
//!   as if it did not exist: an unprotected admin endpoint is never exposed. [`public_router`]
//!   — `GET /api/rooms`, only when `public_api.enabled`.
//! - [`rooms`]: list rooms, one room in detail, close a room; the public room list.
//! - [`sessions`]: one session, kick one session.
//! - [`plugins`]: list plugins with health and call statistics; reload them.
//! - [`webhooks`]: webhook endpoints with queue depth and last error; parked deliveries;
//!   replay.
//! - [`recordings`]: recordings in progress and recently finished.
//! - [`openapi`]: the OpenAPI 3.1 document of all of the above (`GET /admin/openapi.json`),
//!   generated from the handlers' annotations.
//! - `error`: the JSON error body every admin route uses.
//!
//! Errors are JSON `{"error": "..."}`; a missing or wrong token is 401 with
//! `WWW-Authenticate: Bearer`.

mod error;
pub mod openapi;
pub mod plugins;
pub mod recordings;
pub mod rooms;
pub mod sessions;
pub mod webhooks;

use crate::config::PublicApiConfig;
use crate::events::outbox::Outbox;
use crate::plugins::PluginGate;
use crate::sfu::Sfu;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
pub use error::ErrorBody;
use error::error;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What the admin routes act on. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    pub sfu: Arc<Sfu>,
    pub plugins: Arc<PluginGate>,
    /// The webhook outbox, when `[[webhooks]]` are configured.
    pub outbox: Option<Arc<Outbox>>,
    /// The recording service (the recordings list).
    pub recordings: Option<Arc<crate::recording::service::RecordingService>>,
}

impl AdminState {
    pub fn new(sfu: Arc<Sfu>, plugins: Arc<PluginGate>) -> Self {
        AdminState {
            sfu,
            plugins,
            outbox: None,
            recordings: None,
        }
    }

    /// With the recordings list from `recordings`.
    pub fn with_recordings(
        mut self,
        recordings: Arc<crate::recording::service::RecordingService>,
    ) -> Self {
        self.recordings = Some(recordings);
        self
    }

    /// With the webhook routes acting on `outbox`.
    pub fn with_outbox(mut self, outbox: Option<Arc<Outbox>>) -> Self {
        self.outbox = outbox;
        self
    }
}

/// Every admin route, with the token check applied. Merge it into the application router:
/// `app.merge(admin::router(state, token))`. An empty or absent `token` disables them (404).
pub fn router(state: AdminState, token: Option<String>) -> axum::Router {
    let token: Option<Arc<[u8; 32]>> = token.filter(|t| !t.is_empty()).map(|t| Arc::new(sha(&t)));
    axum::Router::new()
        .merge(rooms::routes())
        .merge(sessions::routes())
        .merge(plugins::routes())
        .merge(webhooks::routes())
        .merge(recordings::routes())
        .merge(openapi::routes())
        .route_layer(middleware::from_fn_with_state(token, require_token))
        .with_state(state)
}

/// `GET /api/rooms` for lobby pages: no token, read-only, only when `config.enabled` (else
/// the route does not exist). CORS as `http.cors_origins` says.
pub fn public_router(
    sfu: Arc<Sfu>,
    config: &PublicApiConfig,
    cors_origins: &[String],
) -> axum::Router {
    if !config.enabled {
        return axum::Router::new();
    }
    rooms::public_routes(sfu, config, cors_origins)
}

/// 404 without a configured token; 401 unless the request carries it.
async fn require_token(
    State(expected): State<Option<Arc<[u8; 32]>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = expected else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let matches: bool = sha(presented).ct_eq(expected.as_ref()).into();
    if !matches {
        // One line per refusal, never the token that was tried.
        let client = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "-".into());
        tracing::warn!(
            %client,
            path = %request.uri().path(),
            token = if presented.is_empty() { "absent" } else { "wrong" },
            "admin request refused"
        );
        let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    next.run(request).await
}

/// Digest first so the comparison's duration does not depend on the token's length.
fn sha(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}
