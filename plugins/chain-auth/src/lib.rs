//! Wallet-signature authentication: the caller signs `livestream:{room}:{timestamp}` with a
//! Polkadot (sr25519, ed25519) or Ethereum (EIP-191 `personal_sign`) wallet and sends the
//! signature as its bearer token; the plugin verifies it natively through the host, checks
//! the timestamp window, admits each signature once, and decides the wallet's role in the
//! room from config, an EVM contract or a role oracle. The subject is the address; the
//! attributes carry `role` and `scheme`.
//!
//! ```toml
//! [[plugins]]
//! name = "wallets"
//! path = "target/plugins/chain-auth.wasm"
//! hooks = ["auth"]
//! [plugins.grants]
//! kv = true                      # replay protection and the role cache
//! clock = true                   # the timestamp window
//! http = ["chain"]               # only with [plugins.config.evm] or .oracle
//! [plugins.config]
//! schemes = ["sr25519", "ed25519", "eip191"]   # default: all three
//! message = "livestream:{room}:{timestamp}"    # {room}, {timestamp}, {action}
//! max_age_secs = 300             # how old a signature may be
//! max_future_secs = 30           # clock skew allowed the other way
//! ss58_prefixes = []             # accepted SS58 networks; empty = any
//! recheck_every_secs = 60        # re-verify roles of live sessions; 0 = never
//! cache_secs = 30                # chain and oracle answers
//! [[plugins.config.rooms]]
//! room = "studio-*"
//! owners = ["5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"]
//! cohosts = ["0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1"]
//! viewers = "open"               # open | listed (viewer_list) | ticket (evm.ticket / oracle)
//! [plugins.config.evm]
//! upstream = "chain"
//! contract = "0x..."
//! owner_of = "ownerOf(string)"
//! is_cohost = "isCoHost(string,address)"
//! ```

mod address;
mod evm;
mod roles;
mod token;
mod verify;

#[cfg(test)]
mod tests;

use roles::{EvmConfig, OracleConfig, Refusal, Roles, RoomRule};
use serde::Deserialize;
use std::time::Duration;
use switchboard_plugin_sdk::{
    AuthRequest, Config, Deny, Identity, Plugin, clock, context, kv, log,
};
use token::{Credential, Scheme, TokenError};

/// Longest `max_age_secs`: a signature is a login, not a long-lived key.
const MAX_WINDOW_SECS: u64 = 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "all_schemes")]
    schemes: Vec<String>,
    #[serde(default = "default_message")]
    message: String,
    #[serde(default = "five_minutes")]
    max_age_secs: u64,
    #[serde(default = "thirty")]
    max_future_secs: u64,
    #[serde(default)]
    ss58_prefixes: Vec<u16>,
    #[serde(default)]
    recheck_every_secs: u32,
    #[serde(default = "thirty")]
    cache_secs: u64,
    #[serde(default)]
    rooms: Vec<RoomRule>,
    evm: Option<EvmConfig>,
    oracle: Option<OracleConfig>,
}

fn all_schemes() -> Vec<String> {
    vec!["sr25519".into(), "ed25519".into(), "eip191".into()]
}
fn default_message() -> String {
    "livestream:{room}:{timestamp}".into()
}
fn five_minutes() -> u64 {
    300
}
fn thirty() -> u64 {
    30
}

pub struct ChainAuth {
    schemes: Vec<Scheme>,
    message: String,
    max_age_ms: u64,
    max_future_ms: u64,
    ss58_prefixes: Vec<u16>,
    recheck_every_secs: u32,
    /// The SS58 network subjects are written in: the first of `ss58_prefixes`, else 42.
    subject_prefix: u16,
    roles: Roles,
}

