//! Short-lived TURN credentials from a secret shared with the TURN server ("TURN REST API",
//! draft-uberti-behave-turn-rest; coturn's `use-auth-secret` + `static-auth-secret`).
//!
//! The username is `<expiry>:<subject>` (expiry in Unix seconds) and the password is
//! `base64(HMAC-SHA1(secret, username))`. The TURN server recomputes the password from the
//! username, so nothing is stored and a credential stops working at its expiry without any
//! revocation list. The subject in the username makes relay usage attributable in the TURN
//! server's logs.

use base64::Engine as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest subject kept in a username: TURN usernames are limited (513 bytes in STUN, 512 in
/// coturn) and long ones only bloat every packet.
const MAX_SUBJECT_BYTES: usize = 128;

/// Mints credentials for one TURN deployment.
#[derive(Clone)]
pub struct TurnRest {
    key: ring::hmac::Key,
    ttl: Duration,
}

/// One minted credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub password: String,
    /// When the TURN server stops accepting it.
    pub expires: SystemTime,
}

impl TurnRest {
    pub fn new(secret: &str, ttl: Duration) -> Self {
        TurnRest {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes()),
            ttl,
        }
    }

    /// A credential for `subject`, valid from `now` for the configured time to live.
    pub fn mint(&self, subject: &str, now: SystemTime) -> TurnCredential {
        self.mint_expiring(subject, now + self.ttl)
    }

    /// A credential for `subject` that expires at `expires` (tests mint expired ones).
    pub fn mint_expiring(&self, subject: &str, expires: SystemTime) -> TurnCredential {
        let secs = expires
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let username = format!("{secs}:{}", username_safe(subject));
        let tag = ring::hmac::sign(&self.key, username.as_bytes());
        TurnCredential {
            password: base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
            username,
            expires: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }
}

/// `subject` as it may appear in a username that also travels in a quoted `Link` parameter:
/// visible ASCII except `"` and `\`, others replaced by `_`, at most [`MAX_SUBJECT_BYTES`].
/// (Colons are kept: coturn reads the expiry up to the first one.)
fn username_safe(subject: &str) -> String {
    let mut out: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(MAX_SUBJECT_BYTES);
    if out.is_empty() {
        out.push_str("anonymous");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_is_expiry_and_subject_and_password_the_hmac() {
        let rest = TurnRest::new("north", Duration::from_secs(3600));
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = rest.mint("alice", now);
        assert_eq!(c.username, "1700003600:alice");
        assert_eq!(c.expires, UNIX_EPOCH + Duration::from_secs(1_700_003_600));
        // `printf %s 1700003600:alice | openssl dgst -sha1 -hmac north -binary | base64`
        assert_eq!(c.password, "wjwSXO2ch1B6VaLTLMy2Avn5O9o=");
    }

    #[test]
    fn subjects_are_made_safe_for_usernames_and_headers() {
        let rest = TurnRest::new("s", Duration::from_secs(60));
        let c = rest.mint("eip155:1:0xAbC \"x\"\\é", UNIX_EPOCH);
        assert_eq!(c.username, "60:eip155:1:0xAbC__x___");
        let long = "a".repeat(500);
        assert_eq!(rest.mint(&long, UNIX_EPOCH).username.len(), 3 + 128);
        assert_eq!(rest.mint("", UNIX_EPOCH).username, "60:anonymous");
    }
}
