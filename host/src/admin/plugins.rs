//! The plugins, as operators see them:
//!
//! - `GET /admin/plugins`: every plugin in effect with its interface version, hooks, file,
//!   health and call statistics per hook (calls by outcome, mean time, the last failure).
//! - `POST /admin/plugins/reload`: re-read the plugin configuration, recompile what changed,
//!   and swap the plugins atomically (`PluginGate::reload`). `POST /admin/reload`, where the
//!   reload lived before, stays as an alias.
//!
//! Reload: `200 {"plugins": [...], "took_ms": n}`; `422 {"error": "reload failed, previous
//! plugins kept: ..."}` when the new configuration does not load (nothing changes).

use super::AdminState;
use super::error::{ErrorBody, error};
use super::sessions::rfc3339;
use crate::plugins::PluginStatus;
use crate::plugins::stats::OUTCOMES;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The plugin routes (state applied by the admin router).
#[allow(deprecated)] // the alias is served on purpose
pub fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/admin/plugins", get(list_plugins))
        .route("/admin/plugins/reload", post(reload))
        .route("/admin/reload", post(reload_alias))
}

/// Every plugin in effect, in config order.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginEntry>,
}

/// One plugin.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginEntry {
    pub name: String,
    /// The interface version it was built against, e.g. `switchboard:plugin@0.2.0`.
    pub interface: String,
    /// The hooks it serves, in config order.
    pub hooks: Vec<String>,
    /// The component file.
    pub path: String,
    /// SHA-256 of the component loaded from it.
    pub sha256: String,
    /// When it was loaded (start-up or the last reload; RFC 3339).
    pub loaded_at: String,
    pub health: Health,
    /// Per hook: calls since start-up (across reloads).
    pub calls: Vec<HookCalls>,
}

/// `failing` when the last call of one of its hooks failed: hooks fail closed, so requests
/// it decides on are being refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Failing,
}

/// Calls of one hook of one plugin.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookCalls {
    pub hook: String,
    pub calls: u64,
    /// Calls by outcome: `allowed`, `denied`, or a failure (`timeout`, `out_of_memory`,
    /// `trap`, `misconfigured`, `bad_output`, `not_served`). Every outcome is present.
    pub outcomes: BTreeMap<String, u64>,
    /// Calls that produced no decision (and so denied, fail closed).
    pub failures: u64,
    /// Mean time a call took, in milliseconds (waiting for a free plugin thread included).
    pub mean_ms: f64,
    /// Failures in a row up to the last call (0: the last call decided).
    pub consecutive_failures: u64,
    /// The most recent failure, if any.
    #[schema(nullable)]
    pub last_failure: Option<LastFailure>,
}

/// When a hook last failed, and how.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastFailure {
    /// RFC 3339.
    pub at: String,
    pub error: String,
}

/// What a successful reload did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// Plugin names now in effect, in config order.
    pub plugins: Vec<String>,
    pub took_ms: u64,
}

impl From<PluginStatus> for PluginEntry {
    fn from(p: PluginStatus) -> Self {
        let health = if p.healthy() {
            Health::Ok
        } else {
            Health::Failing
        };
        PluginEntry {
            name: p.info.name,
            interface: p.info.interface.to_string(),
            hooks: p.info.hooks.iter().map(|h| h.name().to_owned()).collect(),
            path: p.path.display().to_string(),
            sha256: p.sha256,
            loaded_at: rfc3339(p.loaded_at),
            health,
            calls: p
                .calls
                .into_iter()
                .map(|c| {
                    let calls = c.calls();
                    HookCalls {
                        hook: c.hook.name().to_owned(),
                        calls,
                        outcomes: OUTCOMES
                            .iter()
                            .zip(c.outcomes)
                            .map(|(o, n)| ((*o).to_owned(), n))
                            .collect(),
                        failures: c.failures(),
                        mean_ms: if calls == 0 {
                            0.0
                        } else {
                            c.total.as_secs_f64() * 1e3 / calls as f64
                        },
                        consecutive_failures: c.consecutive_failures,
                        last_failure: c.last_failure.map(|(at, error)| LastFailure {
                            at: rfc3339(at),
                            error,
                        }),
                    }
                })
                .collect(),
        }
    }
}

/// Every plugin in effect with its health and call statistics.
#[utoipa::path(
    get,
    path = "/admin/plugins",
    tag = "plugins",
    responses(
        (status = 200, description = "The plugins in effect, in config order", body = PluginList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_plugins(State(state): State<AdminState>) -> Json<PluginList> {
    let plugins = state
        .plugins
        .status()
        .into_iter()
        .map(PluginEntry::from)
        .collect();
    Json(PluginList { plugins })
}

/// Reload the plugins without a restart: re-read their configuration, recompile what
/// changed, swap atomically (calls in flight finish on the old ones). Every live session is
/// re-checked against the new plugins.
#[utoipa::path(
    post,
    path = "/admin/plugins/reload",
    tag = "plugins",
    responses(
        (status = 200, description = "Reloaded", body = Reloaded),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 422, description = "The new configuration did not load; the plugins in effect stay", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn reload(State(state): State<AdminState>) -> Response {
    match state.plugins.reload().await {
        Ok(report) => (
            StatusCode::OK,
            Json(Reloaded {
                plugins: report.plugins,
                took_ms: report.took_ms,
            }),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("reload failed, previous plugins kept: {e}"),
        ),
    }
}

/// Where the reload lived before; the same as `POST /admin/plugins/reload`.
#[utoipa::path(
    post,
    path = "/admin/reload",
    tag = "plugins",
    responses(
        (status = 200, description = "Reloaded", body = Reloaded),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 422, description = "The new configuration did not load; the plugins in effect stay", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[deprecated(note = "use POST /admin/plugins/reload")]
pub async fn reload_alias(state: State<AdminState>) -> Response {
    reload(state).await
}