impl ChainAuth {
    fn from_settings(s: Settings) -> Result<Self, String> {
        let schemes = s
            .schemes
            .iter()
            .map(|n| {
                Scheme::parse(n).ok_or_else(|| {
                    format!("schemes: unknown scheme `{n}` (sr25519, ed25519, eip191)")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if schemes.is_empty() {
            return Err("schemes: empty list would refuse everyone".into());
        }
        if !s.message.contains("{room}") || !s.message.contains("{timestamp}") {
            return Err(
                "message: must contain {room} and {timestamp}, or a signature would be valid for any room or forever"
                    .into(),
            );
        }
        if s.max_age_secs == 0 || s.max_age_secs > MAX_WINDOW_SECS {
            return Err(format!("max_age_secs: must be 1 to {MAX_WINDOW_SECS}"));
        }
        if s.max_future_secs > 600 {
            return Err("max_future_secs: must be at most 600".into());
        }
        if let Some(p) = s.ss58_prefixes.iter().find(|&&p| p > 16383) {
            return Err(format!(
                "ss58_prefixes: {p} is not an SS58 prefix (0 to 16383)"
            ));
        }
        let roles = Roles::new(s.rooms, s.evm, s.oracle, s.cache_secs)?;
        Ok(ChainAuth {
            schemes,
            message: s.message,
            max_age_ms: s.max_age_secs * 1000,
            max_future_ms: s.max_future_secs * 1000,
            subject_prefix: s.ss58_prefixes.first().copied().unwrap_or(42),
            ss58_prefixes: s.ss58_prefixes,
            recheck_every_secs: s.recheck_every_secs,
            roles,
        })
    }

    /// How long a used signature is remembered: as long as it could pass the window, plus a
    /// minute for the wall clock (the window) and the store's monotonic clock (the TTL)
    /// drifting apart.
    fn remember(&self) -> Duration {
        Duration::from_millis(self.max_age_ms + self.max_future_ms) + Duration::from_secs(60)
    }
}

/// Deny with `reason` to the client; the log line adds the wallet (as the token claims it).
fn deny_unauthorized(req: &AuthRequest, claimed: &str, reason: String) -> Deny {
    log::info(&format!(
        "denied {} in `{}` for `{claimed}`: {reason}",
        req.action.as_str(),
        req.room
    ));
    Deny::unauthorized(reason)
}

/// Deny a verified wallet: `reason` to the client, `detail` (if any) to the log as well.
fn deny_forbidden(req: &AuthRequest, who: &str, reason: String, detail: Option<&str>) -> Deny {
    let line = format!(
        "denied {who} {} in `{}`: {reason}{}",
        req.action.as_str(),
        req.room,
        detail.map(|d| format!(" ({d})")).unwrap_or_default()
    );
    if detail.is_some() {
        log::warn(&line);
    } else {
        log::info(&line);
    }
    Deny::forbidden(reason)
}

/// The kv store failed (full, or an entry too large): not the caller's fault, so no verdict —
/// fail the call (the host answers 503 and counts the plugin failure).
fn kv_failed(e: kv::KvError) -> ! {
    log::error(&format!("replay protection unavailable: kv {e:?}"));
    panic!("replay protection unavailable: kv {e:?}")
}

impl Plugin for ChainAuth {
    fn new(config: Config) -> Result<Self, String> {
        ChainAuth::from_settings(config.parse()?)
    }

    fn authenticate(&self, req: &AuthRequest) -> Result<Identity, Deny> {
        let cred = Credential::decode(req.credential.as_deref()).map_err(|e| {
            let reason = match e {
                TokenError::Missing => "missing wallet token".to_owned(),
                other => other.to_string(),
            };
            deny_unauthorized(req, "-", reason)
        })?;
        let claimed = cred.address.as_str();
        if !self.schemes.contains(&cred.scheme) {
            return Err(deny_unauthorized(
                req,
                claimed,
                format!("scheme `{}` is not accepted here", cred.scheme.as_str()),
            ));
        }
        // Each signature admits one session; the host's re-checks of that session (periodic,
        // or after a reload) re-verify the signature and the roles, not the window or reuse.
        let recheck = context::is_recheck();
        if !recheck {
            self.check_window(req, claimed, cred.ts_ms)?;
        }
        let message = token::message(&self.message, &req.room, cred.ts_ms, req.action.as_str());
        let address = verify::verify(&cred, &message, &self.ss58_prefixes)
            .map_err(|e| deny_unauthorized(req, claimed, e.to_string()))?;
        let subject = address.subject(self.subject_prefix);

        // Keyed by signer and signed message, not by the signature's bytes: an EIP-191
        // signature with `v` as 0/1 or 27/28 is one signature, and so is any other encoding.
        let used = format!(
            "used:{}:{}:{}",
            cred.scheme.as_str(),
            address.signer_hex(),
            token::encode_hex(&switchboard_plugin_sdk::crypto::keccak256(
                message.as_bytes()
            ))
        );
        if !recheck && kv::get(&used).unwrap_or_else(|e| kv_failed(e)).is_some() {
            return Err(deny_unauthorized(req, claimed, "replayed signature".into()));
        }

        let role = self
            .roles
            .decide(&req.room, req.action, &address, &subject)
            .map_err(|r| match r {
                // A re-check that cannot reach the chain is not a verdict: fail the call, so
                // the host keeps the session for `auth.recheck_grace_secs` and ends it only if
                // the chain stays unreachable. A new request is denied (fail closed).
                Refusal::Unavailable { short, detail } if recheck => {
                    log::warn(&format!(
                        "re-check of {subject} in `{}`: {short} ({detail})",
                        req.room
                    ));
                    panic!("re-check could not run: {short} ({detail})")
                }
                Refusal::Unavailable { short, detail } => {
                    deny_forbidden(req, &subject, short.to_owned(), Some(&detail))
                }
                Refusal::Forbidden(why) => deny_forbidden(req, &subject, why, None),
            })?;

        // Claimed last, so a signature refused for its role can be retried once it has one;
        // compare-and-set, so two requests racing with one signature admit one session.
        if !recheck {
            let fresh = kv::compare_and_set(&used, None, b"used", Some(self.remember()))
                .unwrap_or_else(|e| kv_failed(e));
            if !fresh {
                return Err(deny_unauthorized(req, claimed, "replayed signature".into()));
            }
        }

        let mut identity = Identity::new(subject)
            .with_attribute("role", role.as_str())
            .with_attribute("scheme", cred.scheme.as_str());
        if self.recheck_every_secs > 0 {
            identity = identity.recheck_every_secs(self.recheck_every_secs);
        }
        Ok(identity)
    }
}

impl ChainAuth {
    fn check_window(&self, req: &AuthRequest, claimed: &str, ts_ms: u64) -> Result<(), Deny> {
        let now = clock::now_ms();
        if ts_ms.saturating_add(self.max_age_ms) < now {
            return Err(deny_unauthorized(
                req,
                claimed,
                format!("stale timestamp ({} s old)", (now - ts_ms) / 1000),
            ));
        }
        if ts_ms > now.saturating_add(self.max_future_ms) {
            return Err(deny_unauthorized(
                req,
                claimed,
                "timestamp in the future".into(),
            ));
        }
        Ok(())
    }
}

switchboard_plugin_sdk::register!(ChainAuth);
