//! The webhook configuration: `[[webhooks]]` endpoints, `[outbox]` delivery settings and
//! `[store]` (the durable file), with the checks serde cannot express. `config/` holds these
//! sections and hands them here; errors name the key and what was expected.

use super::sign::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Default per-attempt timeout of an endpoint.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Longest name of an endpoint (it appears in logs, admin paths and metric labels).
pub const MAX_NAME_CHARS: usize = 64;

/// `[[webhooks]]`: one endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointConfig {
    /// Unique; `A-Z a-z 0-9 - _`, 1–64 characters. Plugins and the admin API name it.
    pub name: String,
    /// `http://` or `https://`. Redirects are never followed.
    pub url: String,
    /// `whsec_<base64>`, or a list of them while rotating (one `v1,` signature each).
    pub secret: Secrets,
    /// Event types delivered (`"room.started"`, or `"publish.*"` for a family); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Milliseconds one attempt may take (connect, send, answer), 1–60000.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// One secret or several (rotation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Secrets {
    One(String),
    Many(Vec<String>),
}

impl Secrets {
    pub fn as_list(&self) -> Vec<&str> {
        match self {
            Secrets::One(s) => vec![s.as_str()],
            Secrets::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

impl WebhookEndpointConfig {
    /// Whether events of `event_type` go to this endpoint (before any plugin decides).
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|p| type_matches(p, event_type))
    }

    /// The parsed secrets (validated at load, so this does not fail then).
    pub fn secrets(&self) -> Result<Vec<Secret>, String> {
        self.secret
            .as_list()
            .into_iter()
            .map(Secret::parse)
            .collect()
    }
}

/// `"publish.*"` matches `publish.started`; anything else must be equal.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// `[outbox]`: how deliveries are retried, parked and bounded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Delay before the first retry, milliseconds; each further retry doubles it...
    pub retry_initial_ms: u64,
    /// ...up to this (also the most a `Retry-After` may ask for).
    pub retry_max_ms: u64,
    /// Fraction of each delay drawn at random (0–1), so retries of many deliveries spread out.
    pub retry_jitter: f64,
    /// An endpoint failing for this long without a success is parked: its deliveries are kept
    /// aside (listed and replayed through the admin API), not retried forever.
    pub park_after_secs: u64,
    /// Deliveries one endpoint may hold (queued + parked). Beyond it new deliveries to that
    /// endpoint are refused: counted, logged, shown by the admin API.
    pub max_deliveries_per_endpoint: u64,
    /// Deliveries in flight at once per endpoint (each to a different room; a room's events
    /// go one at a time, in order).
    pub max_in_flight: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            retry_initial_ms: 1_000,
            retry_max_ms: 300_000,
            retry_jitter: 0.25,
            park_after_secs: 86_400,
            max_deliveries_per_endpoint: 100_000,
            max_in_flight: 16,
        }
    }
}

/// `[store]`: the one durable file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Path of the store file (created with its directory when first needed).
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("data/switchboard.redb"),
        }
    }
}

/// A problem in these sections: the config key and what was expected.
#[derive(Debug)]
pub struct Invalid {
    pub key: &'static str,
    pub message: String,
}

fn invalid(key: &'static str, message: String) -> Invalid {
    Invalid { key, message }
}

