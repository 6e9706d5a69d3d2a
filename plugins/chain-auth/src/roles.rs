//! Who a verified wallet is in a room: owner (publishes), co-host (publishes too) or viewer.
//!
//! Sources, first match wins: the room rules in config (owners and co-hosts per room or
//! pattern, and who may view), then the chain — an EVM contract through `eth_call`, or a JSON
//! role oracle — when configured. Chain answers are cached in the plugin's key-value store
//! for `cache_secs` (keys name the contract or oracle, the room and the wallet); an
//! unreachable chain or oracle denies (fail closed) with that reason. A reverted call (e.g.
//! `ownerOf` of an unknown id) is an answer: no role.

use crate::address::Address;
use crate::evm::{self, Args, Function};
use serde::Deserialize;
use std::time::Duration;
use switchboard_plugin_sdk::{Action, glob, http, kv};

/// A wallet's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    CoHost,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::CoHost => "cohost",
            Role::Viewer => "viewer",
        }
    }
}

/// Who may view a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Viewers {
    /// Any wallet that signs.
    #[default]
    Open,
    /// Wallets in `viewer_list` (and owners and co-hosts).
    Listed,
    /// Wallets holding the configured ticket (`evm.ticket`) or that the oracle calls viewers.
    Ticket,
}

/// `[[plugins.config.rooms]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRule {
    /// Room name or pattern (`*`, `?`).
    pub room: String,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub cohosts: Vec<String>,
    #[serde(default)]
    pub viewers: Viewers,
    #[serde(default)]
    pub viewer_list: Vec<String>,
}

/// `[plugins.config.evm]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmConfig {
    /// Named HTTP upstream: the node's JSON-RPC endpoint.
    pub upstream: String,
    #[serde(default = "root")]
    pub path: String,
    /// The rooms contract.
    pub contract: String,
    /// Returns the room's owner, e.g. `ownerOf(string)`.
    pub owner_of: Option<String>,
    /// Returns whether the caller co-hosts the room, e.g. `isCoHost(string,address)`.
    pub is_cohost: Option<String>,
    pub ticket: Option<TicketConfig>,
}

/// `[plugins.config.evm.ticket]`: the token a `ticket` room's viewers must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketConfig {
    pub contract: String,
    /// `balanceOf(address)` for ERC-20 and ERC-721, `balanceOf(address,uint256)` for ERC-1155.
    #[serde(default = "balance_of")]
    pub balance_of: String,
    /// ERC-1155 token id: a number, or a decimal or `0x` string for ids beyond TOML's
    /// 64-bit integers.
    #[serde(default, deserialize_with = "amount")]
    pub token_id: u128,
    /// Smallest balance that admits, in the token's base units (a number or a string).
    #[serde(default = "one", deserialize_with = "amount")]
    pub min_balance: u128,
}

/// `[plugins.config.oracle]`: `GET {path}` on a named upstream answering
/// `{"role": "owner" | "cohost" | "viewer" | "none"}`; `{room}` and `{address}` are filled in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OracleConfig {
    pub upstream: String,
    #[serde(default = "oracle_path")]
    pub path: String,
}

