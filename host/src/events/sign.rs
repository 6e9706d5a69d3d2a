//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}">`, one `v1,` signature per secret, separated by
//! spaces, so a consumer keeps verifying while its secret is rotated (configure the new secret
//! next to the old one, switch the consumer, remove the old one).
//!
//! Secrets are in the scheme's `whsec_<base64>` form, as the consumer libraries take them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest secret accepted, in bytes after decoding: the scheme asks for 24 to 64 random bytes.
pub const MIN_SECRET_BYTES: usize = 24;
/// Longest secret accepted, in bytes after decoding.
pub const MAX_SECRET_BYTES: usize = 64;

/// One signing key.
#[derive(Clone)]
pub struct Secret(ring::hmac::Key);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Parse `whsec_<base64>`; the error says what was expected (never echoing the secret).
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            format!(
                "expected a Standard Webhooks secret `{SECRET_PREFIX}<base64>` (e.g. \
                 `{SECRET_PREFIX}$(openssl rand -base64 32)`)"
            )
        })?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| format!("the part after `{SECRET_PREFIX}` is not base64: {e}"))?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(format!(
                "decodes to {} bytes; use {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes",
                bytes.len()
            ));
        }
        Ok(Secret(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &bytes,
        )))
    }

    fn sign(&self, signed: &[u8]) -> String {
        STANDARD.encode(ring::hmac::sign(&self.0, signed).as_ref())
    }
}

/// The `webhook-signature` header value: `v1,<sig>` for every secret, space-separated.
pub fn signature(secrets: &[Secret], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(id.len() + 24 + body.len());
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    secrets
        .iter()
        .map(|s| format!("v1,{}", s.sign(&signed)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn matches_the_reference_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                &[secret],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn one_signature_per_secret_and_clear_errors() {
        let a = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).unwrap();
        let header = signature(&[a, b], "evt_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")) && parts[0] != parts[1]);
        assert!(Secret::parse("hunter2").unwrap_err().contains("whsec_"));
        assert!(Secret::parse("whsec_!!").unwrap_err().contains("base64"));
        assert!(Secret::parse("whsec_AAAA").unwrap_err().contains("3 bytes"));
    }
}
