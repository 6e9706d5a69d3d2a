//! The plugin runtime: WebAssembly components decide admission.
//!
//! Plugins implement a version of the `switchboard:plugin` WIT package
//! (`plugin-sdk/wit/v<version>/plugin.wit`) and are listed as `[[plugins]]` in `config.toml`.
//! [`PluginGate`] loads them and implements [`crate::auth::Gatekeeper`], so the rest of the
//! server never knows plugins exist.
//!
//! - [`config`]: the `[[plugins]]` schema and the checks that need no file.
//! - `abi`: one module per released interface version (`v0_1_0`, `v0_2_0` = `latest`),
//!   version detection, conversions into the latest types.
//! - `hooks`: the registry of hooks (`auth`, `room-policy`), one file each: config name,
//!   binding per version, trial at load, typed call.
//! - `engine`: the process-wide wasmtime engine, linker, epoch ticker, compile cache.
//! - `plugin`: one loaded plugin; runs each call in a fresh, limited store.
//! - `grants`: which capabilities a plugin may import, checked at load.
//! - `imports`: the host capabilities (log, clock, crypto, kv, http) and the per-call state.
//! - [`kv`], `upstream`: the key-value store and the named HTTP upstreams behind them.
//! - `convert`: host admission types to and from the WIT types, validating plugin output.
//! - [`gate`]: the auth chain + room policy, fail-closed, with atomic reload.
//! - [`stats`]: call statistics per plugin and hook (admin API, readiness, metrics).
//! - `reporter`: plugin events (`plugin.loaded`, `plugin.reloaded`, `plugin.failed`).
//! - `webhook_policy`: the `webhook` plugins deciding what the webhook outbox delivers.
//! - `recording_policy`: the `recorder` plugins deciding what gets recorded.
//! - `sighup`: reload on SIGHUP (`POST /admin/reload` lives in [`crate::admin`]).
//! - `error`: [`PluginError`] (load) and [`CallFailure`] (call).
//!
//! See `docs/plugins.md` for the operator's and plugin author's view.

mod abi;
pub mod config;
mod convert;
mod engine;
mod error;
pub mod gate;
mod grants;
pub mod hooks;
mod imports;
pub mod kv;
mod plugin;
mod recording_policy;
mod reporter;
mod sighup;
pub mod stats;
mod upstream;
mod wallet;
mod webhook_policy;

pub use abi::AbiVersion;
pub use config::{PluginConfig, PluginGrants, PluginLimits, UpstreamConfig};
pub use engine::CACHE_DIR_ENV;
pub use error::{CallFailure, PluginError};
pub use gate::{PluginGate, PluginInfo, PluginStatus, ReloadReport, ReloadSource};
pub use hooks::{Hook, UnknownHook};
pub use sighup::spawn_sighup_reload;
