//! The `room-policy` hook: may this identity do this in this room now?
//!
//! Export `policy.check(auth-request, identity) -> result<_, deny>`, in every interface
//! version. The gate asks every plugin serving it, in order, under the room's admission lock
//! (`gate.rs`); this file binds the export per version and makes the typed call, converting
//! for a 0.1.0 component (which sees neither `replacing` nor the identity's attributes).

use super::kind::{BindError, Bound, Hook, HookKind};
use crate::plugins::abi::{AbiVersion, latest, v0_1_0};
use crate::plugins::imports::CallState;
use latest::switchboard::plugin::types::{AuthRequest, Deny, Identity};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

/// `hooks = ["room-policy"]`.
pub const HOOK: Hook = Hook::new(&RoomPolicy);

struct RoomPolicy;

impl HookKind for RoomPolicy {
    fn name(&self) -> &'static str {
        "room-policy"
    }

    fn bind(
        &self,
        pre: &InstancePre<CallState>,
        abi: AbiVersion,
    ) -> Result<Box<dyn Bound>, BindError> {
        let missing = |_| BindError::Missing {
            export: abi.interface("policy"),
        };
        let bound = match abi {
            AbiVersion::V0_1_0 => Policy::V0_1_0(
                v0_1_0::exports::switchboard::plugin::policy::GuestIndices::new(pre)
                    .map_err(missing)?,
            ),
            AbiVersion::V0_2_0 => Policy::V0_2_0(
                latest::exports::switchboard::plugin::policy::GuestIndices::new(pre)
                    .map_err(missing)?,
            ),
        };
        Ok(Box::new(bound))
    }
}

/// `policy`, resolved in one component for the version it was built against.
pub(crate) enum Policy {
    V0_1_0(v0_1_0::exports::switchboard::plugin::policy::GuestIndices),
    V0_2_0(latest::exports::switchboard::plugin::policy::GuestIndices),
}

impl Bound for Policy {
    fn trial(&self, store: &mut Store<CallState>, instance: &Instance) -> wasmtime::Result<()> {
        match self {
            Policy::V0_1_0(indices) => indices.load(store, instance).map(drop),
            Policy::V0_2_0(indices) => indices.load(store, instance).map(drop),
        }
    }
}

impl Policy {
    /// The typed call, on a configured instance.
    pub(crate) async fn check(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        req: &AuthRequest,
        identity: &Identity,
    ) -> wasmtime::Result<Result<(), Deny>> {
        match self {
            Policy::V0_2_0(indices) => {
                indices
                    .load(&mut *store, instance)?
                    .call_check(&mut *store, req, identity)
                    .await
            }
            Policy::V0_1_0(indices) => {
                let req = v0_1_0::switchboard::plugin::types::AuthRequest::from(req);
                let identity = v0_1_0::switchboard::plugin::types::Identity::from(identity);
                let decision = indices
                    .load(&mut *store, instance)?
                    .call_check(&mut *store, &req, &identity)
                    .await?;
                Ok(decision.map_err(Deny::from))
            }
        }
    }
}
