//! The `lifecycle` export every version has: `configure(config-json)`, which the host calls
//! at the start of every fresh instance (and once at load, to validate the config).

use super::{AbiVersion, latest, v0_1_0};
use crate::plugins::imports::CallState;
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

/// `lifecycle` resolved in one component, for the version it was built against.
pub enum Lifecycle {
    V0_1_0(v0_1_0::exports::switchboard::plugin::lifecycle::GuestIndices),
    V0_2_0(latest::exports::switchboard::plugin::lifecycle::GuestIndices),
}

impl Lifecycle {
    /// `None` when the component does not export the version's `lifecycle`.
    pub fn bind(pre: &InstancePre<CallState>, abi: AbiVersion) -> Option<Self> {
        match abi {
            AbiVersion::V0_1_0 => {
                v0_1_0::exports::switchboard::plugin::lifecycle::GuestIndices::new(pre)
                    .ok()
                    .map(Lifecycle::V0_1_0)
            }
            AbiVersion::V0_2_0 => {
                latest::exports::switchboard::plugin::lifecycle::GuestIndices::new(pre)
                    .ok()
                    .map(Lifecycle::V0_2_0)
            }
        }
    }

    /// Hand the plugin its config; the inner `Err` is the plugin's own message.
    pub async fn configure(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        config_json: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Lifecycle::V0_1_0(indices) => {
                indices
                    .load(&mut *store, instance)?
                    .call_configure(&mut *store, config_json)
                    .await
            }
            Lifecycle::V0_2_0(indices) => {
                indices
                    .load(&mut *store, instance)?
                    .call_configure(&mut *store, config_json)
                    .await
            }
        }
    }
}
