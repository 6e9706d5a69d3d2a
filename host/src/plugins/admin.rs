//! Reload triggers: `POST /admin/reload` and SIGHUP.
//!
//! The endpoint needs `Authorization: Bearer <admin.token>`. With no admin token configured
//! it answers 404, as if it did not exist: an unprotected reload endpoint is never exposed.

use super::gate::PluginGate;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone)]
struct AdminState {
    gate: Arc<PluginGate>,
    token: Option<Arc<str>>,
}

/// Routes for plugin administration (`POST /admin/reload`), with their state applied.
/// Merge into the application router: `app.merge(plugins::admin_router(gate, token))`.
/// An empty or absent `token` disables them (404).
pub fn admin_router(gate: Arc<PluginGate>, token: Option<String>) -> axum::Router {
    let token = token.filter(|t| !t.is_empty()).map(Arc::from);
    axum::Router::new()
        .route("/admin/reload", post(reload))
        .with_state(AdminState { gate, token })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn reload(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let Some(expected) = &state.token else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let matches: bool = sha(presented).ct_eq(&sha(expected)).into();
    if !matches {
        let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    match state.gate.reload().await {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("reload failed, previous plugins kept: {e}"),
        ),
    }
}

/// Digest first so the comparison's duration does not depend on the token's length.
fn sha(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}

/// Reload the plugins on every SIGHUP until the returned task is aborted.
pub fn spawn_sighup_reload(gate: Arc<PluginGate>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading plugins");
            // Success and failure are logged by the gate; a failure keeps the old plugins.
            let _ = gate.reload().await;
        }
    }))
}
