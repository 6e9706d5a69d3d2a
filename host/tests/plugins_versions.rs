//! Interface versions: a component built against the released `switchboard:plugin@0.1.0`
//! (with that release's SDK, frozen in `plugins/testing/sdk-v0_1_0`) loads unchanged in
//! today's host and decides next to 0.2.0 plugins in one gate; 0.2.0's additions (identity
//! attributes, `replacing`) reach plugins and come back validated.

mod support;

use serde_json::json;
use std::time::{Duration, SystemTime};
use support::*;
use switchboard::auth::{Action, Denied, Gatekeeper};
use switchboard::plugins::{AbiVersion, PluginGate};

const LEGACY: &str = "testing-legacy-v0_1_0";

#[tokio::test]
async fn a_0_1_0_component_decides_next_to_0_2_0_plugins() {
    let gate = PluginGate::new(
        vec![
            plugin(
                "legacy",
                LEGACY,
                &["auth", "room-policy"],
                json!({ "token": "old-token", "max_viewers": 2, "recheck_every_secs": 30 }),
            ),
            plugin(
                "tokens",
                "static-token",
                &["auth"],
                json!({ "token": "new-token" }),
            ),
            plugin(
                "rooms",
                "room-policy",
                &["room-policy"],
                json!({ "max_publishers": 1 }),
            ),
        ],
        no_upstreams(),
    )
    .await
    .unwrap();

    // Each is bound to the version it was built against.
    let bound: Vec<(String, AbiVersion)> = gate
        .plugins()
        .into_iter()
        .map(|p| (p.name, p.interface))
        .collect();
    assert_eq!(
        bound,
        [
            ("legacy".to_string(), AbiVersion::V0_1_0),
            ("tokens".to_string(), AbiVersion::V0_2_0),
            ("rooms".to_string(), AbiVersion::V0_2_0),
        ]
    );

    // Allow: the 0.1.0 plugin admits its own token; expiry and recheck come through.
    let req = request("lobby", Action::Play, Some("old-token"));
    let id = gate.admit(&req).await.unwrap();
    assert_eq!(id.subject, "legacy:lobby");
    assert!(id.attributes.is_empty(), "0.1.0 identities carry none");
    assert_eq!(id.recheck_every, Some(Duration::from_secs(30)));
    let left = id
        .expires_at
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((55..=60).contains(&left), "{left}");
    assert_eq!(gate.recheck(&req, &id).await, Ok(()));

    // The chain crosses versions: the 0.1.0 plugin's `unauthorized` passes to the 0.2.0 one.
    let id = gate
        .admit(&request("lobby", Action::Publish, Some("new-token")))
        .await
        .unwrap();
    assert_eq!(id.subject, "token:any");

    // Deny: a token neither knows gets 401 with both plugins' reasons.
    assert_eq!(
        gate.admit(&request("lobby", Action::Play, Some("nope")))
            .await,
        Err(Denied::Unauthorized(
            "legacy: invalid token; invalid token".into()
        ))
    );
    assert_eq!(
        gate.admit(&request("lobby", Action::Play, None)).await,
        Err(Denied::Unauthorized(
            "legacy: missing token; missing token".into()
        ))
    );

    // The 0.1.0 room policy gets the counts and the 0.2.0 identity, converted.
    let mut full = request("lobby", Action::Play, Some("new-token"));
    full.counts.viewers = 2;
    assert_eq!(
        gate.admit(&full).await,
        Err(Denied::Forbidden(
            "legacy: room `lobby` is full (2 viewers; token:any may not join)".into()
        ))
    );
    // And the 0.2.0 one next to it still decides.
    let mut busy = request("lobby", Action::Publish, Some("old-token"));
    busy.counts.publishers = 1;
    assert_eq!(
        gate.admit(&busy).await,
        Err(Denied::Forbidden(
            "room `lobby` already has 1 publisher(s) (max 1)".into()
        ))
    );
    // A publisher taking over is not in the counts: both versions' policies admit it.
    let mut takeover = request("lobby", Action::Publish, Some("old-token"));
    takeover.replacing = Some("token:any".into());
    assert!(gate.admit(&takeover).await.is_ok());
}

#[tokio::test]
async fn a_0_1_0_component_keeps_its_load_errors() {
    let err = PluginGate::new(
        vec![plugin("legacy", LEGACY, &["auth"], json!({ "tokn": "x" }))],
        no_upstreams(),
    )
    .await
    .err()
    .expect("bad config must fail the load")
    .to_string();
    assert!(
        err.starts_with("plugin `legacy`: rejected its config: tokn: unknown field `tokn`"),
        "{err}"
    );
}

/// The probe's `echo` mode answers with attributes telling what it was sent, then the
/// attributes from its config.
fn echo(attributes: serde_json::Value) -> switchboard::plugins::PluginConfig {
    probe("echo", json!({ "mode": "echo", "attributes": attributes }))
}

#[tokio::test]
async fn attributes_and_replacing_reach_0_2_0_plugins() {
    let upstreams = idp_upstream("http://127.0.0.1:9", 100);
    let gate = PluginGate::new(vec![echo(json!([["record", "true"]]))], upstreams.clone())
        .await
        .unwrap();
    let mut req = request("studio", Action::Publish, None);
    req.replacing = Some("old-encoder".into());
    req.counts.viewers = 3;
    let id = gate.admit(&req).await.unwrap();
    let pairs: Vec<(&str, &str)> = id
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("replacing", "old-encoder"),
            ("publishers", "0"),
            ("viewers", "3"),
            ("record", "true"),
        ]
    );

    // Attributes the host must refuse are a plugin failure (fail closed), not a decision.
    for bad in [
        json!([["record", "a\nb"]]),
        json!([["replacing", "twice"]]),
        json!([["", "x"]]),
        json!([["big", "x".repeat(1025)]]),
    ] {
        let gate = PluginGate::new(vec![echo(bad.clone())], upstreams.clone())
            .await
            .unwrap();
        assert_eq!(
            gate.admit(&req).await,
            Err(Denied::Unavailable(
                "auth plugin `echo` failed (invalid output)".into()
            )),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn jwt_claims_become_attributes() {
    let mut with_claims = claims(json!("lobby"), json!(["play"]));
    with_claims["record"] = json!(true);
    with_claims["tier"] = json!("gold");
    let minted = mint(json!({ "t": { "alg": "ES256", "claims": with_claims } }));
    let mut config = jwt_config(&minted);
    config["attribute_claims"] = json!(["record", "tier", "absent"]);
    let gate = PluginGate::new(
        vec![plugin("jwt", "auth-jwt", &["auth"], config)],
        no_upstreams(),
    )
    .await
    .unwrap();
    let id = gate
        .admit(&request("lobby", Action::Play, Some(token(&minted, "t"))))
        .await
        .unwrap();
    assert_eq!(id.subject, "alice");
    assert_eq!(
        id.attributes,
        [
            ("record".to_string(), "true".to_string()),
            ("tier".to_string(), "gold".to_string()),
        ]
    );
}
