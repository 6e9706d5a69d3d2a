//! Read-only calls to an EVM contract through `eth_call` on a named HTTP upstream (a node's
//! JSON-RPC endpoint): ABI encoding of the few argument types role lookups need, and decoding
//! of one-word answers.
//!
//! A function is configured by its signature, e.g. `isCoHost(string,address)`; each
//! parameter is filled by its type: `string` takes the room, `address` the caller's address,
//! `uint256` the configured token id.

use crate::token::{decode_hex, encode_hex};
use serde::Deserialize;
use switchboard_plugin_sdk::{crypto, http};

/// A configured contract function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub signature: String,
    params: Vec<Param>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Room,
    Caller,
    TokenId,
}

/// What fills the parameters of one call.
pub struct Args<'a> {
    pub room: &'a str,
    pub caller: &'a [u8; 20],
    pub token_id: u128,
}

impl Function {
    /// Parse `name(type,...)`; types limited to `string`, `address`, `uint256`.
    pub fn parse(signature: &str) -> Result<Function, String> {
        let signature: String = signature.chars().filter(|c| !c.is_whitespace()).collect();
        let open = signature.find('(').filter(|&i| i > 0);
        let (Some(open), true) = (open, signature.ends_with(')')) else {
            return Err(format!(
                "`{signature}` is not a function signature like `ownerOf(string)`"
            ));
        };
        let inner = &signature[open + 1..signature.len() - 1];
        let params = if inner.is_empty() {
            Vec::new()
        } else {
            inner
                .split(',')
                .map(|t| match t {
                    "string" => Ok(Param::Room),
                    "address" => Ok(Param::Caller),
                    "uint256" => Ok(Param::TokenId),
                    other => Err(format!(
                        "`{signature}`: parameter type `{other}` is not supported (string = the room, address = the caller, uint256 = token_id)"
                    )),
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Function { signature, params })
    }

    /// Whether one parameter is the caller's address.
    pub fn takes_caller(&self) -> bool {
        self.params.contains(&Param::Caller)
    }

    /// The call data: selector, then the head words, then the strings' tails.
    pub fn encode(&self, args: &Args) -> Vec<u8> {
        let selector = crypto::keccak256(self.signature.as_bytes());
        let mut out = selector[..4].to_vec();
        let mut tail = Vec::new();
        let head_len = 32 * self.params.len();
        for p in &self.params {
            match p {
                Param::Room => {
                    out.extend_from_slice(&word_u128((head_len + tail.len()) as u128));
                    tail.extend_from_slice(&word_u128(args.room.len() as u128));
                    tail.extend_from_slice(args.room.as_bytes());
                    let pad = (32 - args.room.len() % 32) % 32;
                    tail.extend(std::iter::repeat_n(0, pad));
                }
                Param::Caller => {
                    let mut w = [0u8; 32];
                    w[12..].copy_from_slice(args.caller);
                    out.extend_from_slice(&w);
                }
                Param::TokenId => out.extend_from_slice(&word_u128(args.token_id)),
            }
        }
        out.extend_from_slice(&tail);
        out
    }
}

fn word_u128(v: u128) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[16..].copy_from_slice(&v.to_be_bytes());
    w
}

#[derive(Deserialize)]
struct RpcAnswer {
    result: Option<String>,
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    code: Option<i64>,
    message: String,
}

/// `eth_call` of `data` on `contract` at the latest block; the returned bytes, empty when the
/// call reverted (an answer: "no"). Transport failures and other JSON-RPC errors are errors.
pub fn call(upstream: &str, path: &str, contract: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_call",
        "params": [{"to": contract, "data": encode_hex(data)}, "latest"],
    });
    let resp = http::Request::post(upstream, path, body.to_string())
        .header("content-type", "application/json")
        .send()
        .map_err(|e| format!("{e:?}"))?;
    if !(200..300).contains(&resp.status) {
        return Err(format!("JSON-RPC answered {}", resp.status));
    }
    let answer: RpcAnswer = resp
        .json()
        .map_err(|e| format!("bad JSON-RPC answer: {e}"))?;
    if let Some(err) = answer.error {
        // Code 3 (or a message saying so) is the contract reverting: a real answer.
        if err.code == Some(3) || err.message.to_ascii_lowercase().contains("revert") {
            return Ok(Vec::new());
        }
        return Err(format!("JSON-RPC error: {}", err.message));
    }
    let result = answer.result.ok_or("JSON-RPC answer without result")?;
    decode_hex(&result).ok_or_else(|| "result is not hex".to_owned())
}

/// The first word as an address (`address` return).
pub fn as_address(ret: &[u8]) -> Option<[u8; 20]> {
    let word = ret.get(..32)?;
    let mut a = [0; 20];
    a.copy_from_slice(&word[12..]);
    Some(a)
}

/// The first word as a number, saturating at `u128::MAX` (`uint256` / `bool` return).
pub fn as_u128(ret: &[u8]) -> Option<u128> {
    let word = ret.get(..32)?;
    if word[..16].iter().any(|&b| b != 0) {
        return Some(u128::MAX);
    }
    Some(u128::from_be_bytes(word[16..].try_into().ok()?))
}
