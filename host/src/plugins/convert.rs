//! The host's admission types ([`crate::auth`]) to and from the latest WIT types, validating
//! what plugins return.
//!
//! A plugin's output is untrusted: an identity or denial breaking the limits below is a
//! failure ([`CallFailure::BadOutput`], the request is denied with 503), never a decision.
//! Older interface versions are converted to the latest types before they get here
//! (`abi/v0_1_0.rs`), so these checks apply to every version.

use super::abi::latest::switchboard::plugin::types as wit;
use super::error::CallFailure;
use crate::auth::{Action, AdmitRequest, Identity};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest subject accepted from a plugin: it appears in every log line and event.
pub const MAX_SUBJECT_BYTES: usize = 1024;
/// Longest denial reason accepted from a plugin: it is sent to the client.
pub const MAX_REASON_BYTES: usize = 1024;
/// Most attributes on one identity: they travel with the session to every later hook.
pub const MAX_ATTRIBUTES: usize = 32;
/// Longest attribute name: names are identifiers such as JWT claim names.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 128;
/// Longest attribute value: facts, not documents.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;

/// The request a plugin sees.
pub fn to_wit(req: &AdmitRequest) -> wit::AuthRequest {
    wit::AuthRequest {
        room: req.room.clone(),
        action: match req.action {
            Action::Publish => wit::Action::Publish,
            Action::Play => wit::Action::Play,
        },
        credential: req.credential.clone(),
        remote_addr: req.remote_addr.map(|a| a.to_string()),
        counts: wit::RoomCounts {
            publishers: req.counts.publishers,
            viewers: req.counts.viewers,
        },
        replacing: req.replacing.clone(),
    }
}

/// An admitted identity as room-policy plugins see it.
pub fn identity_to_wit(identity: &Identity) -> wit::Identity {
    wit::Identity {
        subject: identity.subject.clone(),
        attributes: identity.attributes.clone(),
        expires_at: identity.expires_at.map(unix_ms),
        recheck_every_secs: identity
            .recheck_every
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
    }
}

/// Validate a plugin's identity; an identity already expired is a denial, not a failure
/// (see [`expired`]).
pub fn to_identity(id: wit::Identity) -> Result<Identity, CallFailure> {
    if id.subject.is_empty() {
        return Err(CallFailure::BadOutput("empty subject".into()));
    }
    if id.subject.len() > MAX_SUBJECT_BYTES {
        return Err(CallFailure::BadOutput(format!(
            "subject of {} bytes (max {MAX_SUBJECT_BYTES})",
            id.subject.len()
        )));
    }
    if id.subject.chars().any(char::is_control) {
        return Err(CallFailure::BadOutput(
            "control characters in subject".into(),
        ));
    }
    check_attributes(&id.attributes)?;
    let expires_at = id.expires_at.map(|ms| {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .unwrap_or(UNIX_EPOCH)
    });
    Ok(Identity {
        subject: id.subject,
        attributes: id.attributes,
        expires_at,
        // Never re-check more often than once a second.
        recheck_every: id
            .recheck_every_secs
            .map(|s| Duration::from_secs(u64::from(s.max(1)))),
    })
}

fn check_attributes(attributes: &[(String, String)]) -> Result<(), CallFailure> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(CallFailure::BadOutput(format!(
            "{} attributes (max {MAX_ATTRIBUTES})",
            attributes.len()
        )));
    }
    for (i, (name, value)) in attributes.iter().enumerate() {
        if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME_BYTES {
            return Err(CallFailure::BadOutput(format!(
                "attribute name of {} bytes (1..={MAX_ATTRIBUTE_NAME_BYTES})",
                name.len()
            )));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            return Err(CallFailure::BadOutput(format!(
                "attribute `{name}` of {} bytes (max {MAX_ATTRIBUTE_VALUE_BYTES})",
                value.len()
            )));
        }
        if name.chars().chain(value.chars()).any(char::is_control) {
            return Err(CallFailure::BadOutput(format!(
                "control characters in attribute #{i}"
            )));
        }
        if attributes[..i].iter().any(|(n, _)| n == name) {
            return Err(CallFailure::BadOutput(format!(
                "attribute `{name}` given twice"
            )));
        }
    }
    Ok(())
}

