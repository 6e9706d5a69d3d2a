//! Configuration: built-in defaults < `config.toml` < `SWITCHBOARD_*` environment.
//!
//! Loaded once at start-up with figment. Every key is documented in the shipped
//! `config.toml`; unknown keys are rejected so a typo never silently does nothing.

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// Shortest admin token accepted: the admin API can reload plugins and end sessions.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// A configuration problem, naming the key at fault where figment knows it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("invalid configuration: `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("configuration file {0} not found")]
    Missing(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Load(Box::new(e))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub webrtc: WebrtcConfig,
    pub rooms: RoomsConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    /// `GET /metrics` (Prometheus text format).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The public read-only room list for lobby pages (`GET /api/rooms`).
    #[serde(default)]
    pub public_api: PublicApiConfig,
    /// WebAssembly plugins deciding admission, in evaluation order (see docs/plugins.md).
    /// None: everyone is admitted (loopback only, unless `auth.allow_unauthenticated_public`).
    #[serde(default)]
    pub plugins: Vec<crate::plugins::PluginConfig>,
    /// HTTP services plugins may call by name (`[upstreams.<name>]`, granted per plugin).
    #[serde(default)]
    pub upstreams: std::collections::BTreeMap<String, crate::plugins::UpstreamConfig>,
    /// Webhook endpoints (`[[webhooks]]`): events delivered per Standard Webhooks.
    #[serde(default)]
    pub webhooks: Vec<crate::events::config::WebhookEndpointConfig>,
    /// How webhook deliveries are retried, parked and bounded.
    #[serde(default)]
    pub outbox: crate::events::config::OutboxConfig,
    /// The one durable file (webhook outbox, recording upload queue).
    #[serde(default)]
    pub store: crate::events::config::StoreConfig,
    /// Where recordings are written (what is recorded: the `recorder` plugins).
    #[serde(default)]
    pub recording: crate::recording::service::RecordingConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP server (WHIP, WHEP, pages, health) listens on.
    pub bind: SocketAddr,
    /// Base URL clients reach us at (e.g. behind a reverse proxy). Empty: relative `Location`s.
    pub public_url: String,
    /// Largest accepted request body (SDP offers, trickle fragments), in bytes.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS; `["*"]` allows any, empty (the default) sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// Host names (besides IP literals, `localhost` and `public_url`'s host) requests may be
    /// addressed to; `*.example.com` wildcards, `"*"` for any (see `signalling::host_check`).
    pub allowed_hosts: Vec<String>,
    /// Seconds a signalling request may take before it is answered 503.
    pub request_timeout_secs: u64,
    /// Reverse proxies (addresses or CIDR ranges) whose `Forwarded` / `X-Forwarded-For`
    /// headers name the client; from anyone else those headers are ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve HTTPS directly with this certificate (reloaded on SIGHUP); absent: plain HTTP
    /// (behind a TLS-terminating proxy, or on loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::signalling::tls::TlsConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebrtcConfig {
    /// Local IPs to bind media sockets on. `0.0.0.0` means every non-loopback interface.
    pub bind_ips: Vec<IpAddr>,
    /// Inclusive UDP port range `[min, max]` for media; `[0, 0]` lets the OS choose.
    pub udp_port_range: [u16; 2],
    /// One UDP port for every session (`ice::mux`); 0: a port per session.
    pub udp_port: u16,
    /// ICE-TCP (passive, RFC 6544) for every session on this TCP port (`ice::tcp`), for
    /// clients on networks that block UDP; 0: off.
    pub tcp_port: u16,
    /// Public addresses advertised instead of local ones (1:1 NAT, e.g. a cloud VM's elastic
    /// IP): IP literals, or host names, resolved at start-up (`ice::public`).
    pub public_ips: Vec<String>,
    /// Ask this STUN server (`stun:host:port`) for the public IPv4 address at start-up, when
    /// `public_ips` names none. Empty: off.
    pub public_ip_from_stun: String,
    /// STUN/TURN servers offered to clients in `Link` headers and, unless `client_only`,
    /// used by the server to gather its own candidates.
    pub ice_servers: Vec<IceServerConfig>,
    /// A TURN server sharing a secret with us: per-session credentials (see `ice::turn_rest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<crate::ice::config::TurnConfig>,
    /// Seconds without ICE traffic before a session counts as disconnected.
    pub ice_disconnected_timeout_secs: u64,
    /// Seconds of disconnection before a session fails and is reaped.
    pub ice_failed_timeout_secs: u64,
    /// Seconds a new session may take to connect before it is reaped.
    pub connect_timeout_secs: u64,
    /// Send what a viewer connection produces in one wake-up as UDP GSO batches
    /// (see `sfu::egress`); `false` sends every datagram on its own.
    pub batch_sends: bool,
    /// Drive viewer connections from the forwarding path itself (see `sfu::direct`) instead
    /// of through a webrtc-rs driver task each. Applies while every `ice_servers` entry is
    /// `client_only`: the direct driver gathers host candidates only.
    pub direct_viewers: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerConfig {
    pub urls: Vec<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub credential: String,
    /// Hand this server to clients only; the server does not gather candidates through it
    /// (and viewers stay on the direct driver).
    #[serde(default)]
    pub client_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    /// What a second publisher to a busy room does: `replace` the current one or be `reject`ed (409).
    pub on_publisher_conflict: PublisherConflict,
    /// Minimum milliseconds between keyframe requests sent to a publisher.
    pub keyframe_request_interval_ms: u64,
    /// With `replace`: who may take over a live publisher's room.
    pub takeover: Takeover,
}

/// Who may replace a room's live publisher (with `on_publisher_conflict = "replace"`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Takeover {
    /// Only the same identity (subject): an encoder reconnecting. Others get 409.
    SameSubject,
    /// Any identity allowed to publish in the room.
    Anyone,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PublisherConflict {
    Replace,
    Reject,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Allow running with no auth plugin on a non-loopback address. Off by default.
    pub allow_unauthenticated_public: bool,
    /// Seconds a live session is kept while its periodic re-check cannot run (plugin failing,
    /// identity provider down); a re-check that *denies* ends the session at once.
    pub recheck_grace_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for `/admin/*` endpoints. Empty disables them (404).
    pub token: String,
}

/// What one server, and one client address, may use. An exhausted limit answers 503 (the
/// server's) or 429 with `Retry-After` (a client's), never 500 or a hang.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sessions (publishers and viewers, live or being set up) on this server.
    pub max_sessions: usize,
    /// Sessions from one client IP address.
    pub max_sessions_per_ip: usize,
    /// Session set-ups (offer to answer) in progress at once.
    pub max_pending_setups: usize,
    /// Signalling requests (WHIP/WHEP POST, PATCH, DELETE) per second from one IP address...
    pub requests_per_sec_per_ip: u32,
    /// ...and how many may come at once.
    pub request_burst_per_ip: u32,
    /// Open HTTP connections; capped further to a quarter of the process's file descriptors.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers.
    pub header_timeout_secs: u64,
    /// Seconds a client may take to send a request's body.
    pub body_timeout_secs: u64,
    /// Seconds an HTTP connection may stay open without a request in progress.
    pub idle_timeout_secs: u64,
    /// Kilobits per second one publisher may send (all tracks); 0 = no cap.
    pub max_publisher_kbps: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `switchboard=debug,webrtc=warn`. `RUST_LOG` wins if set.
    pub filter: String,
    /// `text` (human-readable lines) or `json` (one JSON object per line, for log pipelines).
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `GET /metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics`.
    pub enabled: bool,
    /// When set, scrapes must send `Authorization: Bearer <token>` (401 otherwise).
    pub token: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            token: String::new(),
        }
    }
}

