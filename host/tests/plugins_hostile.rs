//! Fail-closed policy against plugins that misbehave on purpose (`plugins/testing/hostile`):
//! each misbehaviour denies with 503 (`Denied::Unavailable`) within the configured deadline,
//! and the server keeps serving everyone else.

mod support;

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use switchboard::auth::{Action, Denied, Gatekeeper};
use switchboard::plugins::{PluginConfig, PluginGate};

const TIMEOUT_MS: u64 = 50;
/// For misbehaviours that end by themselves (memory exhaustion, a trap, bad output): long
/// enough that a loaded machine still sees that outcome rather than the timeout.
const SELF_ENDING_TIMEOUT_MS: u64 = 1000;
/// Scheduling slack on a loaded 2-core CI machine, on top of the plugin's own deadline.
const SLACK: Duration = Duration::from_millis(400);

fn hostile(name: &str, mode: &str, hooks: &[&str]) -> PluginConfig {
    hostile_with_timeout(name, mode, hooks, TIMEOUT_MS)
}

fn hostile_with_timeout(name: &str, mode: &str, hooks: &[&str], timeout_ms: u64) -> PluginConfig {
    let mut p = plugin(name, "testing-hostile", hooks, json!({ "mode": mode }));
    p.limits.timeout_ms = timeout_ms;
    p.limits.memory_mib = 16;
    p
}

fn tokens() -> PluginConfig {
    plugin(
        "tokens",
        "static-token",
        &["auth"],
        json!({ "token": "good" }),
    )
}

async fn expect_unavailable(gate: &PluginGate, what: &str, kind: &str, timeout_ms: u64) {
    let started = Instant::now();
    let result = gate.admit(&request("r", Action::Play, Some("good"))).await;
    let took = started.elapsed();
    match result {
        Err(Denied::Unavailable(msg)) => assert!(msg.contains(kind), "{what}: {msg}"),
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
    assert!(
        took < Duration::from_millis(timeout_ms) + SLACK,
        "{what}: took {took:?}, deadline {timeout_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_misbehaviour_denies_within_the_deadline() {
    for (mode, kind) in [
        ("loop", "(timeout)"),
        ("memory", "(out of memory)"),
        ("trap", "(crashed)"),
        ("oversized", "(invalid output)"),
        ("empty-subject", "(invalid output)"),
    ] {
        let timeout_ms = if mode == "loop" {
            TIMEOUT_MS
        } else {
            SELF_ENDING_TIMEOUT_MS
        };
        let gate = PluginGate::new(
            vec![hostile_with_timeout("evil", mode, &["auth"], timeout_ms)],
            no_upstreams(),
        )
        .await
        .unwrap_or_else(|e| panic!("{mode}: the plugin loads (it misbehaves only per call): {e}"));
        expect_unavailable(&gate, mode, kind, timeout_ms).await;
        // The message names the plugin and the hook, for the operator reading the 503.
        let err = gate
            .admit(&request("r", Action::Play, None))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("policy unavailable: auth plugin `evil` failed"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_policy_failures_also_fail_closed() {
    let gate = PluginGate::new(
        vec![tokens(), hostile("evil-rooms", "loop", &["room-policy"])],
        no_upstreams(),
    )
    .await
    .unwrap();
    expect_unavailable(
        &gate,
        "room-policy loop",
        "room-policy plugin `evil-rooms` failed (timeout)",
        TIMEOUT_MS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_plugin_never_falls_through_to_the_next() {
    let gate = PluginGate::new(
        vec![
            hostile_with_timeout("evil", "trap", &["auth"], SELF_ENDING_TIMEOUT_MS),
            tokens(),
        ],
        no_upstreams(),
    )
    .await
    .unwrap();
    // "good" would pass the static-token plugin, but the chain stops at the failure.
    expect_unavailable(
        &gate,
        "trap before a working plugin",
        "(crashed)",
        SELF_ENDING_TIMEOUT_MS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_keeps_serving_while_plugins_misbehave() {
    let evil = Arc::new(
        PluginGate::new(vec![hostile("evil", "loop", &["auth"])], no_upstreams())
            .await
            .unwrap(),
    );
    let bomb = Arc::new(
        PluginGate::new(vec![hostile("bomb", "memory", &["auth"])], no_upstreams())
            .await
            .unwrap(),
    );
    let good = Arc::new(
        PluginGate::new(vec![tokens()], no_upstreams())
            .await
            .unwrap(),
    );

    let mut attacks = Vec::new();
    for i in 0..8 {
        let gate = if i % 2 == 0 {
            evil.clone()
        } else {
            bomb.clone()
        };
        attacks.push(tokio::spawn(async move {
            gate.admit(&request("r", Action::Play, Some("good"))).await
        }));
    }
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(300) {
        let id = good
            .admit(&request("r", Action::Play, Some("good")))
            .await
            .unwrap();
        assert_eq!(id.subject, "token:any");
        served += 1;
    }
    for attack in attacks {
        assert!(matches!(attack.await.unwrap(), Err(Denied::Unavailable(_))));
    }
    assert!(
        served >= 10,
        "only {served} good requests served alongside the attacks"
    );
    // And afterwards the hostile gates still answer (with denials) rather than wedging.
    expect_unavailable(&evil, "loop after the storm", "(timeout)", TIMEOUT_MS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_at_load_fails_the_load() {
    for (mode, reason) in [
        ("loop", "failed while loading: timed out after 2000 ms"),
        ("trap", "failed while loading: trapped"),
        (
            "memory",
            "failed while loading: exceeded its memory limit of 16 MiB",
        ),
    ] {
        let mut p = hostile("evil", mode, &["auth"]);
        p.config.insert("phase".into(), json!("configure"));
        let started = Instant::now();
        let err = PluginGate::new(vec![p], no_upstreams())
            .await
            .err()
            .expect("load fails")
            .to_string();
        assert!(
            err.starts_with(&format!("plugin `evil`: {reason}")),
            "{mode}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2) + SLACK,
            "{mode}: load took {:?}",
            started.elapsed()
        );
    }
}
