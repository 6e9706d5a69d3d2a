//! [`PluginGate`]: admission decided by the configured auth and room-policy plugins.
//!
//! Order of evaluation:
//! 1. **Auth chain**, plugins in config order. The first identity wins. A plugin answering
//!    `unauthorized` means "not my credential" and the next plugin is asked; `forbidden` is
//!    final. If every plugin answers `unauthorized`, the request gets 401. With no auth plugin
//!    the caller is `anonymous` (and [`Gatekeeper::is_open`] is true).
//! 2. **Room policy**, every room-policy plugin in config order; all must allow.
//!
//! Any plugin *failure* (trap, timeout, memory limit, garbage output) stops evaluation and
//! denies with [`Denied::Unavailable`] (503): a broken policy never falls through to a weaker
//! one. The server keeps serving; the log names the plugin and the cause.

use super::abi::AbiVersion;
use super::abi::latest::switchboard::plugin::types as wit;
use super::config::{self, PluginConfig, UpstreamConfig};
use super::convert::{expired, identity_to_wit, to_identity, to_reason, to_wit};
use super::engine;
use super::error::{CallFailure, PluginError};
use super::hooks::auth::{self, Authenticator};
use super::hooks::policy::{self, Policy};
use super::hooks::{self, Hook};
use super::imports::PluginShared;
use super::kv::KvStore;
use super::plugin::{Budget, LoadedPlugin};
use super::reporter::PluginEvents;
use super::stats::{HookSnapshot, LatencyHistograms, PluginStats};
use super::upstream::Upstreams;
use crate::auth::{AdmitRequest, Denied, Gatekeeper, Identity};
use crate::events::EventBus;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Re-reads the plugin configuration for [`PluginGate::reload`] (usually: parse `config.toml`).
pub type ReloadSource = Box<
    dyn Fn() -> Result<(Vec<PluginConfig>, BTreeMap<String, UpstreamConfig>), String> + Send + Sync,
>;

/// The plugins in effect; replaced as a whole on reload.
struct PluginSet {
    /// Where failures are reported (shared by every set of one gate).
    events: Arc<PluginEvents>,
    /// Every plugin, in config order.
    loaded: Vec<Arc<LoadedPlugin>>,
    /// The plugins serving each registered hook, in config order.
    serving: HashMap<Hook, Vec<Arc<LoadedPlugin>>>,
    configs: Vec<PluginConfig>,
    upstreams: BTreeMap<String, UpstreamConfig>,
}

impl PluginSet {
    /// The plugins serving `hook`, in config order.
    fn serving(&self, hook: Hook) -> &[Arc<LoadedPlugin>] {
        self.serving.get(&hook).map_or(&[], Vec::as_slice)
    }
}

/// One plugin in effect, as [`PluginGate::plugins`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    /// The interface version the component was built against.
    pub interface: AbiVersion,
    pub hooks: Vec<Hook>,
}

/// One plugin in effect with its health and call statistics ([`PluginGate::status`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginStatus {
    pub info: PluginInfo,
    /// The component file, and the SHA-256 of what was loaded from it.
    pub path: std::path::PathBuf,
    pub sha256: String,
    /// When this version of the plugin was loaded (start-up or the last reload).
    pub loaded_at: SystemTime,
    /// Per configured hook, in config order; counted since start-up, across reloads.
    pub calls: Vec<HookSnapshot>,
}

