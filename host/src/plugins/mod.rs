//! The plugin runtime: WebAssembly components decide admission.
//!
//! Plugins implement the `switchboard:plugin@0.1.0` WIT package (`plugin-sdk/wit/plugin.wit`)
//! and are listed as `[[plugins]]` in `config.toml`. [`PluginGate`] loads them and implements
//! [`crate::auth::Gatekeeper`], so the rest of the server never knows plugins exist.
//!
//! - [`config`]: the `[[plugins]]` / `[upstreams.*]` schema and its validation.
//! - `engine`: the process-wide wasmtime engine, linker, epoch ticker, compile cache.
//! - `plugin`: one loaded plugin; runs each call in a fresh, limited store.
//! - `imports`: host capabilities (log, clock, kv, http) and their grants.
//! - [`gate`]: the auth chain + room policy, fail-closed, with atomic reload.
//! - [`admin`]: `POST /admin/reload` and SIGHUP.
//!
//! See `docs/plugins.md` for the operator's and plugin author's view.

pub mod admin;
pub mod bindings;
pub mod config;
mod engine;
pub mod gate;
mod imports;
pub mod kv;
mod plugin;
mod upstream;

pub use admin::{admin_router, spawn_sighup_reload};
pub use config::{Hook, PluginConfig, PluginGrants, PluginLimits, UpstreamConfig};
pub use engine::CACHE_DIR_ENV;
pub use gate::{PluginGate, ReloadReport, ReloadSource};
pub use plugin::CallFailure;

use std::path::PathBuf;

/// Why plugins could not be loaded. Every variant names the plugin (or upstream) at fault.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{plugin}`: invalid config: {key}: {message}")]
    Config {
        plugin: String,
        key: String,
        message: String,
    },
    #[error("upstream `{name}`: {message}")]
    Upstream { name: String, message: String },
    #[error("plugin `{plugin}`: cannot read {}: {source}", path.display())]
    Read {
        plugin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin `{plugin}`: {} is not a valid WebAssembly component: {reason}", path.display())]
    Compile {
        plugin: String,
        path: PathBuf,
        reason: String,
    },
    #[error("plugin `{plugin}`: does not match the switchboard:plugin@0.1.0 interface: {reason}")]
    Interface { plugin: String, reason: String },
    #[error("plugin `{plugin}`: rejected its config: {message}")]
    Configure { plugin: String, message: String },
    #[error("plugin `{plugin}`: failed while loading: {reason}")]
    Load { plugin: String, reason: String },
    #[error("plugin runtime: {0}")]
    Engine(String),
    #[error("reload refused: {0}")]
    ReloadRefused(String),
    #[error("cannot read the new configuration: {0}")]
    Source(String),
}
