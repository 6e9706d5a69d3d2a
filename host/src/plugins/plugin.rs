//! One loaded plugin: a validated component, bound to the interface version it was built
//! against, pre-linked, ready to run a call in a fresh store.
//!
//! Load: read, compile, detect the version (`abi::detect`), check imports against grants,
//! pre-link, bind `lifecycle` and every configured hook (`hooks/`), then a trial instance with
//! the real config. Call: [`LoadedPlugin::run`] gives a hook's bound export a fresh,
//! configured instance within the plugin's memory limit and deadline, and classifies what
//! goes wrong ([`CallFailure`]).

use super::abi::lifecycle::Lifecycle;
use super::abi::{AbiVersion, detect};
use super::config::PluginConfig;
use super::engine::{ContentHash, Runtime};
use super::error::{CallFailure, PluginError};
use super::grants;
use super::hooks::{BindError, Bound, Hook};
use super::imports::{CallState, PluginShared};
use super::stats::{PluginStats, Verdict};
use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

/// Which concurrency budget a call draws from (see `engine::ADMISSION_CALLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Deciding on a new request.
    Admission,
    /// Re-checking a live session.
    Recheck,
}

/// Loading gets more time than a call: the first instantiation touches cold memory.
const MIN_LOAD_TIMEOUT: Duration = Duration::from_secs(2);

