//! Native unit tests: tokens are signed here with the same primitive crates; RS256 and tokens
//! from an independent library (PyJWT) are covered by the host's integration tests.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use switchboard_plugin_sdk::{DenyKind, RoomCounts};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000;

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn hs256(header: Value, claims: Value, secret: &[u8]) -> String {
    use hmac::Mac;
    let input = signing_input(&header, &claims);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn es256_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
}

fn es256(header: Value, claims: Value) -> String {
    use p256::ecdsa::signature::Signer;
    let input = signing_input(&header, &claims);
    let sig: p256::ecdsa::Signature = es256_key().sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

fn ed_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
}

fn eddsa(header: Value, claims: Value) -> String {
    use ed25519_dalek::Signer;
    let input = signing_input(&header, &claims);
    format!(
        "{input}.{}",
        b64(&ed_key().sign(input.as_bytes()).to_bytes())
    )
}

fn good_claims() -> Value {
    json!({ "sub": "alice", "exp": NOW + 600, "aud": "switchboard", "iss": "idp",
            "room": ["studio-*", "lobby"], "role": ["publish", "play"] })
}

fn plugin(config: Value) -> Result<JwtAuth, String> {
    JwtAuth::new(Config::from_json(config.to_string()))
}

fn hs_plugin() -> JwtAuth {
    plugin(json!({ "secret": SECRET, "issuer": "idp", "audience": ["switchboard", "other"] }))
        .unwrap()
}

fn req(room: &str, action: Action, token: &str) -> AuthRequest {
    AuthRequest {
        room: room.into(),
        action,
        credential: Some(token.into()),
        remote_addr: None,
        counts: RoomCounts {
            publishers: 0,
            viewers: 0,
        },
        replacing: None,
    }
}

fn denial(r: Result<Identity, Deny>) -> (DenyKind, String) {
    let d = r.expect_err("expected a denial");
    (d.kind, d.reason)
}

#[test]
fn hs256_accepts_and_sets_expiry() {
    let p = hs_plugin();
    let token = hs256(
        json!({"alg": "HS256", "typ": "JWT"}),
        good_claims(),
        SECRET.as_bytes(),
    );
    let id = p
        .decide(&req("studio-1", Action::Publish, &token), NOW)
        .unwrap();
    assert_eq!(id.subject, "alice");
    assert_eq!(id.expires_at, Some((NOW + 600 + 30) * 1000));
    assert_eq!(id.recheck_every_secs, None);
    assert!(p.decide(&req("lobby", Action::Play, &token), NOW).is_ok());
}

#[test]
fn signature_and_format_failures_are_401() {
    let p = hs_plugin();
    let token = hs256(json!({"alg": "HS256"}), good_claims(), SECRET.as_bytes());

    // Tampered payload, original signature.
    let mut claims = good_claims();
    claims["room"] = json!("*");
    let forged = format!(
        "{}.{}",
        signing_input(&json!({"alg": "HS256"}), &claims),
        token.rsplit('.').next().unwrap()
    );
    let wrong_secret = hs256(
        json!({"alg": "HS256"}),
        good_claims(),
        b"another-secret-another-secret-xx",
    );
    for (bad, why) in [
        (forged.as_str(), "invalid token signature"),
        (wrong_secret.as_str(), "invalid token signature"),
        ("abc", "malformed token"),
        ("a.b.c.d", "malformed token"),
        ("%%%.e30.", "malformed token"),
    ] {
        let (kind, reason) = denial(p.decide(&req("lobby", Action::Play, bad), NOW));
        assert_eq!(kind, DenyKind::Unauthorized, "{bad}");
        assert!(reason.starts_with(why), "{bad}: {reason}");
    }
    let mut missing = req("lobby", Action::Play, "");
    missing.credential = None;
    assert_eq!(denial(p.decide(&missing, NOW)).1, "missing bearer token");
    let huge = "a".repeat(9000);
    assert!(
        denial(p.decide(&req("lobby", Action::Play, &huge), NOW))
            .1
            .contains("longer than")
    );
}

