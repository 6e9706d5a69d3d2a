//! The `webhook` hook: which endpoints get an event, with which body?
//!
//! Export `webhook-router.route(webhook-event) -> decision`, new in `switchboard:plugin@0.2.0`
//! (a 0.1.0 component cannot serve it). The outbox asks through the gate
//! (`PluginGate`'s `WebhookPolicy`, in `gate.rs`); this file binds the export and makes the
//! typed call. Failures are never decisions: the event is then delivered as is.

use super::kind::{BindError, Bound, Hook, HookKind, bind_since_v0_2_0};
use crate::plugins::abi::{AbiVersion, latest};
use crate::plugins::imports::CallState;
use latest::exports::switchboard::plugin::webhook_router::{Decision, GuestIndices, WebhookEvent};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

/// `hooks = ["webhook"]`.
pub const HOOK: Hook = Hook::new(&Webhook);

struct Webhook;

impl HookKind for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn bind(
        &self,
        pre: &InstancePre<CallState>,
        abi: AbiVersion,
    ) -> Result<Box<dyn Bound>, BindError> {
        bind_since_v0_2_0(pre, abi, "webhook-router", GuestIndices::new, |indices| {
            Box::new(Router(indices)) as Box<dyn Bound>
        })
    }
}

/// `webhook-router`, resolved in one component.
pub(crate) struct Router(GuestIndices);

impl Bound for Router {
    fn trial(&self, store: &mut Store<CallState>, instance: &Instance) -> wasmtime::Result<()> {
        self.0.load(store, instance).map(drop)
    }
}

impl Router {
    /// The typed call, on a configured instance.
    pub(crate) async fn route(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        event: &WebhookEvent,
    ) -> wasmtime::Result<Decision> {
        self.0
            .load(&mut *store, instance)?
            .call_route(&mut *store, event)
            .await
    }
}