pub struct LoadedPlugin {
    pub config: PluginConfig,
    pub hash: ContentHash,
    /// The interface version the component was built against.
    pub abi: AbiVersion,
    /// When it was loaded (start-up or reload).
    pub loaded_at: std::time::SystemTime,
    shared: Arc<PluginShared>,
    /// Call statistics, kept by name across reloads.
    pub stats: Arc<PluginStats>,
    runtime: Arc<Runtime>,
    pre: InstancePre<CallState>,
    lifecycle: Lifecycle,
    /// Every configured hook with its export, in `hooks = [...]` order.
    hooks: Vec<(Hook, Box<dyn Bound>)>,
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
    /// Read, compile, bind, type-check and trial-configure the plugin described by `config`.
    pub async fn load(
        runtime: Arc<Runtime>,
        config: PluginConfig,
        shared: Arc<PluginShared>,
        stats: Arc<PluginStats>,
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

        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&runtime.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports: Vec<String> = ty
            .exports(&runtime.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let abi =
            detect::detect(imports.iter().chain(&exports).map(String::as_str)).map_err(|e| {
                PluginError::Version {
                    plugin: name.clone(),
                    reason: e.to_string(),
                }
            })?;
        let interface = |reason: String| PluginError::Interface {
            plugin: name.clone(),
            interface: abi.to_string(),
            reason,
        };
        grants::check_imports(imports.iter().map(String::as_str), abi, &config.grants)
            .map_err(interface)?;
        let pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| interface(format!("{e:#}")))?;
        let lifecycle = Lifecycle::bind(&pre, abi).ok_or_else(|| {
            interface(format!("does not export `{}`", abi.interface("lifecycle")))
        })?;
        let mut hooks = Vec::with_capacity(config.hooks.len());
        for &hook in &config.hooks {
            let bound = hook.kind().bind(&pre, abi).map_err(|e| {
                interface(match e {
                    BindError::Missing { export } => {
                        format!("does not export `{export}`, needed for hook \"{hook}\"")
                    }
                    BindError::NotInVersion { since } => {
                        format!("cannot serve hook \"{hook}\": it needs {since} or newer")
                    }
                })
            })?;
            hooks.push((hook, bound));
        }

        let config_json = serde_json::Value::Object(config.config.clone()).to_string();
        let plugin = LoadedPlugin {
            memory_limit: (config.limits.memory_mib as usize) << 20,
            timeout: Duration::from_millis(config.limits.timeout_ms),
            config,
            hash,
            abi,
            loaded_at: std::time::SystemTime::now(),
            shared,
            stats,
            runtime,
            pre,
            lifecycle,
            hooks,
            config_json,
        };
        plugin.trial(&name).await?;
        tracing::info!(
            plugin = %name,
            hooks = ?plugin.config.hooks,
            interface = %abi,
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

    /// Whether `hook` is among the plugin's configured hooks.
    pub fn serves(&self, hook: Hook) -> bool {
        self.hooks.iter().any(|(h, _)| *h == hook)
    }

    /// Instantiate once with the real config, so a bad config or an export with the wrong
    /// signature fails the load instead of the first request.
    async fn trial(&self, name: &str) -> Result<(), PluginError> {
        let timeout = self.timeout.max(MIN_LOAD_TIMEOUT);
        let mut store = self.store(timeout);
        let run = async {
            let instance = self.start(&mut store).await?;
            for (_, bound) in &self.hooks {
                bound.trial(&mut store, &instance)?;
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
                    interface: self.abi.to_string(),
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

    /// A fresh store for one call, with the plugin's memory limit and deadline.
    ///
    /// The call yields to the async runtime at every epoch tick (5 ms of running wasm) rather
    /// than holding a worker thread until its deadline: plugin calls share the workers that
    /// forward media, and a looping plugin must not delay packets. At the deadline it traps.
    fn store(&self, timeout: Duration) -> Store<CallState> {
        let mut store = Store::new(
            &self.runtime.engine,
            CallState::new(self.shared.clone(), self.memory_limit),
        );
        store.limiter(|state| state as &mut dyn wasmtime::ResourceLimiter);
        // Never early: the deadline is checked at ticks, so it may run up to one tick late.
        let deadline = Instant::now() + timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                // tokio's own yield: it lets the runtime poll its timers and sockets before
                // this call runs again. (A plain self-wake, wasmtime's `Yield`, keeps the call
                // runnable and tokio then polls I/O only every 61 task turns: 300 ms of 5 ms
                // slices, measured.)
                Ok(wasmtime::UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store
    }

    /// Fresh instance, configured.
    async fn start(&self, store: &mut Store<CallState>) -> Result<Instance, Step> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        self.lifecycle
            .configure(store, &instance, &self.config_json)
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

    /// The export `hook` is bound to, as the hook file's type `B`.
    fn bound<B: Bound>(&self, hook: Hook) -> Result<&B, CallFailure> {
        let (_, bound) = self
            .hooks
            .iter()
            .find(|(h, _)| *h == hook)
            .ok_or(CallFailure::NotServed(hook.name()))?;
        let bound: &dyn Any = bound.as_ref();
        bound.downcast_ref::<B>().ok_or_else(|| {
            // A hook file asked for another hook's type: a host bug, never a plugin's.
            CallFailure::Trap(format!(
                "host error: hook \"{hook}\" is not bound as requested"
            ))
        })
    }

    /// Run `body` with `hook`'s bound export (the hook file's type `B`, which carries the
    /// typed call) on a fresh configured instance, within the plugin's deadline:
    /// `plugin.run(auth::HOOK, Budget::Admission, async |a: &Authenticator, store, instance| ...)`.
    /// Counted as [`LoadedPlugin::run_checked`] counts, every output as `allowed`.
    pub async fn run<B: Bound, R>(
        &self,
        hook: Hook,
        budget: Budget,
        body: impl AsyncFnOnce(&B, &mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        /// Any output: a decision, never a denial.
        struct Output<R>(R);
        impl<R> Verdict for Output<R> {
            fn denied(&self) -> bool {
                false
            }
        }
        self.run_checked(hook, budget, body, |r| Ok(Output(r)))
            .await
            .map(|o| o.0)
    }

    /// Like [`LoadedPlugin::run`], then `check` the output (bad output is the plugin's
    /// failure too) and tell a denial from an allowed request.
    ///
    /// Every call is counted once in [`LoadedPlugin::stats`]: its outcome (allowed, denied or
    /// the failure's kind) and how long the caller waited, permit included.
    pub async fn run_checked<B: Bound, R, T: Verdict>(
        &self,
        hook: Hook,
        budget: Budget,
        body: impl AsyncFnOnce(&B, &mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
        check: impl FnOnce(R) -> Result<T, CallFailure>,
    ) -> Result<T, CallFailure> {
        let started = Instant::now();
        let outcome = self.call(hook, budget, body).await.and_then(check);
        let verdict = outcome.as_ref().map(Verdict::denied);
        self.stats.record(hook, started.elapsed(), verdict);
        outcome
    }

    async fn call<B: Bound, R>(
        &self,
        hook: Hook,
        budget: Budget,
        body: impl AsyncFnOnce(&B, &mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let bound = self.bound::<B>(hook)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = || CallFailure::Timeout(self.timeout.as_millis() as u64);
        let permits = match budget {
            Budget::Admission => &self.runtime.admission_permits,
            Budget::Recheck => &self.runtime.recheck_permits,
        };
        let _permit = tokio::time::timeout_at(deadline, permits.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| CallFailure::Trap("plugin runtime shut down".into()))?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut store = self.store(remaining);
        store.data_mut().recheck = budget == Budget::Recheck;
        let run = async {
            let instance = self.start(&mut store).await?;
            Ok::<_, Step>(body(bound, &mut store, &instance).await?)
        };
        match tokio::time::timeout_at(deadline, run).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(Step::Configure(message))) => Err(CallFailure::Configure(message)),
            Ok(Err(Step::Wasm(e))) => Err(self.classify(e, store.data(), self.timeout)),
            Err(_) => Err(timed_out()),
        }
    }
}

fn hex_prefix(hash: &ContentHash) -> String {
    hash[..6].iter().map(|b| format!("{b:02x}")).collect()
}
