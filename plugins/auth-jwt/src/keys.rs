//! Verification keys from config: shared secrets, PEM public keys, JWKS documents.
//!
//! Keys are parsed and validated here with pure-Rust crates; the signature arithmetic for
//! public keys runs natively in the host (`switchboard:plugin/crypto`), which is what keeps an
//! RS256 or ES256 check well under a millisecond.
//!
//! Every key is bound to exactly one algorithm when it is loaded. A token is only ever checked
//! against keys of the algorithm its header names, so an RSA public key can never be used as
//! an HMAC secret (algorithm confusion) and `alg: none` has no key at all.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;

/// Algorithms this plugin verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Alg {
    HS256,
    RS256,
    ES256,
    EdDSA,
}

impl Alg {
    /// Parse a JOSE `alg` value (case-sensitive, as RFC 7518 requires).
    pub fn from_jose(alg: &str) -> Option<Self> {
        match alg {
            "HS256" => Some(Alg::HS256),
            "RS256" => Some(Alg::RS256),
            "ES256" => Some(Alg::ES256),
            "EdDSA" => Some(Alg::EdDSA),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }
}

/// Key material, parsed and validated at configure time.
pub enum KeyMaterial {
    /// HS256 secret; HMAC is cheap enough to compute in wasm.
    Hmac(Vec<u8>),
    /// A public key in the encoding of the host's `crypto::verify` for the key's algorithm:
    /// PKCS#1 DER (RS256), SEC1 uncompressed point (ES256), 32 raw bytes (EdDSA).
    Public(Vec<u8>),
}

pub struct Key {
    pub kid: Option<String>,
    pub alg: Alg,
    pub material: KeyMaterial,
}

/// Smallest accepted RSA modulus and HMAC secret.
pub const MIN_RSA_BITS: usize = 2048;
pub const MIN_SECRET_BYTES: usize = 32;

/// One entry of `keys = [...]` in the plugin config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub kid: Option<String>,
    pub alg: Alg,
    /// HS256 secret as text.
    pub secret: Option<String>,
    /// HS256 secret, base64 (standard or URL-safe alphabet).
    pub secret_base64: Option<String>,
    /// Public key in PEM (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY` for RS256).
    pub pem: Option<String>,
}

pub fn hmac_secret(secret: Vec<u8>) -> Result<KeyMaterial, String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "HS256 secret is {} bytes; use at least {MIN_SECRET_BYTES} random bytes",
            secret.len()
        ));
    }
    Ok(KeyMaterial::Hmac(secret))
}

fn decode_b64_any(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .map_err(|e| format!("not valid base64: {e}"))
}

fn rsa_key(key: rsa::RsaPublicKey) -> Result<KeyMaterial, String> {
    use rsa::traits::PublicKeyParts;
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key of {bits} bits; at least {MIN_RSA_BITS} required"
        ));
    }
    use rsa::pkcs1::EncodeRsaPublicKey;
    let der = key
        .to_pkcs1_der()
        .map_err(|e| format!("cannot encode RSA key: {e}"))?;
    Ok(KeyMaterial::Public(der.as_bytes().to_vec()))
}

fn p256_key(key: p256::ecdsa::VerifyingKey) -> KeyMaterial {
    KeyMaterial::Public(key.to_encoded_point(false).as_bytes().to_vec())
}

fn ed25519_key(key: ed25519_dalek::VerifyingKey) -> KeyMaterial {
    KeyMaterial::Public(key.to_bytes().to_vec())
}

fn from_pem(alg: Alg, pem: &str) -> Result<KeyMaterial, String> {
    use p256::pkcs8::DecodePublicKey;
    match alg {
        Alg::HS256 => Err("HS256 takes `secret` or `secret_base64`, not `pem`".into()),
        Alg::RS256 => {
            let key = rsa::RsaPublicKey::from_public_key_pem(pem)
                .or_else(|_| {
                    use rsa::pkcs1::DecodeRsaPublicKey;
                    rsa::RsaPublicKey::from_pkcs1_pem(pem)
                })
                .map_err(|e| format!("not an RSA public key in PEM: {e}"))?;
            rsa_key(key)
        }
        Alg::ES256 => p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map(p256_key)
            .map_err(|e| format!("not a P-256 public key in PEM: {e}")),
        Alg::EdDSA => ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map(ed25519_key)
            .map_err(|e| format!("not an Ed25519 public key in PEM: {e}")),
    }
}

