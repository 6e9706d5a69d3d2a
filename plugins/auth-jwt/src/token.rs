//! Compact JWS parsing and signature verification (RFC 7515 / 7519).

use crate::keys::{Alg, Key, KeyMaterial};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Why a token is not acceptable. All of these are 401s: the credential cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed(&'static str),
    TooLarge(usize),
    UnsupportedAlg(String),
    UnknownKid(String),
    NoKeyForAlg(&'static str),
    CriticalHeader,
    BadSignature,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(f, "malformed token: {why}"),
            TokenError::TooLarge(max) => write!(f, "token longer than {max} bytes"),
            TokenError::UnsupportedAlg(alg) => write!(f, "token algorithm `{alg}` is not accepted"),
            TokenError::UnknownKid(kid) => write!(f, "unknown key id `{kid}`"),
            TokenError::NoKeyForAlg(alg) => write!(f, "no {alg} key is configured for this token"),
            TokenError::CriticalHeader => f.write_str("token has critical header parameters"),
            TokenError::BadSignature => f.write_str("invalid token signature"),
        }
    }
}

fn b64_json(part: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(what)),
    }
}

/// Verify `token` against `keys` and return its claims. Time and audience checks are the
/// caller's; this establishes only that a configured key signed these exact bytes.
pub fn verify(
    token: &str,
    keys: &[Key],
    max_bytes: usize,
) -> Result<Map<String, Value>, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge(max_bytes));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let header = b64_json(header_b64, "header is not base64url JSON")?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(TokenError::Malformed("header has no `alg`"))?;
    // `none`, HS384, PS256, ... are refused before any key is looked at.
    let alg =
        Alg::from_jose(alg_name).ok_or_else(|| TokenError::UnsupportedAlg(alg_name.to_string()))?;
    if header.contains_key("crit") {
        return Err(TokenError::CriticalHeader);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(TokenError::Malformed("`kid` is not a string")),
    };
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];

    // Only keys bound to the header's algorithm are candidates: this is what stops an
    // RS256 public key from being tried as an HS256 secret.
    let candidates: Vec<&Key> = match kid {
        Some(kid) => {
            let by_kid: Vec<&Key> = keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if by_kid.is_empty() {
                return Err(TokenError::UnknownKid(kid.to_string()));
            }
            by_kid.into_iter().filter(|k| k.alg == alg).collect()
        }
        None => keys.iter().filter(|k| k.alg == alg).collect(),
    };
    if candidates.is_empty() {
        return Err(TokenError::NoKeyForAlg(alg.as_str()));
    }
    if !candidates
        .iter()
        .any(|key| signature_ok(key, signing_input, &signature))
    {
        return Err(TokenError::BadSignature);
    }
    b64_json(payload_b64, "payload is not base64url JSON")
}

fn signature_ok(key: &Key, msg: &[u8], sig: &[u8]) -> bool {
    match &key.material {
        KeyMaterial::Hmac(secret) => {
            use hmac::Mac;
            let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
                return false;
            };
            mac.update(msg);
            // Constant-time comparison.
            mac.verify_slice(sig).is_ok()
        }
        KeyMaterial::Public(public) => verify_public(key.alg, public, msg, sig),
    }
}

/// In the component: the host's native verifier.
#[cfg(target_family = "wasm")]
fn verify_public(alg: Alg, public: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use switchboard_plugin_sdk::crypto::{SignatureAlgorithm, verify};
    let algorithm = match alg {
        Alg::RS256 => SignatureAlgorithm::RsaPkcs1Sha256,
        Alg::ES256 => SignatureAlgorithm::EcdsaP256Sha256,
        Alg::EdDSA => SignatureAlgorithm::Ed25519,
        Alg::HS256 => return false,
    };
    verify(algorithm, public, msg, sig)
}

/// In native unit tests (no host): the same checks with the pure-Rust crates.
#[cfg(not(target_family = "wasm"))]
fn verify_public(alg: Alg, public: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match alg {
        Alg::RS256 => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            use rsa::signature::Verifier;
            let Ok(key) = rsa::RsaPublicKey::from_pkcs1_der(public) else {
                return false;
            };
            let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
            rsa::pkcs1v15::Signature::try_from(sig).is_ok_and(|s| vk.verify(msg, &s).is_ok())
        }
        Alg::ES256 => {
            use p256::ecdsa::signature::Verifier;
            let Ok(vk) = p256::ecdsa::VerifyingKey::from_sec1_bytes(public) else {
                return false;
            };
            sig.len() == 64
                && p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| vk.verify(msg, &s).is_ok())
        }
        Alg::EdDSA => {
            let (Ok(key), Ok(sig)) = (<[u8; 32]>::try_from(public), <[u8; 64]>::try_from(sig))
            else {
                return false;
            };
            ed25519_dalek::VerifyingKey::from_bytes(&key).is_ok_and(|vk| {
                vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
                    .is_ok()
            })
        }
        Alg::HS256 => false,
    }
}
