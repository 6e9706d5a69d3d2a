//! Which endpoints get an event, with which body.
//!
//! First the operator's filter: an endpoint gets the event types its `events` list names (all
//! when empty). Then, if `webhook` plugins are configured, they decide ([`WebhookPolicy`]):
//! drop the event, deliver it as is, or deliver a reshaped JSON body, to all or some of the
//! endpoints the filter chose. With no plugin every event goes as is to every endpoint whose
//! filter matches. A plugin that fails (trap, timeout, bad output) loses nothing: the event is
//! delivered as is to every matching endpoint, and the failure is counted and logged.
//!
//! The plugin runtime implements [`WebhookPolicy`]; this module knows nothing of plugins.

use super::webhook::Endpoint;
use std::sync::Arc;

/// An event as a policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInput {
    pub id: String,
    pub event_type: String,
    pub room: Option<String>,
    pub at_ms: u64,
    /// The body delivered as is: `{"type", "timestamp", "data"}`.
    pub body: String,
    /// Endpoints whose filter matches, in config order.
    pub endpoints: Vec<String>,
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Deliver nothing.
    Drop,
    /// Deliver `body` (`None`: as is) to `endpoints` (`None`: every matching one; names are
    /// among [`PolicyInput::endpoints`]).
    Deliver {
        body: Option<String>,
        endpoints: Option<Vec<String>>,
    },
    /// The policy failed (`who` failed with `why`): deliver as is, count, log.
    Failed { who: String, why: String },
}

/// Decides deliveries (the `webhook` plugins).
#[async_trait::async_trait]
pub trait WebhookPolicy: Send + Sync {
    /// Whether there is anything to ask; when false every event goes as is.
    fn active(&self) -> bool;
    async fn decide(&self, input: PolicyInput) -> Verdict;
}

/// No policy: every event as is.
pub struct AsIs;

#[async_trait::async_trait]
impl WebhookPolicy for AsIs {
    fn active(&self) -> bool {
        false
    }

    async fn decide(&self, _input: PolicyInput) -> Verdict {
        Verdict::Deliver {
            body: None,
            endpoints: None,
        }
    }
}

/// Indexes (into `endpoints`) of the endpoints whose filter takes `event_type`.
pub fn matching(endpoints: &[Arc<Endpoint>], event_type: &str) -> Vec<usize> {
    endpoints
        .iter()
        .enumerate()
        .filter(|(_, e)| e.config.wants(event_type))
        .map(|(i, _)| i)
        .collect()
}

/// Apply `verdict` to the filter's choice: `(endpoint index, body)` for each delivery.
pub fn apply(
    endpoints: &[Arc<Endpoint>],
    matching: &[usize],
    body: &Arc<str>,
    verdict: &Verdict,
) -> Vec<(usize, Arc<str>)> {
    match verdict {
        Verdict::Drop => Vec::new(),
        Verdict::Failed { .. } => matching.iter().map(|&i| (i, body.clone())).collect(),
        Verdict::Deliver {
            body: reshaped,
            endpoints: chosen,
        } => {
            let body: Arc<str> = reshaped.as_deref().map_or_else(|| body.clone(), Arc::from);
            matching
                .iter()
                .filter(|&&i| {
                    chosen
                        .as_ref()
                        .is_none_or(|names| names.iter().any(|n| n == endpoints[i].name()))
                })
                .map(|&i| (i, body.clone()))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::config::{Secrets, WebhookEndpointConfig};

    fn endpoint(name: &str, events: &[&str]) -> Arc<Endpoint> {
        Arc::new(
            Endpoint::new(WebhookEndpointConfig {
                name: name.into(),
                url: "http://127.0.0.1:9/x".into(),
                secret: Secrets::One("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
                events: events.iter().map(|s| s.to_string()).collect(),
                timeout_ms: 1000,
            })
            .unwrap(),
        )
    }

    #[test]
    fn filter_then_verdict() {
        let eps = [
            endpoint("all", &[]),
            endpoint("rooms", &["room.*"]),
            endpoint("plugins", &["plugin.*"]),
        ];
        let m = matching(&eps, "room.started");
        assert_eq!(m, [0, 1]);
        let body: Arc<str> = Arc::from("{}");
        let as_is = Verdict::Deliver {
            body: None,
            endpoints: None,
        };
        let names = |routes: Vec<(usize, Arc<str>)>| {
            routes
                .into_iter()
                .map(|(i, b)| format!("{}={b}", eps[i].name()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(apply(&eps, &m, &body, &as_is)),
            ["all={}", "rooms={}"]
        );
        assert!(apply(&eps, &m, &body, &Verdict::Drop).is_empty());
        let failed = Verdict::Failed {
            who: "p".into(),
            why: "trap".into(),
        };
        assert_eq!(apply(&eps, &m, &body, &failed).len(), 2);
        let reshaped = Verdict::Deliver {
            body: Some("[1]".into()),
            endpoints: Some(vec!["rooms".into(), "plugins".into()]),
        };
        // An endpoint the filter excluded stays excluded.
        assert_eq!(names(apply(&eps, &m, &body, &reshaped)), ["rooms=[1]"]);
    }
}
