//! `[[plugins]]` and `[upstreams.<name>]` in `config.toml`.
//!
//! ```toml
//! [[plugins]]
//! name = "auth-jwt"                        # unique; used in logs, errors, KV namespace
//! path = "target/plugins/auth-jwt.wasm"    # the component
//! hooks = ["auth"]                         # "auth" and/or "room-policy"
//! limits = { memory_mib = 32, timeout_ms = 100 }
//! grants = { log = true, clock = true, crypto = true, kv = false, http = ["idp"] }
//! [plugins.config]                         # free-form, handed to the plugin as JSON
//! secret = "..."
//!
//! [upstreams.idp]
//! url = "https://idp.internal:8443/api"
//! ```

use super::PluginError;
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
    /// Hooks served, evaluated in the order plugins appear in the file.
    pub hooks: Vec<Hook>,
    /// The plugin's own settings, passed to its `configure` export as JSON.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub limits: PluginLimits,
    #[serde(default)]
    pub grants: PluginGrants,
}

/// A decision point a plugin can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// `authenticate`: credential -> identity.
    Auth,
    /// `check`: may this identity do this in this room now?
    RoomPolicy,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Auth => "auth",
            Hook::RoomPolicy => "room-policy",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

/// Host capabilities granted to the plugin. A component importing an interface it is not
/// granted fails to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginGrants {
    /// `switchboard:plugin/log` (rate-limited, tagged with the plugin name).
    pub log: bool,
    /// `switchboard:plugin/clock`.
    pub clock: bool,
    /// `switchboard:plugin/crypto`: native signature verification (pure computation).
    pub crypto: bool,
    /// `switchboard:plugin/kv`: a private in-memory key-value store with TTL and CAS.
    pub kv: bool,
    /// `switchboard:plugin/http`: the `[upstreams.<name>]` this plugin may call.
    pub http: Vec<String>,
}

impl Default for PluginGrants {
    fn default() -> Self {
        PluginGrants {
            log: true,
            clock: true,
            crypto: true,
            kv: false,
            http: Vec::new(),
        }
    }
}

/// One `[upstreams.<name>]` entry: an HTTP service plugins may call by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL (`http` or `https`); plugin paths are appended to it.
    pub url: String,
    /// Per-request timeout, in milliseconds (the calling plugin's own timeout also applies).
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: u64,
    /// Headers added to every request, e.g. an API key the plugin never sees. They override
    /// headers of the same name set by the plugin.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Responses with a larger body fail with `too-large`.
    #[serde(default = "default_max_response_kib")]
    pub max_response_kib: u32,
}

fn default_upstream_timeout_ms() -> u64 {
    2_000
}

fn default_max_response_kib() -> u32 {
    1_024
}

/// Check everything that can be checked without touching the `.wasm` files.
pub fn validate(
    plugins: &[PluginConfig],
    upstreams: &BTreeMap<String, UpstreamConfig>,
) -> Result<(), PluginError> {
    for (name, upstream) in upstreams {
        validate_upstream(name, upstream)?;
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
                "must list at least one of \"auth\", \"room-policy\"".into(),
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

fn validate_upstream(name: &str, upstream: &UpstreamConfig) -> Result<(), PluginError> {
    let bad = |message: String| PluginError::Upstream {
        name: name.to_string(),
        message,
    };
    let url = reqwest::Url::parse(&upstream.url)
        .map_err(|e| bad(format!("url `{}`: {e}", upstream.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "url `{}`: must be http or https",
            upstream.url
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(format!(
            "url `{}`: must not have a query or fragment",
            upstream.url
        )));
    }
    if !(1..=MAX_TIMEOUT_MS).contains(&upstream.timeout_ms) {
        return Err(bad(format!(
            "timeout_ms = {} is out of range (1..={MAX_TIMEOUT_MS})",
            upstream.timeout_ms
        )));
    }
    if upstream.max_response_kib == 0 {
        return Err(bad("max_response_kib must be at least 1".into()));
    }
    for (header, value) in &upstream.headers {
        reqwest::header::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| bad(format!("headers: `{header}` is not a valid header name")))?;
        reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| bad(format!("headers.{header}: not a valid header value")))?;
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
        assert_eq!(p.hooks, vec![Hook::Auth, Hook::RoomPolicy]);
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
        assert!(err.to_string().contains("authz"), "{err}");
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
        assert!(check(p).contains("hooks"));

        let mut p = base.clone();
        p.grants.http = vec!["idp".into()];
        assert!(check(p).contains("upstream `idp` is not declared"));

        let mut p = base.clone();
        p.name = "has space".into();
        assert!(check(p).contains("`has space`: invalid config: name"));

        let dup = validate(&[base.clone(), base.clone()], &BTreeMap::new()).unwrap_err();
        assert!(dup.to_string().contains("same name"));
    }

    #[test]
    fn upstreams_are_checked() {
        let mut ups = BTreeMap::new();
        ups.insert(
            "idp".to_string(),
            UpstreamConfig {
                url: "ftp://x".into(),
                timeout_ms: 100,
                headers: BTreeMap::new(),
                max_response_kib: 1,
            },
        );
        let err = validate(&[], &ups).unwrap_err().to_string();
        assert!(err.starts_with("upstream `idp`: url `ftp://x`"), "{err}");

        ups.get_mut("idp").unwrap().url = "https://idp.example/api".into();
        validate(&[], &ups).unwrap();
        ups.get_mut("idp")
            .unwrap()
            .headers
            .insert("bad header".into(), "v".into());
        assert!(
            validate(&[], &ups)
                .unwrap_err()
                .to_string()
                .contains("bad header")
        );
    }
}