impl PluginStatus {
    /// Healthy unless the last call of one of its hooks failed (trap, timeout, memory, bad
    /// output): with fail-closed hooks, a failing plugin is refusing requests.
    pub fn healthy(&self) -> bool {
        self.calls.iter().all(|c| c.consecutive_failures == 0)
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Plugin names now in effect, in config order.
    pub plugins: Vec<String>,
    pub took_ms: u64,
}

/// The [`Gatekeeper`] backed by WebAssembly plugins. Cheap to call concurrently; each call
/// runs in a fresh instance.
pub struct PluginGate {
    active: ArcSwap<PluginSet>,
    /// KV stores by plugin name, kept across reloads.
    kv: Mutex<HashMap<String, Arc<KvStore>>>,
    /// Call statistics by plugin name, kept across reloads, and what makes their histograms.
    stats: Arc<StatsByName>,
    source: Mutex<Option<Arc<ReloadSource>>>,
    reloading: tokio::sync::Mutex<()>,
    /// Counts successful reloads; the SFU re-checks every live session on each.
    reloads: tokio::sync::watch::Sender<u64>,
    /// Plugin events, once [`PluginGate::publish_events_to`] named a bus.
    events: Arc<PluginEvents>,
}

impl PluginGate {
    /// Load, validate and configure every plugin. Fails with the first problem, naming the
    /// plugin. With an empty list no wasm engine is created and everyone is admitted.
    pub async fn new(
        plugins: Vec<PluginConfig>,
        upstreams: BTreeMap<String, UpstreamConfig>,
    ) -> Result<Self, PluginError> {
        let kv = Mutex::new(HashMap::new());
        let events = Arc::new(PluginEvents::default());
        let stats = Arc::new(StatsByName::default());
        let set = load_set(&kv, &stats, &events, plugins, upstreams).await?;
        Ok(PluginGate {
            active: ArcSwap::from_pointee(set),
            kv,
            stats,
            source: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
            reloads: tokio::sync::watch::channel(0).0,
            events,
        })
    }

    /// Publish plugin events (`plugin.loaded`, `plugin.reloaded`, `plugin.failed`) to `bus`;
    /// the plugins in effect are announced as loaded now.
    pub fn publish_events_to(&self, bus: EventBus) {
        self.events.attach(bus);
        self.announce_loaded(&self.active.load());
    }

    fn announce_loaded(&self, set: &PluginSet) {
        for plugin in &set.loaded {
            let hooks = hooks::REGISTRY
                .iter()
                .filter(|h| plugin.serves(**h))
                .map(|h| h.name().to_owned())
                .collect();
            self.events.loaded(plugin.name(), hooks);
        }
    }

    /// Where [`PluginGate::reload`] gets the new configuration. Without a source, reload
    /// re-reads the `.wasm` files with the current configuration.
    pub fn with_reload_source(self, source: ReloadSource) -> Self {
        self.set_reload_source(source);
        self
    }

    /// Like [`PluginGate::with_reload_source`], for a gate that is already shared.
    pub fn set_reload_source(&self, source: ReloadSource) {
        *self.source.lock() = Some(Arc::new(source));
    }

    /// Names of the plugins in effect, in config order.
    pub fn plugin_names(&self) -> Vec<String> {
        self.active
            .load()
            .configs
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Whether any plugin in effect serves `hook`.
    pub(crate) fn serves(&self, hook: Hook) -> bool {
        !self.active.load().serving(hook).is_empty()
    }

    /// The plugins now serving `hook`, in config order, and where their failures are reported.
    pub(crate) fn serving_now(&self, hook: Hook) -> (Vec<Arc<LoadedPlugin>>, Arc<PluginEvents>) {
        let set = self.active.load();
        (set.serving(hook).to_vec(), set.events.clone())
    }

    /// The plugins in effect, in config order, with the interface version each was bound to.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.active
            .load()
            .loaded
            .iter()
            .map(|p| PluginInfo {
                name: p.name().to_string(),
                interface: p.abi,
                hooks: p.config.hooks.clone(),
            })
            .collect()
    }

