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

use super::PluginError;
use super::bindings::switchboard::plugin::types as wit;
use super::config::{self, Hook, PluginConfig, UpstreamConfig};
use super::engine;
use super::imports::PluginShared;
use super::kv::KvStore;
use super::plugin::{CallFailure, LoadedPlugin};
use super::upstream::Upstreams;
use crate::auth::{Action, AdmitRequest, Denied, Gatekeeper, Identity};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest subject accepted from a plugin.
pub const MAX_SUBJECT_BYTES: usize = 1024;
/// Longest denial reason accepted from a plugin.
pub const MAX_REASON_BYTES: usize = 1024;

/// Re-reads the plugin configuration for [`PluginGate::reload`] (usually: parse `config.toml`).
pub type ReloadSource = Box<
    dyn Fn() -> Result<(Vec<PluginConfig>, BTreeMap<String, UpstreamConfig>), String> + Send + Sync,
>;

/// The plugins in effect; replaced as a whole on reload.
struct PluginSet {
    auth: Vec<Arc<LoadedPlugin>>,
    policy: Vec<Arc<LoadedPlugin>>,
    configs: Vec<PluginConfig>,
    upstreams: BTreeMap<String, UpstreamConfig>,
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
    source: Mutex<Option<Arc<ReloadSource>>>,
    reloading: tokio::sync::Mutex<()>,
}