/// A denial's reason, cleaned for the client.
pub fn to_reason(deny: &wit::Deny) -> Result<String, CallFailure> {
    if deny.reason.len() > MAX_REASON_BYTES {
        return Err(CallFailure::BadOutput(format!(
            "denial reason of {} bytes (max {MAX_REASON_BYTES})",
            deny.reason.len()
        )));
    }
    let reason: String = deny
        .reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Ok(if reason.trim().is_empty() {
        "denied".into()
    } else {
        reason
    })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Expired identities are refused at admission rather than handed to the SFU.
pub fn expired(identity: &Identity, now: SystemTime) -> bool {
    identity.expires_at.is_some_and(|at| at <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit_identity(subject: &str, attributes: &[(&str, &str)]) -> wit::Identity {
        wit::Identity {
            subject: subject.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            expires_at: None,
            recheck_every_secs: None,
        }
    }

    #[test]
    fn identities_are_validated() {
        let ok = to_identity(wit::Identity {
            expires_at: Some(1_700_000_000_123),
            recheck_every_secs: Some(0),
            ..wit_identity("alice", &[("record", "true")])
        })
        .unwrap();
        assert_eq!(
            ok.expires_at,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(ok.recheck_every, Some(Duration::from_secs(1)));
        assert_eq!(ok.attributes, vec![("record".into(), "true".into())]);
        assert!(expired(&ok, SystemTime::now()));

        let bad = |subject: String| to_identity(wit_identity(&subject, &[])).unwrap_err();
        assert!(matches!(bad(String::new()), CallFailure::BadOutput(_)));
        assert!(matches!(
            bad("x".repeat(MAX_SUBJECT_BYTES + 1)),
            CallFailure::BadOutput(_)
        ));
        assert!(matches!(bad("a\nb".into()), CallFailure::BadOutput(_)));
    }

    #[test]
    fn attributes_are_bounded() {
        let bad = |attributes: &[(&str, &str)]| match to_identity(wit_identity("alice", attributes))
            .unwrap_err()
        {
            CallFailure::BadOutput(why) => why,
            other => panic!("{other:?}"),
        };
        let long_value = "v".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1);
        assert_eq!(
            bad(&[("tier", &long_value)]),
            "attribute `tier` of 1025 bytes (max 1024)"
        );
        assert!(bad(&[("", "x")]).starts_with("attribute name of 0 bytes"));
        assert!(bad(&[("a", "x\ny")]).starts_with("control characters"));
        assert_eq!(bad(&[("a", "1"), ("a", "2")]), "attribute `a` given twice");
        let names: Vec<String> = (0..=MAX_ATTRIBUTES).map(|i| format!("k{i}")).collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        assert_eq!(bad(&many), "33 attributes (max 32)");
    }

    #[test]
    fn requests_carry_replacing_and_identities_round_trip() {
        let req = AdmitRequest {
            room: "r".into(),
            action: Action::Publish,
            credential: None,
            remote_addr: None,
            counts: Default::default(),
            replacing: Some("old-encoder".into()),
        };
        assert_eq!(to_wit(&req).replacing.as_deref(), Some("old-encoder"));
        let id = to_identity(wit_identity("alice", &[("record", "true")])).unwrap();
        assert_eq!(
            identity_to_wit(&id),
            wit_identity("alice", &[("record", "true")])
        );
    }

    #[test]
    fn reasons_are_cleaned() {
        let deny = |reason: String| wit::Deny {
            kind: wit::DenyKind::Forbidden,
            reason,
        };
        assert_eq!(to_reason(&deny("a\r\nb".into())).unwrap(), "a  b");
        assert_eq!(to_reason(&deny("  ".into())).unwrap(), "denied");
        assert!(to_reason(&deny("x".repeat(MAX_REASON_BYTES + 1))).is_err());
    }
}