/// `GET /api/rooms`: live rooms and their viewer counts, without a token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicApiConfig {
    /// Serve `/api/rooms` (off by default: room names may be private).
    pub enabled: bool,
    /// Rooms never listed: names or patterns with `*` (e.g. `"private-*"`).
    pub hidden_rooms: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: HttpConfig {
                bind: "127.0.0.1:8080".parse().expect("valid literal"),
                public_url: String::new(),
                max_body_bytes: 64 * 1024,
                cors_origins: Vec::new(),
                allowed_hosts: Vec::new(),
                request_timeout_secs: 15,
                trusted_proxies: Vec::new(),
                tls: None,
            },
            webrtc: WebrtcConfig {
                bind_ips: vec![IpAddr::from([0, 0, 0, 0]), IpAddr::from([127, 0, 0, 1])],
                udp_port_range: [0, 0],
                udp_port: 0,
                tcp_port: 0,
                public_ips: vec![],
                public_ip_from_stun: String::new(),
                ice_servers: vec![],
                turn: None,
                ice_disconnected_timeout_secs: 5,
                ice_failed_timeout_secs: 15,
                connect_timeout_secs: 30,
                batch_sends: true,
                direct_viewers: true,
            },
            rooms: RoomsConfig {
                on_publisher_conflict: PublisherConflict::Replace,
                keyframe_request_interval_ms: 500,
                takeover: Takeover::SameSubject,
            },
            auth: AuthConfig {
                allow_unauthenticated_public: false,
                recheck_grace_secs: 60,
            },
            admin: AdminConfig {
                token: String::new(),
            },
            limits: LimitsConfig {
                max_sessions: 2000,
                max_sessions_per_ip: 50,
                max_pending_setups: 64,
                requests_per_sec_per_ip: 20,
                request_burst_per_ip: 40,
                max_connections: 4096,
                header_timeout_secs: 5,
                body_timeout_secs: 10,
                idle_timeout_secs: 60,
                max_publisher_kbps: 10_000,
            },
            log: LogConfig {
                filter: "info".into(),
                format: LogFormat::Text,
            },
            metrics: MetricsConfig::default(),
            public_api: PublicApiConfig::default(),
            plugins: Vec::new(),
            upstreams: Default::default(),
            webhooks: Vec::new(),
            outbox: Default::default(),
            store: Default::default(),
            recording: Default::default(),
        }
    }
}

