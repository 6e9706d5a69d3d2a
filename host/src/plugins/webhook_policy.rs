//! The `webhook` plugins as the outbox's [`WebhookPolicy`]: every plugin serving the hook, in
//! config order, sees the event as the previous one left it (its body, its endpoints). A drop
//! ends the chain. The first failure — trap, timeout, memory, or bad output (a reshaped body
//! that is not JSON or is over [`MAX_BODY_BYTES`], an endpoint not offered) — ends it too, and
//! the outbox delivers the event as is: a broken webhook plugin never loses an event.
//!
//! Calls run on the plugin threads (`engine::plugin_threads`), never on the workers that
//! forward media, with the plugin's own limits, from the admission budget (the outbox keeps
//! at most a few in flight).

use super::abi::latest::exports::switchboard::plugin::webhook_router::{
    Decision, Delivery, WebhookEvent,
};
use super::engine;
use super::error::CallFailure;
use super::gate::PluginGate;
use super::hooks::webhook::{self, Router};
use super::plugin::{Budget, LoadedPlugin};
use super::reporter::PluginEvents;
use crate::events::route::{PolicyInput, Verdict, WebhookPolicy};
use std::sync::Arc;

/// Largest reshaped body a plugin may return.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[async_trait::async_trait]
impl WebhookPolicy for PluginGate {
    fn active(&self) -> bool {
        self.serves(webhook::HOOK)
    }

    async fn decide(&self, input: PolicyInput) -> Verdict {
        let (plugins, events) = self.serving_now(webhook::HOOK);
        if plugins.is_empty() {
            return Verdict::Deliver {
                body: None,
                endpoints: None,
            };
        }
        match engine::plugin_threads()
            .spawn(async move { chain(&plugins, &events, input).await })
            .await
        {
            Ok(verdict) => verdict,
            Err(e) => Verdict::Failed {
                who: "plugin runtime".into(),
                why: e.to_string(),
            },
        }
    }
}

async fn chain(
    plugins: &[Arc<LoadedPlugin>],
    events: &PluginEvents,
    input: PolicyInput,
) -> Verdict {
    let mut event = WebhookEvent {
        id: input.id,
        event_type: input.event_type,
        room: input.room,
        timestamp_ms: input.at_ms,
        body: input.body,
        endpoints: input.endpoints,
    };
    let (mut reshaped, mut chosen) = (None, None);
    for plugin in plugins {
        let decision = plugin
            .run(
                webhook::HOOK,
                Budget::Admission,
                async |r: &Router, store, instance| r.route(store, instance, &event).await,
            )
            .await
            .and_then(|d| check(&event, d));
        let decision = match decision {
            Ok(d) => d,
            Err(failure) => {
                events.failed(plugin.name(), webhook::HOOK.name(), &failure.to_string());
                return Verdict::Failed {
                    who: plugin.name().to_owned(),
                    why: failure.to_string(),
                };
            }
        };
        match decision.delivery {
            Delivery::Drop => return Verdict::Drop,
            Delivery::AsIs => {}
            Delivery::Reshaped(body) => {
                event.body.clone_from(&body);
                reshaped = Some(body);
            }
        }
        if let Some(names) = decision.endpoints {
            if names.is_empty() {
                return Verdict::Drop;
            }
            event.endpoints.clone_from(&names);
            chosen = Some(names);
        }
    }
    Verdict::Deliver {
        body: reshaped,
        endpoints: chosen,
    }
}

/// A decision the host can carry out, or `BadOutput`.
fn check(event: &WebhookEvent, decision: Decision) -> Result<Decision, CallFailure> {
    if let Delivery::Reshaped(body) = &decision.delivery {
        if body.len() > MAX_BODY_BYTES {
            return Err(CallFailure::BadOutput(format!(
                "reshaped body of {} bytes (max {MAX_BODY_BYTES})",
                body.len()
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(body)
            .map_err(|e| CallFailure::BadOutput(format!("reshaped body is not JSON: {e}")))?;
    }
    for name in decision.endpoints.iter().flatten() {
        if !event.endpoints.contains(name) {
            return Err(CallFailure::BadOutput(format!(
                "endpoint {name:?} is not among the event's endpoints [{}]",
                event.endpoints.join(", ")
            )));
        }
    }
    Ok(decision)
}