impl PluginGate {
    /// Load, validate and configure every plugin. Fails with the first problem, naming the
    /// plugin. With an empty list no wasm engine is created and everyone is admitted.
    pub async fn new(
        plugins: Vec<PluginConfig>,
        upstreams: BTreeMap<String, UpstreamConfig>,
    ) -> Result<Self, PluginError> {
        let kv = Mutex::new(HashMap::new());
        let set = load_set(&kv, plugins, upstreams).await?;
        Ok(PluginGate {
            active: ArcSwap::from_pointee(set),
            kv,
            source: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        })
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
            let set = load_set(&self.kv, plugins, upstreams).await?;
            if !self.active.load().auth.is_empty() && set.auth.is_empty() {
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
                self.active.store(Arc::new(set));
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
        &self,
        set: &PluginSet,
        req: &wit::AuthRequest,
    ) -> Result<Identity, Denied> {
        if set.auth.is_empty() {
            return Ok(Identity {
                subject: "anonymous".into(),
                ..Default::default()
            });
        }
        let mut reasons: Vec<String> = Vec::new();
        for plugin in &set.auth {
            let decision = plugin
                .authenticate(req)
                .await
                .map_err(|f| failed(plugin, Hook::Auth, f))?;
            match decision {
                Ok(identity) => {
                    let identity =
                        to_identity(identity).map_err(|f| failed(plugin, Hook::Auth, f))?;
                    if expired(&identity, SystemTime::now()) {
                        return Err(Denied::Unauthorized("credential expired".into()));
                    }
                    return Ok(identity);
                }
                Err(deny) => {
                    let reason = to_reason(&deny).map_err(|f| failed(plugin, Hook::Auth, f))?;
                    match deny.kind {
                        wit::DenyKind::Forbidden => return Err(Denied::Forbidden(reason)),
                        wit::DenyKind::Unauthorized => {
                            if !reasons.contains(&reason) {
                                reasons.push(reason);
                            }
                        }
                    }
                }
            }
        }
        Err(Denied::Unauthorized(reasons.join("; ")))
    }

    async fn run_room_policy(
        &self,
        set: &PluginSet,
        req: &wit::AuthRequest,
        identity: &Identity,
    ) -> Result<(), Denied> {
        if set.policy.is_empty() {
            return Ok(());
        }
        let identity = wit::Identity {
            subject: identity.subject.clone(),
            expires_at: identity.expires_at.map(unix_ms),
            recheck_every_secs: identity
                .recheck_every
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
        };
        for plugin in &set.policy {
            let decision = plugin
                .check(req, &identity)
                .await
                .map_err(|f| failed(plugin, Hook::RoomPolicy, f))?;
            if let Err(deny) = decision {
                let reason = to_reason(&deny).map_err(|f| failed(plugin, Hook::RoomPolicy, f))?;
                return Err(match deny.kind {
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
        self.run_auth_chain(&set, &to_wit(req)).await
    }

    async fn check_room(&self, req: &AdmitRequest, identity: &Identity) -> Result<(), Denied> {
        let set = self.active.load_full();
        self.run_room_policy(&set, &to_wit(req), identity).await
    }

    async fn admit(&self, req: &AdmitRequest) -> Result<Identity, Denied> {
        let set = self.active.load_full();
        let wreq = to_wit(req);
        let identity = self.run_auth_chain(&set, &wreq).await?;
        self.run_room_policy(&set, &wreq, &identity).await?;
        Ok(identity)
    }

    /// Re-runs the auth chain (revocation, bans, expiry live there); room policy is not
    /// re-applied, since a session already counted in its room would trip its own limits.
    /// The subject must not change.
    async fn recheck(&self, req: &AdmitRequest, identity: &Identity) -> Result<(), Denied> {
        let set = self.active.load_full();
        let fresh = self.run_auth_chain(&set, &to_wit(req)).await?;
        if fresh.subject != identity.subject {
            return Err(Denied::Forbidden(format!(
                "credential now identifies `{}` instead of `{}`",
                fresh.subject, identity.subject
            )));
        }
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.active.load().auth.is_empty()
    }
}

async fn load_set(
    kv: &Mutex<HashMap<String, Arc<KvStore>>>,
    plugins: Vec<PluginConfig>,
    upstreams: BTreeMap<String, UpstreamConfig>,
) -> Result<PluginSet, PluginError> {
    config::validate(&plugins, &upstreams)?;
    let mut set = PluginSet {
        auth: Vec::new(),
        policy: Vec::new(),
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
        let loaded = Arc::new(LoadedPlugin::load(runtime.clone(), plugin, shared).await?);
        if loaded.config.hooks.contains(&Hook::Auth) {
            set.auth.push(loaded.clone());
        }
        if loaded.config.hooks.contains(&Hook::RoomPolicy) {
            set.policy.push(loaded);
        }
    }
    Ok(set)
}

/// Log a plugin failure and turn it into a fail-closed denial.
fn failed(plugin: &LoadedPlugin, hook: Hook, failure: CallFailure) -> Denied {
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

fn to_wit(req: &AdmitRequest) -> wit::AuthRequest {
    wit::AuthRequest {
        room: req.room.clone(),
        action: match req.action {
            Action::Publish => wit::Action::Publish,
            Action::Play => wit::Action::Play,
        },
        credential: req.credential.clone(),
        remote_addr: req.remote_addr.map(|a| a.to_string()),
        counts: wit::RoomCounts {
            publishers: req.counts.publishers,
            viewers: req.counts.viewers,
        },
    }
}

/// Validate a plugin's identity; an identity already expired is a denial, not a failure.
fn to_identity(id: wit::Identity) -> Result<Identity, CallFailure> {
    if id.subject.is_empty() {
        return Err(CallFailure::BadOutput("empty subject".into()));
    }
    if id.subject.len() > MAX_SUBJECT_BYTES {
        return Err(CallFailure::BadOutput(format!(
            "subject of {} bytes (max {MAX_SUBJECT_BYTES})",
            id.subject.len()
        )));
    }
    if id.subject.chars().any(char::is_control) {
        return Err(CallFailure::BadOutput(
            "control characters in subject".into(),
        ));
    }
    let expires_at = id.expires_at.map(|ms| {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .unwrap_or(UNIX_EPOCH)
    });
    Ok(Identity {
        subject: id.subject,
        attributes: Vec::new(),
        expires_at,
        // Never re-check more often than once a second.
        recheck_every: id
            .recheck_every_secs
            .map(|s| Duration::from_secs(u64::from(s.max(1)))),
    })
}

fn to_reason(deny: &wit::Deny) -> Result<String, CallFailure> {
    if deny.reason.len() > MAX_REASON_BYTES {
        return Err(CallFailure::BadOutput(format!(
            "denial reason of {} bytes (max {MAX_REASON_BYTES})",
            deny.reason.len()
        )));
    }
    let reason: String = deny
        .reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Ok(if reason.trim().is_empty() {
        "denied".into()
    } else {
        reason
    })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Expired identities are refused at admission rather than handed to the SFU.
fn expired(identity: &Identity, now: SystemTime) -> bool {
    identity.expires_at.is_some_and(|at| at <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_validated() {
        let ok = to_identity(wit::Identity {
            subject: "alice".into(),
            expires_at: Some(1_700_000_000_123),
            recheck_every_secs: Some(0),
        })
        .unwrap();
        assert_eq!(
            ok.expires_at,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(ok.recheck_every, Some(Duration::from_secs(1)));
        assert!(expired(&ok, SystemTime::now()));

        let bad = |subject: String| {
            to_identity(wit::Identity {
                subject,
                expires_at: None,
                recheck_every_secs: None,
            })
            .unwrap_err()
        };
        assert!(matches!(bad(String::new()), CallFailure::BadOutput(_)));
        assert!(matches!(
            bad("x".repeat(MAX_SUBJECT_BYTES + 1)),
            CallFailure::BadOutput(_)
        ));
        assert!(matches!(bad("a\nb".into()), CallFailure::BadOutput(_)));
    }

    #[test]
    fn reasons_are_cleaned() {
        let deny = |reason: String| wit::Deny {
            kind: wit::DenyKind::Forbidden,
            reason,
        };
        assert_eq!(to_reason(&deny("a\r\nb".into())).unwrap(), "a  b");
        assert_eq!(to_reason(&deny("  ".into())).unwrap(), "denied");
        assert!(to_reason(&deny("x".repeat(MAX_REASON_BYTES + 1))).is_err());
    }
}
