//! PluginGate with the real plugins: static tokens, JWTs minted by PyJWT, room policy,
//! the auth chain, swapping auth by configuration, and load-time errors.

mod support;

use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;
use switchboard::auth::{Action, Denied, Gatekeeper, RoomCounts};
use switchboard::plugins::{Hook, PluginError, PluginGate};

async fn gate(plugins: Vec<switchboard::plugins::PluginConfig>) -> PluginGate {
    PluginGate::new(plugins, no_upstreams())
        .await
        .expect("plugins load")
}

fn static_tokens() -> switchboard::plugins::PluginConfig {
    plugin(
        "tokens",
        "static-token",
        &["auth"],
        json!({ "token": "global-secret", "rooms": { "lobby": "lobby-secret" } }),
    )
}

#[tokio::test]
async fn static_token_decides() {
    let gate = gate(vec![static_tokens()]).await;
    assert!(!gate.is_open());
    let id = gate
        .admit(&request("any", Action::Publish, Some("global-secret")))
        .await
        .unwrap();
    assert_eq!(id.subject, "token:any");
    assert_eq!(id.expires_at, None);
    assert!(
        gate.admit(&request("lobby", Action::Play, Some("lobby-secret")))
            .await
            .is_ok()
    );
    assert_eq!(
        gate.admit(&request("other", Action::Play, Some("lobby-secret")))
            .await,
        Err(Denied::Forbidden(
            "token does not allow play in room `other`".into()
        ))
    );
    assert_eq!(
        gate.admit(&request("lobby", Action::Play, Some("guess")))
            .await,
        Err(Denied::Unauthorized("invalid token".into()))
    );
    assert_eq!(
        gate.admit(&request("lobby", Action::Play, None)).await,
        Err(Denied::Unauthorized("missing token".into()))
    );
}

#[tokio::test]
async fn pyjwt_tokens_are_accepted_for_every_algorithm() {
    let room = json!(["studio-*"]);
    let roles = json!(["publish", "play"]);
    let minted = mint(json!({
        "hs": { "alg": "HS256", "claims": claims(room.clone(), roles.clone()) },
        "rs": { "alg": "RS256", "claims": claims(room.clone(), roles.clone()) },
        "es": { "alg": "ES256", "claims": claims(room.clone(), roles.clone()) },
        "ed": { "alg": "EdDSA", "claims": claims(room.clone(), roles.clone()) },
        "rs_kid": { "alg": "RS256", "claims": claims(room.clone(), roles.clone()), "headers": { "kid": "rsa" } },
        "es_kid": { "alg": "ES256", "claims": claims(room.clone(), roles.clone()), "headers": { "kid": "ec" } },
        "ed_kid": { "alg": "EdDSA", "claims": claims(room.clone(), roles.clone()), "headers": { "kid": "ed" } },
    }));
    let pem_gate = gate(vec![plugin(
        "jwt",
        "auth-jwt",
        &["auth"],
        jwt_config(&minted),
    )])
    .await;
    let before = SystemTime::now();
    for name in ["hs", "rs", "es", "ed"] {
        let id = pem_gate
            .admit(&request(
                "studio-1",
                Action::Publish,
                Some(token(&minted, name)),
            ))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(id.subject, "alice");
        // expires_at = exp + leeway (30 s), exp = now + 600.
        let expires = id.expires_at.expect("expiry from exp");
        let secs = expires.duration_since(before).unwrap().as_secs();
        assert!((625..=635).contains(&secs), "{name}: expires in {secs}s");
    }

    // The same keys from PyJWT's JWKS export, selected by kid.
    let jwks_gate = gate(vec![plugin(
        "jwt",
        "auth-jwt",
        &["auth"],
        json!({ "jwks": minted["jwks"].to_string(), "audience": ["switchboard"], "recheck_every_secs": 30 }),
    )])
    .await;
    for name in ["rs_kid", "es_kid", "ed_kid"] {
        let id = jwks_gate
            .admit(&request(
                "studio-9",
                Action::Play,
                Some(token(&minted, name)),
            ))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(id.recheck_every, Some(Duration::from_secs(30)));
    }
}

