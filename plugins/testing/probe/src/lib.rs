//! A plugin that uses every host import, for the host's capability tests.
//!
//! Modes (`config.mode`):
//! - `one-time`: each credential works once (kv compare-and-set with a TTL): replay protection.
//! - `http`: asks `config.upstream` at `/check?token=<credential>`; a 200 JSON body
//!   `{"subject": ...}` admits, anything else denies with the reason. With
//!   `config.recheck_every_secs`, live sessions are re-checked that often.
//! - `log-flood`: writes `config.lines` log lines, then admits.
//! - `clock`: admits with an identity expiring `config.ttl_secs` from now.
//! - `echo`: admits as `echo` with attributes telling what the host sent (`replacing`,
//!   `publishers`, `viewers`) followed by `config.attributes` (`[["name", "value"], ...]`,
//!   deliberately unchecked so tests can send what the host must refuse).

use serde::Deserialize;
use std::time::Duration;
use switchboard_plugin_sdk::{AuthRequest, Config, Deny, Identity, Plugin, clock, http, kv, log};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode", deny_unknown_fields)]
pub enum Probe {
    OneTime {
        #[serde(default = "minute")]
        ttl_secs: u64,
    },
    Http {
        upstream: String,
        recheck_every_secs: Option<u32>,
    },
    LogFlood {
        lines: u32,
    },
    Clock {
        ttl_secs: u64,
    },
    Echo {
        #[serde(default)]
        attributes: Vec<(String, String)>,
    },
}

fn minute() -> u64 {
    60
}

impl Plugin for Probe {
    fn new(config: Config) -> Result<Self, String> {
        config.parse()
    }

    fn authenticate(&self, req: &AuthRequest) -> Result<Identity, Deny> {
        let credential = req.credential.clone().unwrap_or_default();
        match self {
            Probe::OneTime { ttl_secs } => {
                let key = format!("used:{credential}");
                match kv::compare_and_set(&key, None, b"1", Some(Duration::from_secs(*ttl_secs))) {
                    Ok(true) => Ok(Identity::new(credential)),
                    Ok(false) => Err(Deny::unauthorized("token already used")),
                    Err(e) => Err(Deny::unauthorized(format!("kv: {e}"))),
                }
            }
            Probe::Http {
                upstream,
                recheck_every_secs,
            } => {
                let resp = http::Request::get(upstream, &format!("/check?token={credential}"))
                    .header("x-probe", "1")
                    .send()
                    .map_err(|e| Deny::unauthorized(format!("http: {e}")))?;
                if resp.status != 200 {
                    return Err(Deny::forbidden(format!("upstream said {}", resp.status)));
                }
                #[derive(Deserialize)]
                struct Verdict {
                    subject: String,
                }
                let verdict: Verdict = resp
                    .json()
                    .map_err(|e| Deny::unauthorized(format!("upstream body: {e}")))?;
                let identity = Identity::new(verdict.subject);
                Ok(match recheck_every_secs {
                    Some(secs) => identity.recheck_every_secs(*secs),
                    None => identity,
                })
            }
            Probe::LogFlood { lines } => {
                for i in 0..*lines {
                    log::info(&format!("probe line {i}"));
                }
                Ok(Identity::new("logger"))
            }
            Probe::Clock { ttl_secs } => {
                Ok(Identity::new("clocked").expires_at_ms(clock::now_ms() + ttl_secs * 1000))
            }
            Probe::Echo { attributes } => {
                let mut id = Identity::new("echo")
                    .with_attribute("replacing", req.replacing.as_deref().unwrap_or("-"))
                    .with_attribute("publishers", req.counts.publishers.to_string())
                    .with_attribute("viewers", req.counts.viewers.to_string());
                // Pushed as given (not `with_attribute`), duplicates included.
                id.attributes.extend(attributes.iter().cloned());
                Ok(id)
            }
        }
    }
}

switchboard_plugin_sdk::register!(Probe);
