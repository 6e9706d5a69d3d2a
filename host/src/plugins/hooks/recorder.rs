//! The `recorder` hook: what to record of a publish session?
//!
//! Export `recorder.publish-started(publish-session) -> option<recording-plan>` and
//! `recorder.publish-ended(room, session)`, new in `switchboard:plugin@0.2.0` (a 0.1.0
//! component cannot serve it). This file binds the export and makes the typed calls; a
//! failure is never a decision: nothing is recorded, and forwarding never waits on it.

use super::kind::{BindError, Bound, Hook, HookKind, bind_since_v0_2_0};
use crate::plugins::abi::{AbiVersion, latest};
use crate::plugins::imports::CallState;
use latest::exports::switchboard::plugin::recorder::{GuestIndices, PublishSession, RecordingPlan};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

/// `hooks = ["recorder"]`.
pub const HOOK: Hook = Hook::new(&Recorder);

struct Recorder;

impl HookKind for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn bind(
        &self,
        pre: &InstancePre<CallState>,
        abi: AbiVersion,
    ) -> Result<Box<dyn Bound>, BindError> {
        bind_since_v0_2_0(pre, abi, "recorder", GuestIndices::new, |indices| {
            Box::new(Trigger(indices)) as Box<dyn Bound>
        })
    }
}

/// `recorder`, resolved in one component.
pub(crate) struct Trigger(GuestIndices);

impl Bound for Trigger {
    fn trial(&self, store: &mut Store<CallState>, instance: &Instance) -> wasmtime::Result<()> {
        self.0.load(store, instance).map(drop)
    }
}

impl Trigger {
    /// The typed call when a publish session starts, on a configured instance.
    pub(crate) async fn publish_started(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        session: &PublishSession,
    ) -> wasmtime::Result<Option<RecordingPlan>> {
        self.0
            .load(&mut *store, instance)?
            .call_publish_started(&mut *store, session)
            .await
    }

    /// The typed call when a publish session ends.
    pub(crate) async fn publish_ended(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        room: &str,
        session: &str,
    ) -> wasmtime::Result<()> {
        self.0
            .load(&mut *store, instance)?
            .call_publish_ended(&mut *store, room, session)
            .await
    }
}
