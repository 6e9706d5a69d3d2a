//! What a hook is, shared by the registry (`hooks/mod.rs`) and every hook file.
//!
//! A hook file implements [`HookKind`] (its config name, how it binds to a component's exports
//! for each interface version) and a [`Bound`] type (the resolved export: its trial at load and
//! its typed call), and exports a `HOOK` constant. The loader (`plugin.rs`) only sees these
//! traits, so it needs no change when a hook is added.

use crate::plugins::abi::AbiVersion;
use crate::plugins::imports::CallState;
use std::any::Any;
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

/// A hook named in a plugin's `hooks = [...]`: always one of the registry's, so it can be bound.
#[derive(Clone, Copy)]
pub struct Hook(&'static dyn HookKind);

impl Hook {
    /// For a hook file's `HOOK` constant.
    pub(crate) const fn new(kind: &'static dyn HookKind) -> Self {
        Hook(kind)
    }

    /// The name used in `hooks = [...]`, logs and errors: `"auth"`, `"room-policy"`.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    pub(crate) fn kind(self) -> &'static dyn HookKind {
        self.0
    }
}

impl PartialEq for Hook {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Hook {}

impl std::hash::Hash for Hook {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.name())
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Hook {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One hook: implemented by a unit struct in the hook's file.
pub(crate) trait HookKind: Sync {
    /// The name in `hooks = [...]`.
    fn name(&self) -> &'static str;

    /// Resolve the hook's export in a component built against `abi` (a name lookup; the
    /// signature is checked by [`Bound::trial`]).
    fn bind(
        &self,
        pre: &InstancePre<CallState>,
        abi: AbiVersion,
    ) -> Result<Box<dyn Bound>, BindError>;
}

/// A hook's export resolved in one component. The hook file's concrete type also carries the
/// typed call, which callers reach through `LoadedPlugin::run`.
pub(crate) trait Bound: Any + Send + Sync {
    /// At load, on a configured instance: load the export, checking its signature, so a wrong
    /// one fails the load instead of the first request.
    fn trial(&self, store: &mut Store<CallState>, instance: &Instance) -> wasmtime::Result<()>;
}

/// Why a hook cannot be bound to a component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BindError {
    /// The component's version has the hook, but the component does not export it.
    #[error("does not export `{export}`")]
    Missing { export: String },
    /// The hook is newer than the version the component was built against.
    #[error("has no such hook in this version (it needs {since} or newer)")]
    NotInVersion { since: AbiVersion },
}

/// `HookKind::bind` for a hook new in 0.2.0: 0.1.0 components cannot serve it; in 0.2.0 ones
/// `resolve` finds the `interface` export (a failure means it is not exported).
pub(crate) fn bind_since_v0_2_0<I>(
    pre: &InstancePre<CallState>,
    abi: AbiVersion,
    interface: &str,
    resolve: impl FnOnce(&InstancePre<CallState>) -> wasmtime::Result<I>,
    bound: impl FnOnce(I) -> Box<dyn Bound>,
) -> Result<Box<dyn Bound>, BindError> {
    match abi {
        AbiVersion::V0_1_0 => Err(BindError::NotInVersion {
            since: AbiVersion::V0_2_0,
        }),
        AbiVersion::V0_2_0 => resolve(pre).map(bound).map_err(|_| BindError::Missing {
            export: abi.interface(interface),
        }),
    }
}
