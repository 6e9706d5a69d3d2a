//! The credential: one bearer token any WHIP/WHEP client can send. It is the base64url
//! encoding (no padding) of a UTF-8 JSON object:
//!
//! ```json
//! {"scheme": "sr25519", "address": "5Grw...", "ts": 1764547200000, "sig": "0x..."}
//! ```
//!
//! `scheme` is `sr25519`, `ed25519` or `eip191`; `ts` is milliseconds since the epoch (as
//! `Date.now()`); `sig` is `0x` + hex. Room and action come from the request, never from the
//! token, so a token signed for one room is useless in another.

use base64::Engine;
use serde::Deserialize;
use std::fmt;

/// Longest token accepted: a signature, an address and a timestamp fit in far less.
const MAX_TOKEN_BYTES: usize = 2048;

/// How the wallet signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Sr25519,
    Ed25519,
    Eip191,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sr25519 => "sr25519",
            Scheme::Ed25519 => "ed25519",
            Scheme::Eip191 => "eip191",
        }
    }

    pub fn parse(name: &str) -> Option<Scheme> {
        match name {
            "sr25519" => Some(Scheme::Sr25519),
            "ed25519" => Some(Scheme::Ed25519),
            "eip191" => Some(Scheme::Eip191),
            _ => None,
        }
    }
}

/// A decoded token, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub scheme: Scheme,
    pub address: String,
    pub ts_ms: u64,
    pub sig: Vec<u8>,
}

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Malformed(&'static str),
    UnknownScheme(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Missing => f.write_str("missing wallet token"),
            TokenError::Malformed(why) => write!(f, "malformed token: {why}"),
            TokenError::UnknownScheme(s) => write!(f, "unknown scheme `{s}`"),
        }
    }
}

#[derive(Deserialize)]
struct Raw {
    scheme: String,
    address: String,
    ts: u64,
    sig: String,
}

impl Credential {
    /// Decode a bearer token (the `Bearer ` prefix already removed by the host).
    pub fn decode(token: Option<&str>) -> Result<Credential, TokenError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let token = token.ok_or(TokenError::Missing)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("too long"));
        }
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| TokenError::Malformed("not base64url"))?;
        let raw: Raw = serde_json::from_slice(&json)
            .map_err(|_| TokenError::Malformed("not the JSON object"))?;
        let scheme = Scheme::parse(&raw.scheme).ok_or(TokenError::UnknownScheme(raw.scheme))?;
        let sig = decode_hex(&raw.sig).ok_or(TokenError::Malformed("sig is not 0x-hex"))?;
        Ok(Credential {
            scheme,
            address: raw.address,
            ts_ms: raw.ts,
            sig,
        })
    }
}

/// `0x`-prefixed (or bare) hex.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// The signed message: `template` with `{room}`, `{timestamp}` and `{action}` filled in.
pub fn message(template: &str, room: &str, ts_ms: u64, action: &str) -> String {
    template
        .replace("{room}", room)
        .replace("{timestamp}", &ts_ms.to_string())
        .replace("{action}", action)
}
