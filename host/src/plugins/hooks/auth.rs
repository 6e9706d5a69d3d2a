//! The `auth` hook: who is the caller?
//!
//! Export `authenticator.authenticate(auth-request) -> result<identity, deny>`, in every
//! interface version. The gate runs the plugins serving it as a chain (`gate.rs`); this file
//! binds the export per version and makes the typed call, converting a 0.1.0 component's
//! types into the latest ones (its identities have no attributes, its requests no
//! `replacing`).

use super::kind::{BindError, Bound, Hook, HookKind};
use crate::plugins::abi::{AbiVersion, latest, v0_1_0};
use crate::plugins::imports::CallState;
use latest::switchboard::plugin::types::{AuthRequest, Deny, Identity};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

/// `hooks = ["auth"]`.
pub const HOOK: Hook = Hook::new(&Auth);

struct Auth;

impl HookKind for Auth {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn bind(
        &self,
        pre: &InstancePre<CallState>,
        abi: AbiVersion,
    ) -> Result<Box<dyn Bound>, BindError> {
        let missing = |_| BindError::Missing {
            export: abi.interface("authenticator"),
        };
        let bound = match abi {
            AbiVersion::V0_1_0 => Authenticator::V0_1_0(
                v0_1_0::exports::switchboard::plugin::authenticator::GuestIndices::new(pre)
                    .map_err(missing)?,
            ),
            AbiVersion::V0_2_0 => Authenticator::V0_2_0(
                latest::exports::switchboard::plugin::authenticator::GuestIndices::new(pre)
                    .map_err(missing)?,
            ),
        };
        Ok(Box::new(bound))
    }
}

/// `authenticator`, resolved in one component for the version it was built against.
pub(crate) enum Authenticator {
    V0_1_0(v0_1_0::exports::switchboard::plugin::authenticator::GuestIndices),
    V0_2_0(latest::exports::switchboard::plugin::authenticator::GuestIndices),
}

impl Bound for Authenticator {
    fn trial(&self, store: &mut Store<CallState>, instance: &Instance) -> wasmtime::Result<()> {
        match self {
            Authenticator::V0_1_0(indices) => indices.load(store, instance).map(drop),
            Authenticator::V0_2_0(indices) => indices.load(store, instance).map(drop),
        }
    }
}

impl Authenticator {
    /// The typed call, on a configured instance.
    pub(crate) async fn authenticate(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        req: &AuthRequest,
    ) -> wasmtime::Result<Result<Identity, Deny>> {
        match self {
            Authenticator::V0_2_0(indices) => {
                indices
                    .load(&mut *store, instance)?
                    .call_authenticate(&mut *store, req)
                    .await
            }
            Authenticator::V0_1_0(indices) => {
                let req = v0_1_0::switchboard::plugin::types::AuthRequest::from(req);
                let decision = indices
                    .load(&mut *store, instance)?
                    .call_authenticate(&mut *store, &req)
                    .await?;
                Ok(decision.map(Identity::from).map_err(Deny::from))
            }
        }
    }
}
