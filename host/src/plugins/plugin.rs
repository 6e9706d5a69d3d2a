//! One loaded plugin: a validated component, pre-linked, ready to run a call in a fresh store.

use super::PluginError;
use super::bindings::exports::switchboard::plugin::{authenticator, lifecycle, policy};
use super::bindings::switchboard::plugin::types::{AuthRequest, Deny, Identity};
use super::config::{Hook, PluginConfig};
use super::engine::{ContentHash, EPOCH_TICK, Runtime};
use super::imports::{CallState, PluginShared};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{Component, Instance, InstancePre};

/// Interfaces the host provides to plugins, and the grant each needs.
const HOST_PACKAGE: &str = "switchboard:plugin/";
const PACKAGE_VERSION: &str = "@0.1.0";

/// Loading gets more time than a call: the first instantiation touches cold memory.
const MIN_LOAD_TIMEOUT: Duration = Duration::from_secs(2);

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
    #[error("does not serve the {0} hook")]
    NotServed(Hook),
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
}

pub struct LoadedPlugin {
    pub config: PluginConfig,
    pub hash: ContentHash,
    shared: Arc<PluginShared>,
    runtime: Arc<Runtime>,
    pre: InstancePre<CallState>,
    lifecycle: lifecycle::GuestIndices,
    auth: Option<authenticator::GuestIndices>,
    policy: Option<policy::GuestIndices>,
    config_json: String,
    memory_limit: usize,
    timeout: Duration,
}

/// What went wrong inside one call, before classification.
enum Step {
    Wasm(wasmtime::Error),
    Configure(String),
}

impl From<wasmtime::Error> for Step {
    fn from(e: wasmtime::Error) -> Self {
        Step::Wasm(e)
    }
}

