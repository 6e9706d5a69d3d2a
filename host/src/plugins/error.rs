//! The plugin runtime's two error types, kept in a leaf so every part can use them.
//!
//! - [`PluginError`]: why plugins could not be loaded (start-up, reload). Every variant names
//!   the plugin or config key at fault; it is shown to the operator as text.
//! - [`CallFailure`]: why one call produced no decision. Every variant denies the request
//!   (fail closed); the client sees [`CallFailure::kind`], the log the whole reason.

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
    /// `[upstreams.<name>]`: `key` is the full config key, e.g. `upstreams.idp.ca_file`.
    #[error("invalid config: {key}: {message}")]
    Upstream { key: String, message: String },
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
    /// The component was built for no interface version this host provides.
    #[error("plugin `{plugin}`: {reason}")]
    Version { plugin: String, reason: String },
    /// The component names a version this host provides but does not match it.
    #[error("plugin `{plugin}`: does not match the {interface} interface: {reason}")]
    Interface {
        plugin: String,
        /// `switchboard:plugin@<version>`, as detected.
        interface: String,
        reason: String,
    },
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

/// Why a call produced no decision. Every variant denies the request (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("exceeded its memory limit of {0} MiB")]
    OutOfMemory(u32),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("rejected its config: {0}")]
    Configure(String),
    #[error("returned invalid output: {0}")]
    BadOutput(String),
    /// The hook (by config name) is not among the plugin's `hooks`.
    #[error("does not serve the {0} hook")]
    NotServed(&'static str),
}

impl CallFailure {
    /// Short form shown to clients (details stay in the server log).
    pub fn kind(&self) -> &'static str {
        match self {
            CallFailure::Timeout(_) => "timeout",
            CallFailure::OutOfMemory(_) => "out of memory",
            CallFailure::Trap(_) => "crashed",
            CallFailure::Configure(_) => "misconfigured",
            CallFailure::BadOutput(_) => "invalid output",
            CallFailure::NotServed(_) => "hook not served",
        }
    }

    /// The outcome label in call statistics and metrics (`plugins::stats::OUTCOMES`).
    pub fn label(&self) -> &'static str {
        match self {
            CallFailure::Timeout(_) => "timeout",
            CallFailure::OutOfMemory(_) => "out_of_memory",
            CallFailure::Trap(_) => "trap",
            CallFailure::Configure(_) => "misconfigured",
            CallFailure::BadOutput(_) => "bad_output",
            CallFailure::NotServed(_) => "not_served",
        }
    }
}
