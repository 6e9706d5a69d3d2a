//! The admin API: operator endpoints under `/admin/`, behind `Authorization: Bearer
//! <admin.token>`.
//!
//! - this file: [`router`] — merges every admin route and checks the bearer token in front
//!   of all of them (constant-time). With no token configured every admin route answers 404,
//!   as if it did not exist: an unprotected admin endpoint is never exposed.
//! - [`plugins`]: `POST /admin/reload` — reload the plugins without a restart.
//! - `error`: the JSON error body every admin route uses.
//!
//! Errors are JSON `{"error": "..."}`; a missing or wrong token is 401 with
//! `WWW-Authenticate: Bearer`.

mod error;
pub mod plugins;

use crate::plugins::PluginGate;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use error::error;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Every admin route, with the token check applied. Merge it into the application router:
/// `app.merge(admin::router(gate, token))`. An empty or absent `token` disables them (404).
pub fn router(gate: Arc<PluginGate>, token: Option<String>) -> axum::Router {
    let token: Option<Arc<[u8; 32]>> = token.filter(|t| !t.is_empty()).map(|t| Arc::new(sha(&t)));
    plugins::routes(gate).route_layer(middleware::from_fn_with_state(token, require_token))
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
