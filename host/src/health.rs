//! Readiness: `GET /readyz` answers JSON with the state of each dependency — the server
//! itself, the plugins, the webhook endpoints (and later storage) — and an overall `ok`,
//! `degraded` or `unavailable`.
//!
//! - `ok` / `degraded`: `200`. Degraded means serving, with something failing that an operator
//!   should look at (a plugin whose last call failed — it is refusing requests, fail closed;
//!   a parked webhook endpoint). A load balancer keeps sending traffic.
//! - `unavailable`: `503`, while the server starts or shuts down: take it out of rotation.
//!
//! Liveness stays `GET /healthz` (plain `ok`), which never looks at dependencies.
//! Each dependency is a [`Dependency`]; the server registers them at start-up: [`Plugins`],
//! and [`Webhooks`] when webhook endpoints are configured.

use crate::events::outbox::Outbox;
use crate::events::webhook::EndpointState;
use crate::plugins::PluginGate;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use utoipa::ToSchema;

/// Something the server depends on, asked at every `/readyz`. Must answer at once (from
/// state it keeps), never do I/O.
pub trait Dependency: Send + Sync {
    /// The key in `checks` (`plugins`, `webhooks`, ...).
    fn name(&self) -> &'static str;
    fn check(&self) -> Check;
}

/// A state, of one dependency or of the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Degraded,
    Unavailable,
}

/// One dependency's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Check {
    pub status: Status,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Its parts and their states (e.g. plugin name → `ok` / `failing`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub items: BTreeMap<String, String>,
}

/// The `/readyz` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// The worst state of `checks`.
    pub status: Status,
    pub checks: BTreeMap<String, Check>,
}

/// What `/readyz` asks.
pub struct Checks {
    ready: Arc<AtomicBool>,
    dependencies: RwLock<Vec<Arc<dyn Dependency>>>,
}

impl Checks {
    /// `ready` is the server's own flag: false while starting and once shutting down.
    pub fn new(ready: Arc<AtomicBool>) -> Arc<Checks> {
        Arc::new(Checks {
            ready,
            dependencies: RwLock::new(Vec::new()),
        })
    }

    pub fn add(&self, dependency: Arc<dyn Dependency>) {
        self.dependencies.write().push(dependency);
    }

    pub fn report(&self) -> Readiness {
        let mut checks = BTreeMap::new();
        let server = if self.ready.load(Ordering::Relaxed) {
            Check::ok()
        } else {
            Check {
                status: Status::Unavailable,
                message: Some("starting or shutting down".into()),
                items: BTreeMap::new(),
            }
        };
        checks.insert("server".to_owned(), server);
        for dependency in self.dependencies.read().iter() {
            checks.insert(dependency.name().to_owned(), dependency.check());
        }
        Readiness {
            status: checks
                .values()
                .map(|c| c.status)
                .max()
                .unwrap_or(Status::Ok),
            checks,
        }
    }
}

impl Check {
    pub fn ok() -> Check {
        Check {
            status: Status::Ok,
            message: None,
            items: BTreeMap::new(),
        }
    }
}

/// `GET /readyz`.
pub fn routes(checks: Arc<Checks>) -> axum::Router {
    axum::Router::new()
        .route("/readyz", axum::routing::get(readyz))
        .with_state(checks)
}

/// Readiness with each dependency's state.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "public",
    responses(
        (status = 200, description = "Serving: `ok`, or `degraded` with what is failing", body = Readiness),
        (status = 503, description = "Starting or shutting down", body = Readiness),
    ),
    security(())
)]
pub async fn readyz(State(checks): State<Arc<Checks>>) -> Response {
    let report = checks.report();
    let status = if report.status == Status::Unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(report)).into_response()
}

/// The plugins: degraded while one of them is failing (its last call failed).
pub struct Plugins(pub Weak<PluginGate>);

impl Dependency for Plugins {
    fn name(&self) -> &'static str {
        "plugins"
    }

    fn check(&self) -> Check {
        let Some(gate) = self.0.upgrade() else {
            return Check::ok();
        };
        let mut check = Check::ok();
        let mut failing = Vec::new();
        for plugin in gate.status() {
            let healthy = plugin.healthy();
            if !healthy {
                let why = plugin
                    .calls
                    .iter()
                    .filter(|c| c.consecutive_failures > 0)
                    .filter_map(|c| c.last_failure.as_ref())
                    .map(|(_, e)| e.as_str())
                    .next()
                    .unwrap_or("failing");
                failing.push(format!("{}: {why}", plugin.info.name));
            }
            check.items.insert(
                plugin.info.name,
                if healthy { "ok" } else { "failing" }.to_owned(),
            );
        }
        if !failing.is_empty() {
            check.status = Status::Degraded;
            check.message = Some(format!(
                "failing (requests they decide are refused): {}",
                failing.join("; ")
            ));
        }
        check
    }
}

/// The webhook endpoints: degraded while one is parked, disabled (`410 Gone`) or failing
/// without a success (deliveries wait in the outbox meanwhile, nothing is lost).
pub struct Webhooks(pub Weak<Outbox>);

impl Dependency for Webhooks {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn check(&self) -> Check {
        let Some(outbox) = self.0.upgrade() else {
            return Check::ok();
        };
        let mut check = Check::ok();
        let mut troubled = Vec::new();
        for e in outbox.endpoints() {
            let state = match (e.state, &e.failing_since) {
                (EndpointState::Active, None) => "active",
                (EndpointState::Active, Some(_)) => "failing",
                (EndpointState::Parked, _) => "parked",
                (EndpointState::Disabled, _) => "disabled",
            };
            if state != "active" {
                troubled.push(format!(
                    "{} {state} ({} waiting, {} parked{})",
                    e.name,
                    e.queued,
                    e.parked,
                    e.last_error
                        .as_deref()
                        .map(|err| format!("; last error: {err}"))
                        .unwrap_or_default()
                ));
            }
            check.items.insert(e.name, state.to_owned());
        }
        if !troubled.is_empty() {
            check.status = Status::Degraded;
            check.message = Some(troubled.join("; "));
        }
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Status);
    impl Dependency for Fixed {
        fn name(&self) -> &'static str {
            "webhooks"
        }
        fn check(&self) -> Check {
            Check {
                status: self.0,
                message: None,
                items: BTreeMap::new(),
            }
        }
    }

    #[test]
    fn the_whole_is_the_worst_part() {
        let ready = Arc::new(AtomicBool::new(true));
        let checks = Checks::new(ready.clone());
        assert_eq!(checks.report().status, Status::Ok);
        checks.add(Arc::new(Fixed(Status::Degraded)));
        let report = checks.report();
        assert_eq!(report.status, Status::Degraded);
        assert_eq!(report.checks["webhooks"].status, Status::Degraded);
        ready.store(false, Ordering::Relaxed);
        assert_eq!(checks.report().status, Status::Unavailable);
        let json = serde_json::to_value(checks.report()).unwrap();
        assert_eq!(json["status"], "unavailable");
        assert_eq!(json["checks"]["server"]["status"], "unavailable");
    }
}
