//! `[[plugins]]` and `[upstreams.<name>]` in `config.toml`, and the checks that need no file.
//!
//! The parts are owned by the modules that use them: hook names come from the hook registry
//! (`hooks/`), grants from `grants.rs`, upstreams from `upstream.rs`.
//!
//! ```toml
//! [[plugins]]
//! name = "auth-jwt"                        # unique; used in logs, errors, KV namespace
//! path = "target/plugins/auth-jwt.wasm"    # the component
//! hooks = ["auth"]                         # names from the hook registry
//! limits = { memory_mib = 32, timeout_ms = 100 }
//! grants = { log = true, clock = true, crypto = true, kv = false, http = ["idp"] }
//! [plugins.config]                         # free-form, handed to the plugin as JSON
//! secret = "..."
//!
//! [upstreams.idp]
//! url = "https://idp.internal:8443/api"
//! ca_file = "/etc/switchboard/idp-ca.pem"  # optional: private PKI
//! ```

use super::error::PluginError;
pub use super::grants::PluginGrants;
use super::hooks::{self, Hook};
pub use super::upstream::UpstreamConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// Largest memory a plugin may be given; also sizes the pooling allocator's slots.
pub const MAX_MEMORY_MIB: u32 = 1024;
/// Longest a single plugin call may take.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique name: appears in logs and errors and scopes the plugin's key-value store.
    pub name: String,
    /// Path to the component (`.wasm`). Relative paths resolve against the working directory.
    pub path: PathBuf,
    /// Hooks served (names from the registry in `hooks/`), evaluated in the order plugins
    /// appear in the file.
    pub hooks: Vec<Hook>,
    /// The plugin's own settings, passed to its `configure` export as JSON.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub limits: PluginLimits,
    #[serde(default)]
    pub grants: PluginGrants,
}

/// Per-call resource limits. Exceeding either fails the call (and denies the request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory cap per call, in MiB.
    pub memory_mib: u32,
    /// Wall-clock budget per call (instantiate + configure + hook), in milliseconds. Enforced
    /// by epoch interruption inside wasm and by a timer around host calls such as HTTP.
    pub timeout_ms: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_mib: 32,
            timeout_ms: 100,
        }
    }
}

/// Check everything that can be checked without touching the `.wasm` files.
pub fn validate(
    plugins: &[PluginConfig],
    upstreams: &BTreeMap<String, UpstreamConfig>,
) -> Result<(), PluginError> {
    for (name, upstream) in upstreams {
        upstream.validate(name)?;
    }
    let mut names = HashSet::new();
    for plugin in plugins {
        let bad = |key: &str, message: String| PluginError::Config {
            plugin: plugin.name.clone(),
            key: key.to_string(),
            message,
        };
        if plugin.name.is_empty()
            || !plugin
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "name",
                "must be non-empty and use only letters, digits, `-` and `_`".into(),
            ));
        }
        if !names.insert(plugin.name.as_str()) {
            return Err(bad(
                "name",
                "another [[plugins]] entry has the same name".into(),
            ));
        }
        if plugin.path.as_os_str().is_empty() {
            return Err(bad("path", "must name the plugin's .wasm file".into()));
        }
        if plugin.hooks.is_empty() {
            return Err(bad(
                "hooks",
                format!("must list at least one of {}", hooks::known_names()),
            ));
        }
        let mut seen = HashSet::new();
        for hook in &plugin.hooks {
            if !seen.insert(hook) {
                return Err(bad("hooks", format!("\"{hook}\" is listed twice")));
            }
        }
        if !(1..=MAX_MEMORY_MIB).contains(&plugin.limits.memory_mib) {
            return Err(bad(
                "limits.memory_mib",
                format!(
                    "{} is out of range (1..={MAX_MEMORY_MIB})",
                    plugin.limits.memory_mib
                ),
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&plugin.limits.timeout_ms) {
            return Err(bad(
                "limits.timeout_ms",
                format!(
                    "{} is out of range (1..={MAX_TIMEOUT_MS})",
                    plugin.limits.timeout_ms
                ),
            ));
        }
        for name in &plugin.grants.http {
            if !upstreams.contains_key(name) {
                return Err(bad(
                    "grants.http",
                    format!("upstream `{name}` is not declared (add [upstreams.{name}] url = ...)"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(toml_src: &str) -> PluginConfig {
        #[derive(Deserialize)]
        struct File {
            plugins: Vec<PluginConfig>,
        }
        let file: File = toml_from_str(toml_src);
        file.plugins.into_iter().next().expect("one plugin")
    }

    fn toml_from_str<T: serde::de::DeserializeOwned>(s: &str) -> T {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(s))
            .extract()
            .expect("valid toml")
    }

    #[test]
    fn defaults_and_free_form_config() {
        let p = plugin(
            r#"
            [[plugins]]
            name = "jwt"
            path = "jwt.wasm"
            hooks = ["auth", "room-policy"]
            [plugins.config]
            secret = "x"
            leeway_secs = 30
            keys = [{ alg = "ES256", pem = "..." }]
            "#,
        );
        assert_eq!(p.hooks, vec![hooks::auth::HOOK, hooks::policy::HOOK]);
        assert_eq!(p.limits, PluginLimits::default());
        assert_eq!(p.grants, PluginGrants::default());
        assert_eq!(p.config["leeway_secs"], serde_json::json!(30));
        assert_eq!(p.config["keys"][0]["alg"], serde_json::json!("ES256"));
        validate(&[p], &BTreeMap::new()).unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        use figment::providers::Format;
        let err = figment::Figment::from(figment::providers::Toml::string(
            "name = \"x\"\npath = \"x.wasm\"\nhooks = [\"auth\"]\nlimit = {}\n",
        ))
        .extract::<PluginConfig>()
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");

        let err = figment::Figment::from(figment::providers::Toml::string(
            "name = \"x\"\npath = \"x.wasm\"\nhooks = [\"authz\"]\n",
        ))
        .extract::<PluginConfig>()
        .unwrap_err();
        // The registry's names, so a new hook is listed without touching this file.
        assert!(
            err.to_string()
                .contains("unknown hook \"authz\"; known hooks: \"auth\", \"room-policy\""),
            "{err}"
        );
    }

    #[test]
    fn validation_names_plugin_and_key() {
        let base = plugin("[[plugins]]\nname = \"a\"\npath = \"a.wasm\"\nhooks = [\"auth\"]\n");
        let check = |p: PluginConfig| validate(&[p], &BTreeMap::new()).unwrap_err().to_string();

        let mut p = base.clone();
        p.limits.memory_mib = 0;
        assert_eq!(
            check(p),
            "plugin `a`: invalid config: limits.memory_mib: 0 is out of range (1..=1024)"
        );

        let mut p = base.clone();
        p.hooks.clear();
        assert_eq!(
            check(p),
            "plugin `a`: invalid config: hooks: must list at least one of \"auth\", \"room-policy\", \"webhook\", \"recorder\""
        );

        let mut p = base.clone();
        p.grants.http = vec!["idp".into()];
        assert!(check(p).contains("upstream `idp` is not declared"));

        let mut p = base.clone();
        p.name = "has space".into();
        assert!(check(p).contains("`has space`: invalid config: name"));

        let dup = validate(&[base.clone(), base.clone()], &BTreeMap::new()).unwrap_err();
        assert!(dup.to_string().contains("same name"));
    }
}