impl KeyConfig {
    pub fn load(self) -> Result<Key, String> {
        let material = match (self.alg, self.secret, self.secret_base64, self.pem) {
            (Alg::HS256, Some(secret), None, None) => hmac_secret(secret.into_bytes())?,
            (Alg::HS256, None, Some(b64), None) => hmac_secret(decode_b64_any(&b64)?)?,
            (alg, None, None, Some(pem)) => from_pem(alg, &pem)?,
            (Alg::HS256, ..) => {
                return Err("HS256 needs exactly one of `secret`, `secret_base64`".into());
            }
            (alg, ..) => return Err(format!("{} needs `pem` (and no secret)", alg.as_str())),
        };
        Ok(Key {
            kid: self.kid,
            alg: self.alg,
            material,
        })
    }
}

/// A JSON Web Key (RFC 7517) as found in a JWKS document.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

fn b64url(field: &str, value: Option<&String>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("missing `{field}`"))?;
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|e| format!("`{field}` is not base64url: {e}"))
}

impl Jwk {
    fn load(self) -> Result<Option<Key>, String> {
        // Encryption keys share JWKS documents with signing keys; they are not ours to use.
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        let implied = match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => Alg::RS256,
            ("EC", Some("P-256")) => Alg::ES256,
            ("OKP", Some("Ed25519")) => Alg::EdDSA,
            ("oct", _) => Alg::HS256,
            (kty, crv) => {
                return Err(format!(
                    "unsupported key type `{kty}`{}",
                    crv.map(|c| format!(" / curve `{c}`")).unwrap_or_default()
                ));
            }
        };
        let alg = match &self.alg {
            None => implied,
            Some(a) => match Alg::from_jose(a) {
                Some(a) if a == implied => a,
                _ => {
                    return Err(format!(
                        "alg `{a}` is unsupported or does not fit key type `{}`",
                        self.kty
                    ));
                }
            },
        };
        let material = match alg {
            Alg::HS256 => hmac_secret(b64url("k", self.k.as_ref())?)?,
            Alg::RS256 => {
                let n = rsa::BigUint::from_bytes_be(&b64url("n", self.n.as_ref())?);
                let e = rsa::BigUint::from_bytes_be(&b64url("e", self.e.as_ref())?);
                rsa_key(rsa::RsaPublicKey::new(n, e).map_err(|e| format!("invalid RSA key: {e}"))?)?
            }
            Alg::ES256 => {
                let x = b64url("x", self.x.as_ref())?;
                let y = b64url("y", self.y.as_ref())?;
                if x.len() != 32 || y.len() != 32 {
                    return Err("P-256 coordinates must be 32 bytes".into());
                }
                let point = p256::EncodedPoint::from_affine_coordinates(
                    p256::FieldBytes::from_slice(&x),
                    p256::FieldBytes::from_slice(&y),
                    false,
                );
                p256_key(
                    p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                        .map_err(|_| "not a point on P-256".to_string())?,
                )
            }
            Alg::EdDSA => {
                let x: [u8; 32] = b64url("x", self.x.as_ref())?
                    .try_into()
                    .map_err(|_| "Ed25519 `x` must be 32 bytes".to_string())?;
                ed25519_key(
                    ed25519_dalek::VerifyingKey::from_bytes(&x)
                        .map_err(|_| "not a valid Ed25519 public key".to_string())?,
                )
            }
        };
        Ok(Some(Key {
            kid: self.kid,
            alg,
            material,
        }))
    }
}

/// Keys of a JWKS document (given as a JSON string or inline object).
pub fn from_jwks(doc: &serde_json::Value) -> Result<Vec<Key>, String> {
    let jwks: Jwks = match doc {
        serde_json::Value::String(text) => serde_json::from_str(text),
        other => serde_json::from_value(other.clone()),
    }
    .map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for (i, jwk) in jwks.keys.into_iter().enumerate() {
        let kid = jwk.kid.clone();
        let label = || match &kid {
            Some(kid) => format!("keys[{i}] (kid `{kid}`)"),
            None => format!("keys[{i}]"),
        };
        if let Some(key) = jwk.load().map_err(|e| format!("{}: {e}", label()))? {
            keys.push(key);
        }
    }
    Ok(keys)
}