    /// The plugins in effect, in config order, with their health and call statistics.
    pub fn status(&self) -> Vec<PluginStatus> {
        let set = self.active.load();
        set.loaded
            .iter()
            .map(|p| PluginStatus {
                info: PluginInfo {
                    name: p.name().to_string(),
                    interface: p.abi,
                    hooks: p.config.hooks.clone(),
                },
                path: p.config.path.clone(),
                sha256: p.hash.iter().map(|b| format!("{b:02x}")).collect(),
                loaded_at: p.loaded_at,
                calls: p.stats.snapshot(&p.config.hooks),
            })
            .collect()
    }

    /// Record each plugin call's latency in the histogram `histograms` makes for its plugin
    /// and hook (`crate::metrics` does this at start-up); plugins loaded later get theirs too.
    pub fn record_latency_in(&self, histograms: LatencyHistograms) {
        let by_name = self.stats.by_name.lock();
        for stats in by_name.values() {
            stats.attach(&histograms);
        }
        let _ = self.stats.histograms.set(histograms);
        drop(by_name);
    }

    /// Reload from the reload source (or the current config): recompile, validate, swap.
    /// On any error the plugins in effect stay as they were.
    pub async fn reload(&self) -> Result<ReloadReport, PluginError> {
        let source = self.source.lock().clone();
        let (plugins, upstreams) = match source {
            Some(source) => source().map_err(PluginError::Source)?,
            None => {
                let current = self.active.load();
                (current.configs.clone(), current.upstreams.clone())
            }
        };
        self.reload_with(plugins, upstreams).await
    }

    /// Replace the plugins with `plugins` atomically. Calls already running finish on the
    /// old plugins. Refuses to drop every auth plugin of a gate that had some: turning an
    /// authenticated server into an open one takes a restart.
    pub async fn reload_with(
        &self,
        plugins: Vec<PluginConfig>,
        upstreams: BTreeMap<String, UpstreamConfig>,
    ) -> Result<ReloadReport, PluginError> {
        let _one_at_a_time = self.reloading.lock().await;
        let started = Instant::now();
        let result = async {
            let set = load_set(&self.kv, &self.stats, &self.events, plugins, upstreams).await?;
            if !self.active.load().serving(auth::HOOK).is_empty()
                && set.serving(auth::HOOK).is_empty()
            {
                return Err(PluginError::ReloadRefused(
                    "the new configuration has no auth plugin; restart to run without authentication".into(),
                ));
            }
            Ok(set)
        }
        .await;
        match result {
            Ok(set) => {
                let report = ReloadReport {
                    plugins: set.configs.iter().map(|c| c.name.clone()).collect(),
                    took_ms: started.elapsed().as_millis() as u64,
                };
                let set = Arc::new(set);
                self.active.store(set.clone());
                self.events.reloaded(report.plugins.clone());
                self.announce_loaded(&set);
                self.reloads.send_modify(|n| *n += 1);
                tracing::info!(plugins = ?report.plugins, took_ms = report.took_ms, "plugins reloaded");
                Ok(report)
            }
            Err(e) => {
                tracing::error!(error = %e, "plugin reload failed; keeping the plugins in effect");
                Err(e)
            }
        }
    }

    async fn run_auth_chain(
        set: &PluginSet,
        req: &wit::AuthRequest,
        budget: Budget,
    ) -> Result<Identity, Denied> {
        let chain = set.serving(auth::HOOK);
        if chain.is_empty() {
            return Ok(anonymous());
        }
        let mut reasons: Vec<String> = Vec::new();
        for plugin in chain {
            let failed = |f| failed(&set.events, plugin, auth::HOOK, f);
            let decision = plugin
                .run_checked(
                    auth::HOOK,
                    budget,
                    async |a: &Authenticator, store, instance| {
                        a.authenticate(store, instance, req).await
                    },
                    checked_decision(to_identity),
                )
                .await
                .map_err(failed)?;
            match decision {
                Ok(identity) => {
                    if expired(&identity, SystemTime::now()) {
                        return Err(Denied::Unauthorized("credential expired".into()));
                    }
                    return Ok(identity);
                }
                Err((wit::DenyKind::Forbidden, reason)) => return Err(Denied::Forbidden(reason)),
                Err((wit::DenyKind::Unauthorized, reason)) => {
                    if !reasons.contains(&reason) {
                        reasons.push(reason);
                    }
                }
            }
        }
        Err(Denied::Unauthorized(reasons.join("; ")))
    }