/// Checks serde cannot express.
pub fn validate(endpoints: &[WebhookEndpointConfig], outbox: &OutboxConfig) -> Result<(), Invalid> {
    let mut names = std::collections::HashSet::new();
    for e in endpoints {
        let named = |what: String| format!("endpoint {:?}: {what}", e.name);
        if e.name.is_empty()
            || e.name.chars().count() > MAX_NAME_CHARS
            || !e
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "webhooks.name",
                format!(
                    "{:?}: expected 1-{MAX_NAME_CHARS} characters from A-Z a-z 0-9 - _",
                    e.name
                ),
            ));
        }
        if !names.insert(e.name.as_str()) {
            return Err(invalid(
                "webhooks.name",
                format!(
                    "{:?} is used by two endpoints; names must be unique",
                    e.name
                ),
            ));
        }
        match reqwest::Url::parse(&e.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return Err(invalid(
                    "webhooks.url",
                    named(format!("{:?} is not an http:// or https:// URL", e.url)),
                ));
            }
        }
        let secrets = e.secret.as_list();
        if secrets.is_empty() {
            return Err(invalid(
                "webhooks.secret",
                named("at least one secret is needed".into()),
            ));
        }
        for s in secrets {
            Secret::parse(s).map_err(|m| invalid("webhooks.secret", named(m)))?;
        }
        for pattern in &e.events {
            if !super::EVENT_TYPES.iter().any(|t| type_matches(pattern, t)) {
                return Err(invalid(
                    "webhooks.events",
                    named(format!(
                        "{pattern:?} matches no event type; known: {}",
                        super::EVENT_TYPES.join(", ")
                    )),
                ));
            }
        }
        if !(1..=60_000).contains(&e.timeout_ms) {
            return Err(invalid(
                "webhooks.timeout_ms",
                named(format!("{} is out of range (1..=60000)", e.timeout_ms)),
            ));
        }
    }
    let o = outbox;
    if o.retry_initial_ms == 0 || o.retry_max_ms < o.retry_initial_ms {
        return Err(invalid(
            "outbox.retry_max_ms",
            format!(
                "expected 0 < retry_initial_ms <= retry_max_ms, got {} and {}",
                o.retry_initial_ms, o.retry_max_ms
            ),
        ));
    }
    if !(0.0..=1.0).contains(&o.retry_jitter) {
        return Err(invalid(
            "outbox.retry_jitter",
            format!("{} is out of range (0..=1)", o.retry_jitter),
        ));
    }
    for (key, value) in [
        ("outbox.park_after_secs", o.park_after_secs),
        (
            "outbox.max_deliveries_per_endpoint",
            o.max_deliveries_per_endpoint,
        ),
        ("outbox.max_in_flight", o.max_in_flight as u64),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> WebhookEndpointConfig {
        WebhookEndpointConfig {
            name: "crm".into(),
            url: "https://hooks.example.com/in".into(),
            secret: Secrets::One("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            events: vec!["publish.*".into(), "room.finished".into()],
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }

    #[test]
    fn filters_match_types_and_families() {
        let e = endpoint();
        assert!(e.wants("publish.started") && e.wants("room.finished"));
        assert!(!e.wants("room.started") && !e.wants("play.started"));
        assert!(
            WebhookEndpointConfig {
                events: vec![],
                ..endpoint()
            }
            .wants("plugin.failed")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let check = |e: WebhookEndpointConfig| {
            validate(&[e], &OutboxConfig::default())
                .err()
                .map(|i| format!("{}: {}", i.key, i.message))
        };
        assert_eq!(check(endpoint()), None);
        let err = check(WebhookEndpointConfig {
            name: "a b".into(),
            ..endpoint()
        });
        assert!(err.unwrap().starts_with("webhooks.name"));
        let err = check(WebhookEndpointConfig {
            url: "ftp://x".into(),
            ..endpoint()
        });
        assert!(err.unwrap().starts_with("webhooks.url"));
        let err = check(WebhookEndpointConfig {
            secret: Secrets::Many(vec![]),
            ..endpoint()
        });
        assert!(err.unwrap().starts_with("webhooks.secret"));
        let err = check(WebhookEndpointConfig {
            events: vec!["room.exploded".into()],
            ..endpoint()
        })
        .unwrap();
        assert!(err.starts_with("webhooks.events") && err.contains("room.started"));
        let dup = validate(&[endpoint(), endpoint()], &OutboxConfig::default());
        assert!(dup.unwrap_err().message.contains("unique"));
        let bad = OutboxConfig {
            retry_max_ms: 10,
            ..OutboxConfig::default()
        };
        assert_eq!(validate(&[], &bad).unwrap_err().key, "outbox.retry_max_ms");
    }
}