/// A number, or a decimal or `0x`-hex string (up to 128 bits).
fn amount<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Amount {
        Number(u64),
        Text(String),
    }
    match Amount::deserialize(d)? {
        Amount::Number(n) => Ok(n as u128),
        Amount::Text(t) => {
            let parsed = match t.strip_prefix("0x") {
                Some(hex) => u128::from_str_radix(hex, 16),
                None => t.parse(),
            };
            parsed.map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{t}` is not a number below 2^128 (decimal or 0x hex)"
                ))
            })
        }
    }
}

fn root() -> String {
    "/".into()
}
fn balance_of() -> String {
    "balanceOf(address)".into()
}
fn one() -> u128 {
    1
}
fn oracle_path() -> String {
    "/roles/{room}/{address}".into()
}

/// A room rule with its addresses parsed (at load, so a typo fails the load).
struct Rule {
    config: RoomRule,
    owners: Vec<Address>,
    cohosts: Vec<Address>,
    viewers: Vec<Address>,
}

/// The role sources, checked at load.
pub struct Roles {
    rules: Vec<Rule>,
    evm: Option<Evm>,
    oracle: Option<OracleConfig>,
    cache: Duration,
}

struct Evm {
    config: EvmConfig,
    owner_of: Option<Function>,
    is_cohost: Option<Function>,
    ticket: Option<(TicketConfig, Function)>,
}

impl Evm {
    /// `eth_call` of `f` with `args` on `contract`, through the configured node.
    fn call(&self, contract: &str, f: &Function, args: &Args) -> Result<Vec<u8>, String> {
        evm::call(
            &self.config.upstream,
            &self.config.path,
            contract,
            &f.encode(args),
        )
    }
}

fn addresses(key: &str, list: &[String]) -> Result<Vec<Address>, String> {
    list.iter()
        .map(|a| Address::parse(a).map_err(|e| format!("{key}: `{a}`: {e}")))
        .collect()
}

impl Roles {
    pub fn new(
        rules: Vec<RoomRule>,
        evm: Option<EvmConfig>,
        oracle: Option<OracleConfig>,
        cache_secs: u64,
    ) -> Result<Roles, String> {
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                if r.room.is_empty() {
                    return Err(format!("rooms[{i}].room: empty"));
                }
                let owners = addresses(&format!("rooms[{i}].owners"), &r.owners)?;
                let cohosts = addresses(&format!("rooms[{i}].cohosts"), &r.cohosts)?;
                let viewers = addresses(&format!("rooms[{i}].viewer_list"), &r.viewer_list)?;
                if r.viewers == Viewers::Ticket
                    && evm.as_ref().and_then(|e| e.ticket.as_ref()).is_none()
                    && oracle.is_none()
                {
                    return Err(format!(
                        "rooms[{i}].viewers: `ticket` needs evm.ticket or an oracle"
                    ));
                }
                Ok(Rule {
                    config: r,
                    owners,
                    cohosts,
                    viewers,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let evm = evm
            .map(|config| {
                Address::evm(&config.contract).map_err(|e| format!("evm.contract: {e}"))?;
                let parse = |key: &str, sig: &Option<String>| {
                    sig.as_deref()
                        .map(|s| Function::parse(s).map_err(|e| format!("evm.{key}: {e}")))
                        .transpose()
                };
                let owner_of = parse("owner_of", &config.owner_of)?;
                let is_cohost = parse("is_cohost", &config.is_cohost)?;
                // Without the caller among its parameters, the answer would be the same for
                // every wallet: a typo that would make everyone a co-host.
                if is_cohost.as_ref().is_some_and(|f| !f.takes_caller()) {
                    return Err("evm.is_cohost: must take an `address` (the caller)".to_owned());
                }
                let ticket = config
                    .ticket
                    .clone()
                    .map(|t| {
                        Address::evm(&t.contract)
                            .map_err(|e| format!("evm.ticket.contract: {e}"))?;
                        let f = Function::parse(&t.balance_of)
                            .map_err(|e| format!("evm.ticket.balance_of: {e}"))?;
                        if !f.takes_caller() {
                            return Err(
                                "evm.ticket.balance_of: must take an `address` (the caller)"
                                    .to_owned(),
                            );
                        }
                        Ok::<_, String>((t, f))
                    })
                    .transpose()?;
                if owner_of.is_none() && is_cohost.is_none() && ticket.is_none() {
                    return Err("evm: set owner_of, is_cohost or ticket".to_owned());
                }
                Ok(Evm {
                    config,
                    owner_of,
                    is_cohost,
                    ticket,
                })
            })
            .transpose()?;
        if let Some(o) = &oracle
            && !o.path.contains("{address}")
        {
            return Err(
                "oracle.path: must contain {address}, or every wallet gets the same answer"
                    .to_owned(),
            );
        }
        Ok(Roles {
            rules,
            evm,
            oracle,
            cache: Duration::from_secs(cache_secs),
        })
    }

    /// The role that lets `who` do `action` in `room`, or why not.
    pub fn decide(
        &self,
        room: &str,
        action: Action,
        who: &Address,
        subject: &str,
    ) -> Result<Role, Refusal> {
        let rule = self
            .rules
            .iter()
            .find(|r| glob::matches(&r.config.room, room));
        if let Some(rule) = rule {
            if rule.owners.iter().any(|a| a.same_wallet(who)) {
                return Ok(Role::Owner);
            }
            if rule.cohosts.iter().any(|a| a.same_wallet(who)) {
                return Ok(Role::CoHost);
            }
        }
        match action {
            Action::Publish => match self.chain_host_role(room, who, subject)? {
                Some(role) => Ok(role),
                None => Err(Refusal::Forbidden(format!(
                    "not the owner or a co-host of `{room}`"
                ))),
            },
            Action::Play => {
                let viewers = rule.map(|r| r.config.viewers).unwrap_or_default();
                match viewers {
                    Viewers::Open => Ok(Role::Viewer),
                    Viewers::Listed => {
                        let listed =
                            rule.is_some_and(|r| r.viewers.iter().any(|a| a.same_wallet(who)));
                        if listed {
                            Ok(Role::Viewer)
                        } else if let Some(role) = self.chain_host_role(room, who, subject)? {
                            Ok(role)
                        } else {
                            Err(Refusal::Forbidden(format!("not allowed to view `{room}`")))
                        }
                    }
                    Viewers::Ticket => {
                        if let Some(role) = self.chain_host_role(room, who, subject)? {
                            return Ok(role);
                        }
                        if self.holds_ticket(room, who, subject)? {
                            Ok(Role::Viewer)
                        } else {
                            Err(Refusal::Forbidden(format!("no ticket to view `{room}`")))
                        }
                    }
                }
            }
        }
    }

    /// Owner or co-host according to the contract or the oracle.
    fn chain_host_role(
        &self,
        room: &str,
        who: &Address,
        subject: &str,
    ) -> Result<Option<Role>, Refusal> {
        if let (Some(evm), Some(caller)) = (&self.evm, who.evm_bytes()) {
            let args = Args {
                room,
                caller,
                token_id: 0,
            };
            if let Some(f) = &evm.owner_of {
                let key = format!("o:{}:{room}", evm.config.contract);
                let owner = self.cached(&key, CHAIN, || {
                    let ret = evm.call(&evm.config.contract, f, &args)?;
                    // A revert or an empty answer: no owner.
                    Ok(evm::as_address(&ret)
                        .map(|a| a.to_vec())
                        .unwrap_or_default())
                })?;
                if owner == caller {
                    return Ok(Some(Role::Owner));
                }
            }
            if let Some(f) = &evm.is_cohost {
                let yes = self.cached(
                    &format!("c:{}:{room}:{subject}", evm.config.contract),
                    CHAIN,
                    || {
                        let ret = evm.call(&evm.config.contract, f, &args)?;
                        Ok(vec![(evm::as_u128(&ret).unwrap_or(0) != 0) as u8])
                    },
                )?;
                if yes == [1] {
                    return Ok(Some(Role::CoHost));
                }
            }
        }
        if let Some(oracle) = &self.oracle {
            return match self.oracle_role(oracle, room, subject)?.as_str() {
                "owner" => Ok(Some(Role::Owner)),
                "cohost" => Ok(Some(Role::CoHost)),
                _ => Ok(None),
            };
        }
        Ok(None)
    }

    fn holds_ticket(&self, room: &str, who: &Address, subject: &str) -> Result<bool, Refusal> {
        if let (Some((ticket, f)), Some(caller)) = (
            self.evm.as_ref().and_then(|e| e.ticket.as_ref()),
            who.evm_bytes(),
        ) {
            let evm = self.evm.as_ref().expect("ticket implies evm");
            let args = Args {
                room,
                caller,
                token_id: ticket.token_id,
            };
            let key = format!("t:{}:{}:{room}:{subject}", ticket.contract, ticket.token_id);
            let balance = self.cached(&key, CHAIN, || {
                let ret = evm.call(&ticket.contract, f, &args)?;
                Ok(evm::as_u128(&ret).unwrap_or(0).to_be_bytes().to_vec())
            })?;
            let balance = u128::from_be_bytes(balance.try_into().unwrap_or([0; 16]));
            if balance >= ticket.min_balance {
                return Ok(true);
            }
        }
        if let Some(oracle) = &self.oracle {
            return Ok(matches!(
                self.oracle_role(oracle, room, subject)?.as_str(),
                "owner" | "cohost" | "viewer"
            ));
        }
        Ok(false)
    }

    fn oracle_role(
        &self,
        oracle: &OracleConfig,
        room: &str,
        address: &str,
    ) -> Result<String, Refusal> {
        let key = format!("r:{}:{room}:{address}", oracle.upstream);
        let role = self.cached(&key, ORACLE, || {
            let path = oracle
                .path
                .replace("{room}", &percent_encode(room))
                .replace("{address}", &percent_encode(address));
            let resp = http::Request::get(&oracle.upstream, &path)
                .header("accept", "application/json")
                .send()
                .map_err(|e| format!("{e:?}"))?;
            if resp.status != 200 {
                return Err(format!("answered {}", resp.status));
            }
            #[derive(Deserialize)]
            struct Answer {
                role: String,
            }
            let answer: Answer = resp.json().map_err(|e| format!("bad answer: {e}"))?;
            Ok(answer.role.into_bytes())
        })?;
        Ok(String::from_utf8_lossy(&role).into_owned())
    }

    /// `fetch` through the key-value cache (`cache_secs`; 0 = no cache).
    /// A failing `fetch` is `source` unavailable (the short reason clients get).
    fn cached(
        &self,
        key: &str,
        source: &'static str,
        fetch: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, Refusal> {
        let key = format!("cache:{key}");
        if !self.cache.is_zero()
            && let Ok(Some(hit)) = kv::get(&key)
        {
            return Ok(hit);
        }
        let value = fetch().map_err(|detail| Refusal::Unavailable {
            short: source,
            detail,
        })?;
        if !self.cache.is_zero() {
            // A full or ungranted store only costs the cache.
            let _ = kv::set_with_ttl(&key, &value, self.cache);
        }
        Ok(value)
    }
}

/// Why a role lookup refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The wallet does not have the role (403).
    Forbidden(String),
    /// The chain or oracle could not answer: fail closed. `short` goes to the client,
    /// `detail` (transport error, status) to the log.
    Unavailable { short: &'static str, detail: String },
}

/// The short reasons for an unreachable role source.
const CHAIN: &str = "chain unreachable";
const ORACLE: &str = "role oracle unreachable";

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