    async fn run_room_policy(
        set: &PluginSet,
        req: &wit::AuthRequest,
        identity: &Identity,
    ) -> Result<(), Denied> {
        let policies = set.serving(policy::HOOK);
        if policies.is_empty() {
            return Ok(());
        }
        let identity = identity_to_wit(identity);
        for plugin in policies {
            let failed = |f| failed(&set.events, plugin, policy::HOOK, f);
            let decision = plugin
                .run_checked(
                    policy::HOOK,
                    Budget::Admission,
                    async |p: &Policy, store, instance| {
                        p.check(store, instance, req, &identity).await
                    },
                    checked_decision(Ok),
                )
                .await
                .map_err(failed)?;
            if let Err((kind, reason)) = decision {
                return Err(match kind {
                    wit::DenyKind::Unauthorized => Denied::Unauthorized(reason),
                    wit::DenyKind::Forbidden => Denied::Forbidden(reason),
                });
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Gatekeeper for PluginGate {
    async fn authenticate(&self, req: &AdmitRequest) -> Result<Identity, Denied> {
        // Hold this set for the whole decision: a concurrent reload does not affect it.
        let set = self.active.load_full();
        if set.serving(auth::HOOK).is_empty() {
            return Ok(anonymous()); // no plugin to run: no trip to the plugin threads
        }
        let req = to_wit(req);
        on_plugin_threads(async move { Self::run_auth_chain(&set, &req, Budget::Admission).await })
            .await
    }

    async fn check_room(&self, req: &AdmitRequest, identity: &Identity) -> Result<(), Denied> {
        let set = self.active.load_full();
        if set.serving(policy::HOOK).is_empty() {
            return Ok(());
        }
        let (req, identity) = (to_wit(req), identity.clone());
        on_plugin_threads(async move { Self::run_room_policy(&set, &req, &identity).await }).await
    }

    async fn admit(&self, req: &AdmitRequest) -> Result<Identity, Denied> {
        let set = self.active.load_full();
        let req = to_wit(req);
        on_plugin_threads(async move {
            let identity = Self::run_auth_chain(&set, &req, Budget::Admission).await?;
            Self::run_room_policy(&set, &req, &identity).await?;
            Ok(identity)
        })
        .await
    }

    /// Re-runs the auth chain (revocation, bans, expiry live there); room policy is not
    /// re-applied, since a session already counted in its room would trip its own limits.
    /// The subject must not change.
    async fn recheck(&self, req: &AdmitRequest, identity: &Identity) -> Result<(), Denied> {
        let set = self.active.load_full();
        let req = to_wit(req);
        let fresh =
            on_plugin_threads(
                async move { Self::run_auth_chain(&set, &req, Budget::Recheck).await },
            )
            .await?;
        if fresh.subject != identity.subject {
            return Err(Denied::Forbidden(format!(
                "credential now identifies `{}` instead of `{}`",
                fresh.subject, identity.subject
            )));
        }
        Ok(())
    }

    fn reloads(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.reloads.subscribe())
    }

    fn is_open(&self) -> bool {
        self.active.load().serving(auth::HOOK).is_empty()
    }
}

/// A decision: what was allowed, or the denial's kind and reason.
type Decision<T> = Result<T, (wit::DenyKind, String)>;

/// A plugin's decision with its output validated: `allow` converts what it allows, a denial
/// becomes its kind and reason. Invalid output is the plugin's failure (`BadOutput`).
fn checked_decision<A, T>(
    allow: impl FnOnce(A) -> Result<T, CallFailure>,
) -> impl FnOnce(Result<A, wit::Deny>) -> Result<Decision<T>, CallFailure> {
    move |decision| match decision {
        Ok(allowed) => allow(allowed).map(Ok),
        Err(deny) => to_reason(&deny).map(|reason| Err((deny.kind, reason))),
    }
}

/// Call statistics by plugin name, kept across reloads.
#[derive(Default)]
struct StatsByName {
    by_name: Mutex<HashMap<String, Arc<PluginStats>>>,
    histograms: std::sync::OnceLock<LatencyHistograms>,
}

impl StatsByName {
    fn of(&self, name: &str) -> Arc<PluginStats> {
        let mut by_name = self.by_name.lock();
        by_name
            .entry(name.to_owned())
            .or_insert_with(|| {
                let stats = PluginStats::new(name);
                if let Some(h) = self.histograms.get() {
                    stats.attach(h);
                }
                Arc::new(stats)
            })
            .clone()
    }
}

async fn load_set(
    kv: &Mutex<HashMap<String, Arc<KvStore>>>,
    stats: &StatsByName,
    events: &Arc<PluginEvents>,
    plugins: Vec<PluginConfig>,
    upstreams: BTreeMap<String, UpstreamConfig>,
) -> Result<PluginSet, PluginError> {
    config::validate(&plugins, &upstreams)?;
    let mut set = PluginSet {
        events: events.clone(),
        loaded: Vec::new(),
        serving: HashMap::new(),
        configs: plugins.clone(),
        upstreams: upstreams.clone(),
    };
    if plugins.is_empty() {
        return Ok(set);
    }
    let runtime = engine::runtime()?;
    let http = Arc::new(Upstreams::new(&upstreams)?);
    for plugin in plugins {
        let store = kv.lock().entry(plugin.name.clone()).or_default().clone();
        let shared = Arc::new(PluginShared::new(
            &plugin.name,
            plugin.grants.clone(),
            store,
            http.clone(),
        ));
        let stats = stats.of(&plugin.name);
        let loaded = Arc::new(LoadedPlugin::load(runtime.clone(), plugin, shared, stats).await?);
        for &hook in hooks::REGISTRY {
            if loaded.serves(hook) {
                set.serving.entry(hook).or_default().push(loaded.clone());
            }
        }
        set.loaded.push(loaded);
    }
    Ok(set)
}

/// Run a decision on the plugin threads (see `engine::plugin_threads`), never on the workers
/// that forward media. A panic there (a host bug) denies, like any other failure.
async fn on_plugin_threads<R: Send + 'static>(
    decision: impl std::future::Future<Output = Result<R, Denied>> + Send + 'static,
) -> Result<R, Denied> {
    use tracing::instrument::{Instrument, WithSubscriber};
    // Logs from the call go where the caller's would (its span, its subscriber).
    let decision = decision.in_current_span().with_current_subscriber();
    match engine::plugin_threads().spawn(decision).await {
        Ok(decided) => decided,
        Err(e) => {
            tracing::error!(error = %e, "plugin decision task failed; request denied (fail closed)");
            Err(Denied::Unavailable("policy evaluation failed".into()))
        }
    }
}

/// Who the caller is when no auth plugin is configured.
fn anonymous() -> Identity {
    Identity {
        subject: "anonymous".into(),
        ..Default::default()
    }
}

/// Log a plugin failure and turn it into a fail-closed denial.
fn failed(
    events: &PluginEvents,
    plugin: &LoadedPlugin,
    hook: Hook,
    failure: CallFailure,
) -> Denied {
    events.failed(plugin.name(), hook.name(), &failure.to_string());
    tracing::error!(
        plugin = plugin.name(),
        %hook,
        error = %failure,
        "plugin failed; request denied (fail closed)"
    );
    Denied::Unavailable(format!(
        "{hook} plugin `{}` failed ({})",
        plugin.name(),
        failure.kind()
    ))
}
