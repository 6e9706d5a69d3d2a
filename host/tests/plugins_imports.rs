//! Host capabilities through a real component (`plugins/testing/probe`): key-value store with
//! TTL and compare-and-set, HTTP to named upstreams only, rate-limited logging, clock.

mod support;

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;
use switchboard::auth::{Action, Denied, Gatekeeper};
use switchboard::plugins::PluginGate;

#[tokio::test]
async fn kv_gives_replay_protection_that_survives_reload() {
    let upstreams = idp_upstream("http://127.0.0.1:9", 100);
    let plugins = vec![probe("once", json!({ "mode": "one-time" }))];
    let gate = PluginGate::new(plugins.clone(), upstreams.clone())
        .await
        .unwrap();
    let req = request("r", Action::Play, Some("ticket-1"));
    assert_eq!(gate.admit(&req).await.unwrap().subject, "ticket-1");
    assert_eq!(
        gate.admit(&req).await,
        Err(Denied::Unauthorized("token already used".into()))
    );
    assert!(
        gate.admit(&request("r", Action::Play, Some("ticket-2")))
            .await
            .is_ok()
    );

    gate.reload_with(plugins, upstreams.clone()).await.unwrap();
    assert_eq!(
        gate.admit(&req).await,
        Err(Denied::Unauthorized("token already used".into()))
    );

    // Stores are per plugin name: another plugin has never seen ticket-1.
    let other = PluginGate::new(
        vec![probe("twice", json!({ "mode": "one-time" }))],
        upstreams,
    )
    .await
    .unwrap();
    assert!(other.admit(&req).await.is_ok());
}

#[tokio::test]
async fn kv_entries_expire() {
    let upstreams = idp_upstream("http://127.0.0.1:9", 100);
    let gate = PluginGate::new(
        vec![probe("once", json!({ "mode": "one-time", "ttl_secs": 1 }))],
        upstreams,
    )
    .await
    .unwrap();
    let req = request("r", Action::Play, Some("ticket"));
    assert!(gate.admit(&req).await.is_ok());
    assert!(gate.admit(&req).await.is_err());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        gate.admit(&req).await.is_ok(),
        "the entry expired, so the ticket is fresh again"
    );
}

#[tokio::test]
async fn http_reaches_only_named_upstreams_with_host_headers() {
    let idp = spawn_idp().await;
    let gate = PluginGate::new(
        vec![probe(
            "remote",
            json!({ "mode": "http", "upstream": "idp" }),
        )],
        idp_upstream(&idp, 1_000),
    )
    .await
    .unwrap();
    // The host added x-api-key; the plugin never saw it.
    assert_eq!(
        gate.admit(&request("r", Action::Play, Some("abc")))
            .await
            .unwrap()
            .subject,
        "via-http:abc"
    );
    assert_eq!(
        gate.admit(&request("r", Action::Play, Some("banned")))
            .await,
        Err(Denied::Forbidden("upstream said 403".into()))
    );

    // An upstream the plugin names but the operator never declared.
    let stray = PluginGate::new(
        vec![probe(
            "stray",
            json!({ "mode": "http", "upstream": "elsewhere" }),
        )],
        idp_upstream(&idp, 1_000),
    )
    .await
    .unwrap();
    let Err(Denied::Unauthorized(msg)) =
        stray.admit(&request("r", Action::Play, Some("abc"))).await
    else {
        panic!("an undeclared upstream must be refused");
    };
    assert!(
        msg.starts_with("http: ") && msg.contains("UnknownUpstream") && msg.contains("elsewhere"),
        "{msg}"
    );
}

#[tokio::test]
async fn slow_upstreams_time_out() {
    let idp = spawn_idp().await;
    // The upstream's own timeout (100 ms) fires first: the plugin gets an error and decides.
    let gate = PluginGate::new(
        vec![probe(
            "remote",
            json!({ "mode": "http", "upstream": "idp" }),
        )],
        idp_upstream(&idp, 100),
    )
    .await
    .unwrap();
    let Err(Denied::Unauthorized(msg)) =
        gate.admit(&request("r", Action::Play, Some("slow"))).await
    else {
        panic!("a timed-out fetch must deny");
    };
    assert!(msg.contains("Timeout"), "{msg}");

    // The plugin's deadline (300 ms) is shorter than the upstream's: the call itself fails.
    let mut p = probe("remote", json!({ "mode": "http", "upstream": "idp" }));
    p.limits.timeout_ms = 300;
    let gate = PluginGate::new(vec![p], idp_upstream(&idp, 10_000))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        gate.admit(&request("r", Action::Play, Some("stall"))).await,
        Err(Denied::Unavailable(
            "auth plugin `remote` failed (timeout)".into()
        ))
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Counts events the plugin logged through the host.
struct PluginLines(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PluginLines {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() == "switchboard::plugin" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test]
async fn plugin_logging_is_rate_limited() {
    use tracing_subscriber::layer::SubscriberExt;
    let lines = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(PluginLines(lines.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let gate = PluginGate::new(
        vec![probe(
            "chatty",
            json!({ "mode": "log-flood", "lines": 1000 }),
        )],
        idp_upstream("http://127.0.0.1:9", 100),
    )
    .await
    .unwrap();
    assert_eq!(
        gate.admit(&request("r", Action::Play, None))
            .await
            .unwrap()
            .subject,
        "logger"
    );
    let logged = lines.load(Ordering::Relaxed);
    // A burst of 50 gets through (plus a few refilled tokens); the other ~950 are dropped.
    assert!((50..=60).contains(&logged), "{logged} plugin lines logged");
}

#[tokio::test]
async fn clock_gives_wall_time() {
    let gate = PluginGate::new(
        vec![probe(
            "clocked",
            json!({ "mode": "clock", "ttl_secs": 120 }),
        )],
        idp_upstream("http://127.0.0.1:9", 100),
    )
    .await
    .unwrap();
    let id = gate.admit(&request("r", Action::Play, None)).await.unwrap();
    let in_secs = id
        .expires_at
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((115..=120).contains(&in_secs), "{in_secs}");
    assert!(id.expires_at.unwrap() > UNIX_EPOCH);
}

#[tokio::test]
async fn wasi_components_load_with_nothing_granted() {
    // A component written without the SDK that imports WASI p2 (as other languages' toolchains
    // produce): it loads, and sees no environment, arguments, directories or sockets.
    let gate = PluginGate::new(
        vec![plugin("wasi", "testing-wasi-probe", &["auth"], json!({}))],
        no_upstreams(),
    )
    .await
    .unwrap();
    let id = gate.admit(&request("r", Action::Play, None)).await.unwrap();
    assert_eq!(
        id.subject,
        "env=0 args=0 preopens=0 random=8 tcp=denied clock=ok"
    );
}