#[test]
fn alg_none_and_unsupported_algs_are_rejected() {
    let p = hs_plugin();
    let unsigned = format!(
        "{}.",
        signing_input(&json!({"alg": "none"}), &good_claims())
    );
    assert_eq!(
        denial(p.decide(&req("lobby", Action::Play, &unsigned), NOW)).1,
        "token algorithm `none` is not accepted"
    );
    for alg in ["None", "NONE", "HS384", "PS256", "hs256"] {
        let t = hs256(json!({ "alg": alg }), good_claims(), SECRET.as_bytes());
        let (kind, reason) = denial(p.decide(&req("lobby", Action::Play, &t), NOW));
        assert_eq!(kind, DenyKind::Unauthorized);
        assert!(reason.contains("is not accepted"), "{alg}: {reason}");
    }
    let crit = hs256(
        json!({"alg": "HS256", "crit": ["exp"]}),
        good_claims(),
        SECRET.as_bytes(),
    );
    assert!(
        denial(p.decide(&req("lobby", Action::Play, &crit), NOW))
            .1
            .contains("critical")
    );
}

#[test]
fn algorithm_confusion_is_rejected() {
    use p256::pkcs8::EncodePublicKey;
    let pem = es256_key()
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let p = plugin(json!({ "keys": [{ "alg": "ES256", "pem": pem, "kid": "ec" }] })).unwrap();
    assert!(
        p.decide(
            &req(
                "lobby",
                Action::Play,
                &es256(json!({"alg": "ES256"}), good_claims())
            ),
            NOW
        )
        .is_ok()
    );
    // The classic attack: HMAC-sign with the public key text as the secret.
    for header in [
        json!({"alg": "HS256"}),
        json!({"alg": "HS256", "kid": "ec"}),
    ] {
        let t = hs256(header, good_claims(), pem.as_bytes());
        let (kind, reason) = denial(p.decide(&req("lobby", Action::Play, &t), NOW));
        assert_eq!(kind, DenyKind::Unauthorized);
        assert_eq!(reason, "no HS256 key is configured for this token");
    }
    let t = es256(json!({"alg": "ES256", "kid": "other"}), good_claims());
    assert_eq!(
        denial(p.decide(&req("lobby", Action::Play, &t), NOW)).1,
        "unknown key id `other`"
    );
}

