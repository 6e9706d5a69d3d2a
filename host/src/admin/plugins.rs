//! `POST /admin/reload`: re-read the plugin configuration, recompile what changed, and swap
//! the plugins atomically (`PluginGate::reload`). The token check is the admin router's.
//!
//! `200 {"plugins": [...], "took_ms": n}` on success; `422 {"error": "reload failed, previous
//! plugins kept: ..."}` when the new configuration does not load (nothing changes).

use super::error::error;
use crate::plugins::PluginGate;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::sync::Arc;

/// The plugin routes, with their state applied.
pub fn routes(gate: Arc<PluginGate>) -> axum::Router {
    axum::Router::new()
        .route("/admin/reload", post(reload))
        .with_state(gate)
}

async fn reload(State(gate): State<Arc<PluginGate>>) -> Response {
    match gate.reload().await {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("reload failed, previous plugins kept: {e}"),
        ),
    }
}