#[tokio::test]
async fn bad_jwts_are_rejected_with_401_or_403() {
    let ok = claims(json!("studio-1"), json!("play"));
    let with = |k: &str, v: serde_json::Value| {
        let mut c = ok.clone();
        c[k] = v;
        c
    };
    let minted = mint(json!({
        "tampered": { "alg": "RS256", "claims": ok.clone(), "tamper": "room=*" },
        "tampered_hs": { "alg": "HS256", "claims": ok.clone(), "tamper": "sub=admin" },
        "expired": { "alg": "ES256", "claims": with("exp", json!("$now-3600")) },
        "not_yet": { "alg": "ES256", "claims": with("nbf", json!("$now+3600")) },
        "wrong_aud": { "alg": "EdDSA", "claims": with("aud", json!("someone-else")) },
        "wrong_iss": { "alg": "EdDSA", "claims": with("iss", json!("https://evil.test")) },
        "confusion": { "alg": "RS256", "forge": "hs256-with-public-pem", "claims": ok.clone() },
        "none": { "alg": "RS256", "forge": "none", "claims": ok.clone() },
        "wrong_room": { "alg": "RS256", "claims": ok.clone() },
        "wrong_role": { "alg": "HS256", "claims": ok.clone() },
    }));
    // The RS256 key is configured only as RS256; no HS256 key exists at all here, which is
    // exactly the set-up algorithm confusion preys on.
    let config = json!({
        "issuer": "https://idp.test",
        "audience": "switchboard",
        "keys": [
            { "alg": "RS256", "pem": minted["pem"]["RS256"] },
            { "alg": "ES256", "pem": minted["pem"]["ES256"] },
            { "alg": "EdDSA", "pem": minted["pem"]["EdDSA"] },
        ],
    });
    let rs_only = gate(vec![plugin("jwt", "auth-jwt", &["auth"], config)]).await;
    let with_hs = gate(vec![plugin(
        "jwt",
        "auth-jwt",
        &["auth"],
        jwt_config(&minted),
    )])
    .await;

    let cases: [(&PluginGate, &str, &str, Action, Denied); 10] = [
        (
            &rs_only,
            "tampered",
            "studio-1",
            Action::Play,
            Denied::Unauthorized("invalid token signature".into()),
        ),
        (
            &with_hs,
            "tampered_hs",
            "studio-1",
            Action::Play,
            Denied::Unauthorized("invalid token signature".into()),
        ),
        (
            &rs_only,
            "expired",
            "studio-1",
            Action::Play,
            Denied::Unauthorized("token expired".into()),
        ),
        (
            &rs_only,
            "not_yet",
            "studio-1",
            Action::Play,
            Denied::Unauthorized("token not valid yet (`nbf`)".into()),
        ),
        (
            &rs_only,
            "wrong_aud",
            "studio-1",
            Action::Play,
            Denied::Unauthorized("wrong token audience".into()),
        ),
        (
            &rs_only,
            "wrong_iss",
            "studio-1",
            Action::Play,
            Denied::Unauthorized("wrong token issuer".into()),
        ),
        (
            &rs_only,
            "confusion",
            "studio-1",
            Action::Play,
            Denied::Unauthorized("no HS256 key is configured for this token".into()),
        ),
        (
            &rs_only,
            "none",
            "studio-1",
            Action::Play,
            Denied::Unauthorized("token algorithm `none` is not accepted".into()),
        ),
        (
            &rs_only,
            "wrong_room",
            "studio-2",
            Action::Play,
            Denied::Forbidden("token is not valid for room `studio-2`".into()),
        ),
        (
            &with_hs,
            "wrong_role",
            "studio-1",
            Action::Publish,
            Denied::Forbidden("token does not allow publish".into()),
        ),
    ];
    for (gate, name, room, action, expected) in cases {
        let got = gate
            .admit(&request(room, action, Some(token(&minted, name))))
            .await;
        assert_eq!(got, Err(expected), "{name}");
    }
    // The untampered token of the same shape is fine, so the failures above are the changes.
    assert!(
        rs_only
            .admit(&request(
                "studio-1",
                Action::Play,
                Some(token(&minted, "wrong_room"))
            ))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn swapping_auth_in_config_changes_behaviour() {
    let minted =
        mint(json!({ "jwt": { "alg": "ES256", "claims": claims(json!("*"), json!(["play"])) } }));
    let jwt = token(&minted, "jwt");

    let gate = gate(vec![static_tokens()]).await;
    assert!(
        gate.admit(&request("r", Action::Play, Some("global-secret")))
            .await
            .is_ok()
    );
    assert!(matches!(
        gate.admit(&request("r", Action::Play, Some(jwt))).await,
        Err(Denied::Unauthorized(_))
    ));

    gate.reload_with(
        vec![plugin("jwt", "auth-jwt", &["auth"], jwt_config(&minted))],
        no_upstreams(),
    )
    .await
    .unwrap();
    assert_eq!(gate.plugin_names(), vec!["jwt"]);
    assert!(
        gate.admit(&request("r", Action::Play, Some(jwt)))
            .await
            .is_ok()
    );
    assert!(matches!(
        gate.admit(&request("r", Action::Play, Some("global-secret")))
            .await,
        Err(Denied::Unauthorized(_))
    ));
}

#[tokio::test]
async fn auth_chain_falls_through_unauthorized_only() {
    let minted = mint(
        json!({ "viewer": { "alg": "HS256", "claims": claims(json!("lobby"), json!("play")) } }),
    );
    let gate = gate(vec![
        plugin("jwt", "auth-jwt", &["auth"], jwt_config(&minted)),
        static_tokens(),
    ])
    .await;
    // Not a JWT: the JWT plugin says 401, the static-token plugin admits.
    assert_eq!(
        gate.admit(&request("x", Action::Publish, Some("global-secret")))
            .await
            .unwrap()
            .subject,
        "token:any"
    );
    // A valid JWT for the wrong action is a final 403; the chain does not continue.
    assert_eq!(
        gate.admit(&request(
            "lobby",
            Action::Publish,
            Some(token(&minted, "viewer"))
        ))
        .await,
        Err(Denied::Forbidden("token does not allow publish".into()))
    );
    // Nobody recognises it: both reasons are reported.
    assert_eq!(
        gate.admit(&request("lobby", Action::Play, Some("junk")))
            .await,
        Err(Denied::Unauthorized(
            "malformed token: expected three dot-separated parts; invalid token".into()
        ))
    );
}

#[tokio::test]
async fn room_policy_applies_after_auth() {
    let gate = gate(vec![
        static_tokens(),
        plugin(
            "rooms",
            "room-policy",
            &["room-policy"],
            json!({ "allow_rooms": ["lobby", "studio-*"], "max_publishers": 1, "max_viewers": 2 }),
        ),
    ])
    .await;
    let mut req = request("studio-1", Action::Play, Some("global-secret"));
    req.counts = RoomCounts {
        publishers: 1,
        viewers: 1,
    };
    assert!(gate.admit(&req).await.is_ok());
    req.counts.viewers = 2;
    assert_eq!(
        gate.admit(&req).await,
        Err(Denied::Forbidden(
            "room `studio-1` is full (2 viewers)".into()
        ))
    );
    req.action = Action::Publish;
    assert_eq!(
        gate.admit(&req).await,
        Err(Denied::Forbidden(
            "room `studio-1` already has 1 publisher(s) (max 1)".into()
        ))
    );
    let nowhere = request("secret-room", Action::Play, Some("global-secret"));
    assert_eq!(
        gate.admit(&nowhere).await,
        Err(Denied::Forbidden(
            "room `secret-room` is not allowed here".into()
        ))
    );
    // Auth runs first: a bad token is 401 even for a disallowed room.
    assert!(matches!(
        gate.admit(&request("secret-room", Action::Play, Some("bad")))
            .await,
        Err(Denied::Unauthorized(_))
    ));
    // Recheck re-authenticates only: a full room does not end a session already in it.
    let id = gate
        .admit(&request("lobby", Action::Play, Some("global-secret")))
        .await
        .unwrap();
    let mut live = request("lobby", Action::Play, Some("global-secret"));
    live.counts.viewers = 2;
    assert_eq!(gate.recheck(&live, &id).await, Ok(()));
}

#[tokio::test]
async fn room_policy_alone_admits_anonymous() {
    let gate = gate(vec![plugin(
        "rooms",
        "room-policy",
        &["room-policy"],
        json!({ "allow_rooms": ["open-*"] }),
    )])
    .await;
    assert!(gate.is_open());
    assert_eq!(
        gate.admit(&request("open-1", Action::Publish, None))
            .await
            .unwrap()
            .subject,
        "anonymous"
    );
    assert!(matches!(
        gate.admit(&request("closed", Action::Publish, None)).await,
        Err(Denied::Forbidden(_))
    ));
}

#[tokio::test]
async fn recheck_ends_expired_or_revoked_sessions() {
    let minted = mint(json!({
        "short": { "alg": "HS256", "claims": { "sub": "bob", "exp": "$now+2", "room": "*", "role": "play" } },
    }));
    let config = json!({ "secret": SECRET, "leeway_secs": 0, "recheck_every_secs": 1 });
    let gate = gate(vec![plugin("jwt", "auth-jwt", &["auth"], config)]).await;
    let req = request("r", Action::Play, Some(token(&minted, "short")));
    let id = gate.admit(&req).await.unwrap();
    assert_eq!(id.recheck_every, Some(Duration::from_secs(1)));
    let exp = id
        .expires_at
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        exp > SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );
    assert_eq!(gate.recheck(&req, &id).await, Ok(()));

    // Revocation: the operator swaps the key; the live session's next recheck fails.
    gate.reload_with(
        vec![plugin(
            "jwt",
            "auth-jwt",
            &["auth"],
            json!({ "secret": "a-completely-different-secret-value!" }),
        )],
        no_upstreams(),
    )
    .await
    .unwrap();
    assert_eq!(
        gate.recheck(&req, &id).await,
        Err(Denied::Unauthorized("invalid token signature".into()))
    );

    // Expiry: once exp passes, the same token no longer rechecks.
    gate.reload_with(
        vec![plugin(
            "jwt",
            "auth-jwt",
            &["auth"],
            json!({ "secret": SECRET, "leeway_secs": 0 }),
        )],
        no_upstreams(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        gate.recheck(&req, &id).await,
        Err(Denied::Unauthorized("token expired".into()))
    );
}

#[tokio::test]
async fn load_errors_name_the_plugin_and_reason() {
    let err = |r: Result<PluginGate, PluginError>| r.err().expect("load must fail").to_string();

    let bad_config = plugin("jwt", "auth-jwt", &["auth"], json!({ "secret": "short" }));
    assert_eq!(
        err(PluginGate::new(vec![bad_config], no_upstreams()).await),
        "plugin `jwt`: rejected its config: secret: HS256 secret is 5 bytes; use at least 32 random bytes"
    );

    let unknown_key = plugin("st", "static-token", &["auth"], json!({ "tokens": "x" }));
    let msg = err(PluginGate::new(vec![unknown_key], no_upstreams()).await);
    assert_eq!(
        msg,
        "plugin `st`: rejected its config: tokens: unknown field `tokens`, \
         expected one of `token`, `publish_token`, `play_token`, `public_play`, `rooms`"
    );

    let mut missing = static_tokens();
    missing.path = "/nonexistent/plugin.wasm".into();
    let msg = err(PluginGate::new(vec![missing], no_upstreams()).await);
    assert!(
        msg.starts_with("plugin `tokens`: cannot read /nonexistent/plugin.wasm"),
        "{msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0 definitely not a component").unwrap();
    let mut not_wasm = static_tokens();
    not_wasm.path = garbage.clone();
    let msg = err(PluginGate::new(vec![not_wasm], no_upstreams()).await);
    assert!(
        msg.starts_with(&format!(
            "plugin `tokens`: {} is not a valid WebAssembly component",
            garbage.display()
        )),
        "{msg}"
    );

    // The probe imports kv and http; without grants it must not load.
    let ungranted = plugin(
        "probe",
        "testing-probe",
        &["auth"],
        json!({ "mode": "clock", "ttl_secs": 1 }),
    );
    let msg = err(PluginGate::new(vec![ungranted], no_upstreams()).await);
    assert!(msg.starts_with("plugin `probe`: does not match the switchboard:plugin@0.2.0 interface: imports `switchboard:plugin/"), "{msg}");
    assert!(msg.contains("but is not granted it (set grants."), "{msg}");

    // A component that exports nothing, and one whose `configure` has the wrong signature
    // (wasmtime accepts the WebAssembly text format for components).
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, "(component)").unwrap();
    let mut p = static_tokens();
    p.path = empty;
    assert_eq!(
        err(PluginGate::new(vec![p], no_upstreams()).await),
        "plugin `tokens`: is not a Switchboard plugin: it neither imports nor exports a \
         switchboard:plugin interface (this host provides switchboard:plugin@0.1.0 and @0.2.0)"
    );
    // Built against a version this host does not provide: refused, naming what it provides.
    let future = dir.path().join("future.wasm");
    std::fs::write(
        &future,
        r#"(component
            (core module $m (func (export "configure") (param i32) (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $configure (param "config-json" u32) (result u32)
                (canon lift (core func $i "configure")))
            (instance $lifecycle (export "configure" (func $configure)))
            (export "switchboard:plugin/lifecycle@0.3.0" (instance $lifecycle)))"#,
    )
    .unwrap();
    let mut p = static_tokens();
    p.path = future;
    assert_eq!(
        err(PluginGate::new(vec![p], no_upstreams()).await),
        "plugin `tokens`: is built against switchboard:plugin@0.3.0, which this host does not \
         provide (it provides switchboard:plugin@0.1.0 and @0.2.0)"
    );
    let wrong = dir.path().join("wrong.wasm");
    std::fs::write(
        &wrong,
        r#"(component
            (core module $m (func (export "configure") (param i32) (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $configure (param "config-json" u32) (result u32) (canon lift (core func $i "configure")))
            (instance $lifecycle (export "configure" (func $configure)))
            (export "switchboard:plugin/lifecycle@0.1.0" (instance $lifecycle))
            (instance $auth (export "authenticate" (func $configure)))
            (export "switchboard:plugin/authenticator@0.1.0" (instance $auth)))"#,
    )
    .unwrap();
    let mut p = static_tokens();
    p.path = wrong;
    let msg = err(PluginGate::new(vec![p], no_upstreams()).await);
    assert!(
        msg.starts_with("plugin `tokens`: does not match the switchboard:plugin@0.1.0 interface: "),
        "{msg}"
    );
    assert!(msg.contains("type mismatch"), "{msg}");

    // Serving a hook the component does not export.
    let mut p = plugin("rooms", "room-policy", &["auth"], json!({}));
    p.path = dir.path().join("wrong.wasm");
    p.hooks = vec![Hook::named("room-policy").unwrap()];
    let msg = err(PluginGate::new(vec![p], no_upstreams()).await);
    assert_eq!(
        msg,
        "plugin `rooms`: does not match the switchboard:plugin@0.1.0 interface: \
         does not export `switchboard:plugin/policy@0.1.0`, needed for hook \"room-policy\""
    );

    let mut bad_limits = static_tokens();
    bad_limits.limits.timeout_ms = 0;
    assert_eq!(
        err(PluginGate::new(vec![bad_limits], no_upstreams()).await),
        "plugin `tokens`: invalid config: limits.timeout_ms: 0 is out of range (1..=60000)"
    );
}

#[tokio::test]
async fn empty_gate_is_open() {
    let gate = gate(vec![]).await;
    assert!(gate.is_open());
    assert_eq!(
        gate.admit(&request("r", Action::Publish, None))
            .await
            .unwrap()
            .subject,
        "anonymous"
    );
}
