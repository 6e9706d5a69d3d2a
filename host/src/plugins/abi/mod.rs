//! The plugin ABI: one module per released `switchboard:plugin` version.
//!
//! - [`v0_2_0`], also [`latest`]: the newest. The host's own code only ever names `latest`.
//! - [`v0_1_0`]: released and frozen. Its host imports delegate to the latest ones and its
//!   exports are called with conversions into the latest types.
//! - [`detect`]: which version a component was built against, from its import and export names.
//! - [`lifecycle`]: the `configure` export every version has.
//!
//! In wasmtime's matching every 0.x minor version is a breaking version, so each version's
//! interfaces are linked under their own names (`switchboard:plugin/log@0.1.0`, `…@0.2.0`) in
//! the one linker ([`add_to_linker`]), and a component binds to exactly the version it was
//! built against.
//!
//! Adding a version: freeze its WIT in `plugin-sdk/wit/vX.Y.Z/`, add `vX_Y_Z.rs` with its own
//! `bindgen!`, give the previous newest module conversions into the new one (as [`v0_1_0`]
//! has), point [`latest`] at the new module, and add the variant to [`AbiVersion`].

pub mod detect;
pub mod lifecycle;
pub mod v0_1_0;
pub mod v0_2_0;

pub use v0_2_0 as latest;

use super::imports::CallState;
use wasmtime::component::{HasSelf, Linker};

/// The WIT package every version belongs to.
pub const PACKAGE: &str = "switchboard:plugin";

/// A released `switchboard:plugin` version this host binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AbiVersion {
    V0_1_0,
    V0_2_0,
}

impl AbiVersion {
    /// Every version this host provides, oldest first.
    pub const ALL: [AbiVersion; 2] = [AbiVersion::V0_1_0, AbiVersion::V0_2_0];
    /// What [`latest`] is.
    pub const LATEST: AbiVersion = AbiVersion::V0_2_0;

    /// `"0.1.0"`, `"0.2.0"`.
    pub fn version(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
        }
    }

    pub fn from_version(version: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.version() == version)
    }

    /// The full name of one of this version's interfaces, e.g.
    /// `switchboard:plugin/lifecycle@0.2.0`.
    pub fn interface(self, name: &str) -> String {
        format!("{PACKAGE}/{name}@{}", self.version())
    }
}

impl std::fmt::Display for AbiVersion {
    /// `switchboard:plugin@0.2.0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PACKAGE}@{}", self.version())
    }
}

/// Every version's host imports, each under its own interface names.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    v0_1_0::Full::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)?;
    v0_2_0::Full::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)?;
    Ok(())
}