impl LoadedPlugin {
    /// Read, compile, type-check and trial-configure the plugin described by `config`.
    pub async fn load(
        runtime: Arc<Runtime>,
        config: PluginConfig,
        shared: Arc<PluginShared>,
    ) -> Result<Self, PluginError> {
        let name = config.name.clone();
        let started = Instant::now();
        let bytes = tokio::fs::read(&config.path)
            .await
            .map_err(|source| PluginError::Read {
                plugin: name.clone(),
                path: config.path.clone(),
                source,
            })?;
        let (component, hash, cached) =
            runtime
                .compile(bytes)
                .await
                .map_err(|reason| PluginError::Compile {
                    plugin: name.clone(),
                    path: config.path.clone(),
                    reason,
                })?;
        let interface = |reason: String| PluginError::Interface {
            plugin: name.clone(),
            reason,
        };
        check_imports(&runtime, &component, &config).map_err(interface)?;
        let pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| interface(format!("{e:#}")))?;
        let exported =
            |iface: &str| format!("does not export `{HOST_PACKAGE}{iface}{PACKAGE_VERSION}`");
        let lifecycle =
            lifecycle::GuestIndices::new(&pre).map_err(|_| interface(exported("lifecycle")))?;
        let auth = match config.hooks.contains(&Hook::Auth) {
            true => Some(authenticator::GuestIndices::new(&pre).map_err(|_| {
                interface(format!(
                    "{}, needed for hook \"auth\"",
                    exported("authenticator")
                ))
            })?),
            false => None,
        };
        let policy = match config.hooks.contains(&Hook::RoomPolicy) {
            true => Some(policy::GuestIndices::new(&pre).map_err(|_| {
                interface(format!(
                    "{}, needed for hook \"room-policy\"",
                    exported("policy")
                ))
            })?),
            false => None,
        };
        let config_json = serde_json::Value::Object(config.config.clone()).to_string();
        let plugin = LoadedPlugin {
            memory_limit: (config.limits.memory_mib as usize) << 20,
            timeout: Duration::from_millis(config.limits.timeout_ms),
            config,
            hash,
            shared,
            runtime,
            pre,
            lifecycle,
            auth,
            policy,
            config_json,
        };
        plugin.trial(&name).await?;
        tracing::info!(
            plugin = %name,
            hooks = ?plugin.config.hooks,
            path = %plugin.config.path.display(),
            sha256 = %hex_prefix(&plugin.hash),
            cached,
            took_ms = started.elapsed().as_millis() as u64,
            "plugin loaded"
        );
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Instantiate once with the real config, so a bad config or an export with the wrong
    /// signature fails the load instead of the first request.
    async fn trial(&self, name: &str) -> Result<(), PluginError> {
        let timeout = self.timeout.max(MIN_LOAD_TIMEOUT);
        let mut store = self.store(timeout);
        let run = async {
            let instance = self.start(&mut store).await?;
            if let Some(auth) = &self.auth {
                auth.load(&mut store, &instance)?;
            }
            if let Some(policy) = &self.policy {
                policy.load(&mut store, &instance)?;
            }
            Ok::<_, Step>(())
        };
        let outcome = tokio::time::timeout(timeout, run).await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Step::Configure(message))) => Err(PluginError::Configure {
                plugin: name.to_string(),
                message,
            }),
            Ok(Err(Step::Wasm(e)))
                if e.downcast_ref::<wasmtime::Trap>().is_none() && !store.data().out_of_memory =>
            {
                Err(PluginError::Interface {
                    plugin: name.to_string(),
                    reason: format!("{e:#}"),
                })
            }
            Ok(Err(Step::Wasm(e))) => Err(PluginError::Load {
                plugin: name.to_string(),
                reason: self.classify(e, store.data(), timeout).to_string(),
            }),
            Err(_) => Err(PluginError::Load {
                plugin: name.to_string(),
                reason: CallFailure::Timeout(timeout.as_millis() as u64).to_string(),
            }),
        }
    }

    fn store(&self, timeout: Duration) -> Store<CallState> {
        let mut store = Store::new(
            &self.runtime.engine,
            CallState::new(self.shared.clone(), self.memory_limit),
        );
        store.limiter(|state| state as &mut dyn wasmtime::ResourceLimiter);
        // Round up, plus one tick: the deadline must never fire early.
        let ticks = timeout.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store
    }

    /// Fresh instance, configured.
    async fn start(&self, store: &mut Store<CallState>) -> Result<Instance, Step> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        let lifecycle = self.lifecycle.load(&mut *store, &instance)?;
        lifecycle
            .call_configure(&mut *store, &self.config_json)
            .await?
            .map_err(Step::Configure)?;
        Ok(instance)
    }

    fn classify(&self, e: wasmtime::Error, state: &CallState, timeout: Duration) -> CallFailure {
        if state.out_of_memory {
            return CallFailure::OutOfMemory(self.config.limits.memory_mib);
        }
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => CallFailure::Timeout(timeout.as_millis() as u64),
            Some(trap) => CallFailure::Trap(trap.to_string()),
            None => CallFailure::Trap(format!("{e:#}")),
        }
    }

    /// Run `body` on a fresh configured instance within the plugin's deadline.
    async fn call<R>(
        &self,
        body: impl AsyncFnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = || CallFailure::Timeout(self.timeout.as_millis() as u64);
        let _permit = tokio::time::timeout_at(deadline, self.runtime.permits.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| CallFailure::Trap("plugin runtime shut down".into()))?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut store = self.store(remaining);
        let run = async {
            let instance = self.start(&mut store).await?;
            Ok::<_, Step>(body(&mut store, &instance).await?)
        };
        match tokio::time::timeout_at(deadline, run).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(Step::Configure(message))) => Err(CallFailure::Configure(message)),
            Ok(Err(Step::Wasm(e))) => Err(self.classify(e, store.data(), self.timeout)),
            Err(_) => Err(timed_out()),
        }
    }

    pub async fn authenticate(
        &self,
        req: &AuthRequest,
    ) -> Result<Result<Identity, Deny>, CallFailure> {
        let indices = self
            .auth
            .as_ref()
            .ok_or(CallFailure::NotServed(Hook::Auth))?;
        self.call(async |store, instance| {
            indices
                .load(&mut *store, instance)?
                .call_authenticate(&mut *store, req)
                .await
        })
        .await
    }

    pub async fn check(
        &self,
        req: &AuthRequest,
        identity: &Identity,
    ) -> Result<Result<(), Deny>, CallFailure> {
        let indices = self
            .policy
            .as_ref()
            .ok_or(CallFailure::NotServed(Hook::RoomPolicy))?;
        self.call(async |store, instance| {
            indices
                .load(&mut *store, instance)?
                .call_check(&mut *store, req, identity)
                .await
        })
        .await
    }
}

/// Refuse imports the host does not provide or the config does not grant, naming them.
fn check_imports(
    runtime: &Runtime,
    component: &Component,
    config: &PluginConfig,
) -> Result<(), String> {
    let ty = component.component_type();
    for (name, _) in ty.imports(&runtime.engine) {
        if name.starts_with("wasi:") {
            // Linked with nothing granted.
            continue;
        }
        let Some(rest) = name.strip_prefix(HOST_PACKAGE) else {
            return Err(format!(
                "imports `{name}`, which Switchboard does not provide"
            ));
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if version != &PACKAGE_VERSION[1..] {
            return Err(format!(
                "imports `{name}`, but this host provides switchboard:plugin{PACKAGE_VERSION}"
            ));
        }
        let grants = &config.grants;
        let missing = match iface {
            "types" => None,
            "log" => (!grants.log).then_some("grants.log = true"),
            "clock" => (!grants.clock).then_some("grants.clock = true"),
            "crypto" => (!grants.crypto).then_some("grants.crypto = true"),
            "kv" => (!grants.kv).then_some("grants.kv = true"),
            "http" => grants
                .http
                .is_empty()
                .then_some("grants.http = [\"<upstream>\"]"),
            _ => {
                return Err(format!(
                    "imports `{name}`, which Switchboard does not provide"
                ));
            }
        };
        if let Some(grant) = missing {
            return Err(format!(
                "imports `{name}` but is not granted it (set {grant})"
            ));
        }
    }
    Ok(())
}

fn hex_prefix(hash: &ContentHash) -> String {
    hash[..6].iter().map(|b| format!("{b:02x}")).collect()
}