impl Config {
    /// Defaults, then the TOML file at `path` (which must exist), then the environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Missing(path.display().to_string()));
        }
        Self::from_figment(Self::base().merge(Toml::file_exact(path)).merge(env()))
    }

    /// Defaults, then `toml` (no environment): for tests and embedding.
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Self::base().merge(Toml::string(toml)))
    }

    fn base() -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let [min, max] = self.webrtc.udp_port_range;
        if (min == 0) != (max == 0) || min > max {
            return Err(ConfigError::Invalid {
                key: "webrtc.udp_port_range",
                message: format!(
                    "expected [min, max] with 0 < min <= max, or [0, 0]; got [{min}, {max}]"
                ),
            });
        }
        if self.webrtc.udp_port != 0 && max != 0 {
            return Err(ConfigError::Invalid {
                key: "webrtc.udp_port",
                message: "set either udp_port (one port for every session) or udp_port_range \
                          (a port per session), not both"
                    .into(),
            });
        }
        if self.webrtc.bind_ips.is_empty() {
            return Err(ConfigError::Invalid {
                key: "webrtc.bind_ips",
                message: "at least one IP is required (use \"0.0.0.0\" for all interfaces)".into(),
            });
        }
        let url = &self.http.public_url;
        if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(ConfigError::Invalid {
                key: "http.public_url",
                message: format!(
                    "expected an http:// or https:// URL, got {:?}",
                    self.http.public_url
                ),
            });
        }
        let l = &self.limits;
        for (key, value) in [
            ("limits.max_sessions", l.max_sessions as u64),
            ("limits.max_sessions_per_ip", l.max_sessions_per_ip as u64),
            ("limits.max_pending_setups", l.max_pending_setups as u64),
            (
                "limits.requests_per_sec_per_ip",
                u64::from(l.requests_per_sec_per_ip),
            ),
            (
                "limits.request_burst_per_ip",
                u64::from(l.request_burst_per_ip),
            ),
            ("limits.max_connections", l.max_connections as u64),
            ("limits.header_timeout_secs", l.header_timeout_secs),
            ("limits.body_timeout_secs", l.body_timeout_secs),
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        let token = &self.admin.token;
        if !token.is_empty() && token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            return Err(ConfigError::Invalid {
                key: "admin.token",
                message: format!(
                    "{} characters is guessable; use at least {MIN_ADMIN_TOKEN_CHARS} random \
                     characters (e.g. `openssl rand -hex 24`), or leave it empty to disable \
                     the admin API",
                    token.chars().count()
                ),
            });
        }
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "http.max_body_bytes",
                message: "must be at least 1024".into(),
            });
        }
        crate::events::config::validate(&self.webhooks, &self.outbox).map_err(|i| {
            ConfigError::Invalid {
                key: i.key,
                message: i.message,
            }
        })?;
        crate::recording::upload::config::validate(&self.recording.storage)
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        if let Some(turn) = &self.webrtc.turn {
            crate::ice::config::validate(turn)
                .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        }
        if let Some(tls) = &self.http.tls {
            tls.validate()
                .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        }
        for address in &self.webrtc.public_ips {
            if address.parse::<IpAddr>().is_err() && !is_host_name(address) {
                return Err(ConfigError::Invalid {
                    key: "webrtc.public_ips",
                    message: format!("{address:?} is neither an IP address nor a host name"),
                });
            }
        }
        let stun = &self.webrtc.public_ip_from_stun;
        if !stun.is_empty() && !stun.starts_with("stun:") {
            return Err(ConfigError::Invalid {
                key: "webrtc.public_ip_from_stun",
                message: format!("expected a stun:host:port URL, got {stun:?}"),
            });
        }
        for server in &self.webrtc.ice_servers {
            for url in &server.urls {
                if !["stun:", "stuns:", "turn:", "turns:"]
                    .iter()
                    .any(|p| url.starts_with(p))
                {
                    return Err(ConfigError::Invalid {
                        key: "webrtc.ice_servers",
                        message: format!("{url:?} is not a stun:, stuns:, turn: or turns: URL"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A DNS host name (RFC 1123 labels), as advertised in ICE candidates.
fn is_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && name.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Environment variables with the `SWITCHBOARD_` prefix that are not configuration keys: read
/// by other parts of the process (the plugin compile cache), never by figment.
const NOT_CONFIG: &[&str] = &["PLUGIN_CACHE_DIR"];

/// `SWITCHBOARD_HTTP__BIND=...` overrides `[http] bind`.
fn env() -> Env {
    Env::prefixed("SWITCHBOARD_").ignore(NOT_CONFIG).split("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = Config::from_toml_str("").unwrap();
        assert!(c.http.bind.ip().is_loopback());
        assert_eq!(c.rooms.on_publisher_conflict, PublisherConflict::Replace);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_str("[http]\nbnd = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bnd"), "{err}");
    }

    #[test]
    fn wrong_type_names_key() {
        let err = Config::from_toml_str("[http]\nbind = 12")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bind"), "{err}");
    }

    #[test]
    fn one_port_or_a_range_not_both() {
        let err = Config::from_toml_str("[webrtc]\nudp_port = 8189\nudp_port_range = [5000, 5010]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("webrtc.udp_port"), "{err}");
        Config::from_toml_str("[webrtc]\nudp_port = 8189").unwrap();
    }

    #[test]
    fn bad_port_range_names_key() {
        let err = Config::from_toml_str("[webrtc]\nudp_port_range = [5000, 10]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("webrtc.udp_port_range"), "{err}");
    }

    /// `SWITCHBOARD_PLUGIN_CACHE_DIR` (documented for the plugin compile cache) is not a
    /// config key: it used to stop start-up as an unknown key.
    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type, in a test
    fn plugin_cache_dir_variable_is_not_a_config_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "")?;
            jail.set_env("SWITCHBOARD_PLUGIN_CACHE_DIR", "/tmp/sb-cache");
            Config::load(Path::new("c.toml")).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type, in a test
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[http]\nbind = \"127.0.0.1:7000\"")?;
            jail.set_env("SWITCHBOARD_HTTP__BIND", "127.0.0.1:9000");
            let c = Config::load(Path::new("c.toml")).map_err(|e| e.to_string())?;
            assert_eq!(c.http.bind.port(), 9000);
            Ok(())
        });
    }
}