#[test]
fn eddsa_from_pem_and_jwks() {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    let pem = ed_key()
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let token = eddsa(json!({"alg": "EdDSA", "kid": "ed"}), good_claims());
    let p = plugin(json!({ "keys": [{ "alg": "EdDSA", "pem": pem }] })).unwrap();
    assert!(
        p.decide(&req("lobby", Action::Play, &token), NOW).is_err(),
        "kid `ed` is not configured"
    );
    let p = plugin(json!({ "keys": [{ "alg": "EdDSA", "pem": pem, "kid": "ed" }] })).unwrap();
    assert!(p.decide(&req("lobby", Action::Play, &token), NOW).is_ok());

    let point = es256_key().verifying_key().to_encoded_point(false);
    let jwks = json!({ "keys": [
        { "kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB" },
        { "kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(ed_key().verifying_key().as_bytes()) },
        { "kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256",
          "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()) },
        { "kty": "oct", "kid": "hs", "k": b64(SECRET.as_bytes()) },
    ]});
    // JWKS as text (the usual way to paste one into TOML) and as an inline table.
    for doc in [Value::String(jwks.to_string()), jwks.clone()] {
        let p = plugin(json!({ "jwks": doc })).unwrap();
        assert_eq!(p.keys.len(), 3);
        assert!(p.decide(&req("lobby", Action::Play, &token), NOW).is_ok());
        let es = es256(json!({"alg": "ES256", "kid": "ec"}), good_claims());
        assert!(p.decide(&req("lobby", Action::Play, &es), NOW).is_ok());
        let hs = hs256(
            json!({"alg": "HS256", "kid": "hs"}),
            good_claims(),
            SECRET.as_bytes(),
        );
        assert!(p.decide(&req("lobby", Action::Play, &hs), NOW).is_ok());
        // A kid bound to EdDSA cannot be used with ES256.
        let confused = es256(json!({"alg": "ES256", "kid": "ed"}), good_claims());
        assert!(
            denial(p.decide(&req("lobby", Action::Play, &confused), NOW))
                .1
                .starts_with("no ES256 key")
        );
    }
}

#[test]
fn time_issuer_and_audience() {
    let p = hs_plugin();
    let sign = |claims: Value| hs256(json!({"alg": "HS256"}), claims, SECRET.as_bytes());
    let check = |claims: Value| p.decide(&req("lobby", Action::Play, &sign(claims)), NOW);
    let with = |k: &str, v: Value| {
        let mut c = good_claims();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    assert_eq!(
        denial(check(with("exp", json!(NOW - 31)))).1,
        "token expired"
    );
    assert!(check(with("exp", json!(NOW - 29))).is_ok(), "within leeway");
    assert!(
        check(with("exp", json!((NOW + 10) as f64 + 0.5))).is_ok(),
        "fractional exp"
    );
    assert_eq!(denial(check(without("exp"))).1, "token has no `exp`");
    assert!(
        denial(check(with("exp", json!("soon"))))
            .1
            .contains("NumericDate")
    );
    assert!(
        denial(check(with("nbf", json!(NOW + 31))))
            .1
            .contains("not valid yet")
    );
    assert!(check(with("nbf", json!(NOW + 29))).is_ok());
    assert_eq!(
        denial(check(with("iss", json!("evil")))).1,
        "wrong token issuer"
    );
    assert_eq!(denial(check(without("iss"))).1, "wrong token issuer");
    assert_eq!(
        denial(check(with("aud", json!("elsewhere")))).1,
        "wrong token audience"
    );
    assert!(check(with("aud", json!(["x", "other"]))).is_ok());
    assert_eq!(denial(check(without("aud"))).1, "wrong token audience");
    assert_eq!(denial(check(without("aud"))).0, DenyKind::Unauthorized);
}

#[test]
fn room_and_role_claims_are_403() {
    let p = hs_plugin();
    let sign = |claims: Value| hs256(json!({"alg": "HS256"}), claims, SECRET.as_bytes());
    let mut viewer = good_claims();
    viewer["role"] = json!("play");
    viewer["room"] = json!("studio-?");
    let t = sign(viewer);
    assert!(p.decide(&req("studio-7", Action::Play, &t), NOW).is_ok());
    assert_eq!(
        denial(p.decide(&req("studio-7", Action::Publish, &t), NOW)),
        (
            DenyKind::Forbidden,
            "token does not allow publish".to_string()
        )
    );
    assert_eq!(
        denial(p.decide(&req("studio-77", Action::Play, &t), NOW)),
        (
            DenyKind::Forbidden,
            "token is not valid for room `studio-77`".to_string()
        )
    );
    let mut no_room = good_claims();
    no_room.as_object_mut().unwrap().remove("room");
    assert_eq!(
        denial(p.decide(&req("lobby", Action::Play, &sign(no_room)), NOW)).0,
        DenyKind::Forbidden
    );

    // Custom claim names, default roles, recheck interval.
    let p = plugin(
        json!({ "secret": SECRET, "room_claim": "r", "role_claim": "perm",
                           "default_roles": ["play"], "recheck_every_secs": 15 }),
    )
    .unwrap();
    let t = sign(json!({ "sub": "bob", "exp": NOW + 60, "r": "*" }));
    let id = p.decide(&req("any", Action::Play, &t), NOW).unwrap();
    assert_eq!(id.recheck_every_secs, Some(15));
    assert_eq!(
        denial(p.decide(&req("any", Action::Publish, &t), NOW)).0,
        DenyKind::Forbidden
    );
}

#[test]
fn config_errors_are_specific() {
    let err = |c: Value| plugin(c).err().expect("config error");
    assert!(err(json!({})).contains("no verification key"));
    assert!(err(json!({ "secret": "short" })).starts_with("secret: HS256 secret is 5 bytes"));
    assert!(
        err(json!({ "keys": [{ "alg": "RS256", "pem": "nope" }] }))
            .starts_with("keys[0]: not an RSA public key")
    );
    assert!(
        err(json!({ "keys": [{ "alg": "HS999", "secret": SECRET }] }))
            .starts_with("keys[0].alg: unknown variant `HS999`")
    );
    assert!(
        err(json!({ "keys": [{ "alg": "ES256", "secret": SECRET }] }))
            .contains("ES256 needs `pem`")
    );
    assert!(
        err(json!({ "jwks": { "keys": [{ "kty": "EC", "crv": "P-384", "kid": "k" }] } }))
            .starts_with("jwks: keys[0] (kid `k`): unsupported key type `EC` / curve `P-384`")
    );
    assert!(err(json!({ "jwks": "{not json" })).starts_with("jwks: not a JWKS document"));
    assert!(err(json!({ "secret": SECRET, "leeway_secs": 99999 })).contains("leeway_secs"));
    assert!(err(json!({ "secret": SECRET, "audence": "x" })).contains("unknown field `audence`"));
    assert!(
        err(json!({ "jwks": { "keys": [
        { "kty": "oct", "kid": "a", "k": b64(SECRET.as_bytes()) },
        { "kty": "oct", "kid": "a", "k": b64(SECRET.as_bytes()) } ] } }))
        .contains("key id `a` is used by more than one key")
    );
}

#[test]
fn attribute_claims_become_identity_attributes() {
    let p = plugin(json!({
        "secret": SECRET,
        "attribute_claims": ["record", "tier", "quota", "tags", "absent"],
    }))
    .unwrap();
    let mut claims = good_claims();
    claims["record"] = json!(true);
    claims["tier"] = json!("gold");
    claims["quota"] = json!(5);
    claims["tags"] = json!(["a", "b"]);
    claims["ignored"] = json!("not listed");
    let token = hs256(json!({"alg": "HS256"}), claims.clone(), SECRET.as_bytes());
    let id = p.decide(&req("lobby", Action::Play, &token), NOW).unwrap();
    assert_eq!(
        id.attributes,
        vec![
            ("record".to_string(), "true".to_string()),
            ("tier".to_string(), "gold".to_string()),
            ("quota".to_string(), "5".to_string()),
            ("tags".to_string(), r#"["a","b"]"#.to_string()),
        ]
    );
    // Without `attribute_claims`, no claim leaks into the identity.
    let plain = hs_plugin()
        .decide(&req("lobby", Action::Play, &token), NOW)
        .unwrap();
    assert!(plain.attributes.is_empty());
    // A value the host would refuse is the token's fault: 401, not a plugin failure.
    claims["tier"] = json!("x".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1));
    let token = hs256(json!({"alg": "HS256"}), claims, SECRET.as_bytes());
    let (kind, reason) = denial(p.decide(&req("lobby", Action::Play, &token), NOW));
    assert_eq!(kind, DenyKind::Unauthorized);
    assert_eq!(reason, "claim `tier` is over 1024 bytes");

    for (config, err) in [
        (json!([""]), "attribute_claims[0]: a claim name"),
        (
            json!(["a", "a"]),
            "attribute_claims[1]: `a` is listed twice",
        ),
        (json!("record"), "attribute_claims: invalid type"),
    ] {
        let e = plugin(json!({ "secret": SECRET, "attribute_claims": config }))
            .err()
            .expect("config error");
        assert!(e.starts_with(err), "{e}");
    }
}
