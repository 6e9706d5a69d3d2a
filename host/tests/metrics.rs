//! `/metrics` and `/readyz` against a real server with real peers: the text parses with
//! `prometheus_client`'s own parser, every family is one of ours, and the counters move with
//! real traffic (RTP in and out, joins, PLI, plugin calls); readiness reports each
//! dependency's state and turns `degraded` while a plugin is failing.

mod common;
mod observe;
mod support;

use common::*;
use observe::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{ClientOptions, Publisher, StreamShape, Viewer};

async fn scrape(base: &str) -> Value {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    parse_metrics(&resp.text().await.unwrap())
}

fn value(parsed: &Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(parsed, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

fn tokens_plugin() -> String {
    format!(
        "[[plugins]]\nname = \"tokens\"\npath = \"{}\"\nhooks = [\"auth\"]\n[plugins.config]\ntoken = \"t0ken-for-tests\"\n",
        support::component("static-token").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_real_traffic() {
    let (server, base) = start(&tokens_plugin()).await;
    let before = scrape(&base).await;
    assert_eq!(value(&before, "switchboard_rooms", &[]), 0.0);
    assert_eq!(
        value(&before, "switchboard_build_info", &[]),
        1.0,
        "version label present"
    );

    let with_token = ClientOptions {
        token: Some("t0ken-for-tests".into()),
        ..opts()
    };
    let publisher = Arc::new(Publisher::connect(&base, "m", &with_token).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let viewer = Viewer::connect(&base, "m", &with_token).await.unwrap();
    viewer.wait_media(100, 1, T).await.unwrap();
    viewer.request_keyframe().await.unwrap();
    let bad = ClientOptions {
        token: Some("wrong".into()),
        ..opts()
    };
    assert!(Viewer::connect(&base, "m", &bad).await.is_err());

    let during = scrape(&base).await;
    let families = during["families"].as_object().unwrap();
    for name in families.keys() {
        assert!(name.starts_with("switchboard_"), "{name}");
    }
    assert_eq!(families["switchboard_join_seconds"], "histogram");
    assert_eq!(families["switchboard_rtp_packets"], "counter");
    assert_eq!(value(&during, "switchboard_rooms", &[]), 1.0);
    assert_eq!(
        value(&during, "switchboard_sessions", &[("kind", "publisher")]),
        1.0
    );
    assert_eq!(
        value(&during, "switchboard_sessions", &[("kind", "viewer")]),
        1.0
    );
    let rtp_in = value(
        &during,
        "switchboard_rtp_packets_total",
        &[("direction", "in")],
    );
    let rtp_out = value(
        &during,
        "switchboard_rtp_packets_total",
        &[("direction", "out")],
    );
    assert!(
        rtp_in >= 100.0 && rtp_out >= 100.0,
        "in {rtp_in}, out {rtp_out}"
    );
    assert!(
        value(
            &during,
            "switchboard_rtp_bytes_total",
            &[("direction", "out")]
        ) > rtp_out,
        "bytes exceed packets"
    );
    assert_eq!(
        value(
            &during,
            "switchboard_join_seconds_count",
            &[("kind", "publisher")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &during,
            "switchboard_join_seconds_count",
            &[("kind", "viewer")]
        ),
        1.0,
        "the refused join is not a join"
    );
    assert!(
        value(
            &during,
            "switchboard_join_seconds_sum",
            &[("kind", "viewer")]
        ) > 0.0
    );
    assert!(
        value(&during, "switchboard_pli_sent_total", &[]) >= 1.0,
        "PLI on join"
    );
    assert!(
        eventually(T, || true).await
            && value(&during, "switchboard_pli_received_total", &[]) >= 1.0,
        "the viewer's PLI"
    );
    let calls = |parsed: &Value, outcome| {
        value(
            parsed,
            "switchboard_plugin_calls_total",
            &[("plugin", "tokens"), ("hook", "auth"), ("outcome", outcome)],
        )
    };
    assert_eq!(calls(&during, "allowed"), 2.0);
    assert_eq!(calls(&during, "denied"), 1.0);
    assert_eq!(calls(&during, "timeout"), 0.0);
    assert_eq!(
        value(
            &during,
            "switchboard_plugin_call_seconds_count",
            &[("plugin", "tokens"), ("hook", "auth")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &during,
            "switchboard_plugin_healthy",
            &[("plugin", "tokens")]
        ),
        1.0
    );

    // Counters keep moving with the traffic, and never go back when sessions end.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = scrape(&base).await;
    let rtp_out_later = value(
        &later,
        "switchboard_rtp_packets_total",
        &[("direction", "out")],
    );
    assert!(rtp_out_later > rtp_out, "{rtp_out} -> {rtp_out_later}");
    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();
    viewer.delete().await.unwrap();
    publisher.delete().await.unwrap();
    assert!(eventually(T, || server.sfu().session_count() == 0).await);
    assert!(eventually(T, || server.sfu().rooms().is_empty()).await);
    let after = scrape(&base).await;
    assert_eq!(value(&after, "switchboard_rooms", &[]), 0.0);
    assert_eq!(
        value(&after, "switchboard_sessions", &[("kind", "viewer")]),
        0.0
    );
    assert_eq!(
        value(
            &after,
            "switchboard_sessions_started_total",
            &[("kind", "viewer")]
        ),
        1.0
    );
    let rtp_out_after = value(
        &after,
        "switchboard_rtp_packets_total",
        &[("direction", "out")],
    );
    assert!(
        rtp_out_after >= rtp_out_later,
        "{rtp_out_later} -> {rtp_out_after}"
    );
    assert!(
        value(&after, "switchboard_pli_sent_total", &[])
            >= value(&during, "switchboard_pli_sent_total", &[])
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_ask_for_a_token_or_be_off() {
    let (server, base) = start("[metrics]\ntoken = \"scrape-t0ken\"\n").await;
    let client = reqwest::Client::new();
    let url = format!("{base}/metrics");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let resp = client
        .get(&url)
        .bearer_auth("scrape-t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    parse_metrics(&resp.text().await.unwrap());
    server.shutdown().await;
    let (server, base) = start("[metrics]\nenabled = false\n").await;
    assert_eq!(
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .status(),
        404
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_each_dependency_and_a_failing_plugin() {
    // A plugin that traps on every call: the server serves, its requests are refused.
    let hostile = format!(
        "[[plugins]]\nname = \"evil\"\npath = \"{}\"\nhooks = [\"auth\"]\n[plugins.config]\nmode = \"trap\"\n",
        support::component("testing-hostile").display()
    );
    let (server, base) = start(&hostile).await;
    let ready = |base: String| async move {
        let resp = reqwest::get(format!("{base}/readyz")).await.unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).unwrap(),
        )
    };
    let (status, body) = ready(base.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["checks"]["server"]["status"], "ok");
    assert_eq!(body["checks"]["plugins"]["items"]["evil"], "ok");

    let refused = reqwest::Client::new()
        .post(format!("{base}/whep/r"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503, "fails closed");
    let (status, body) = ready(base.clone()).await;
    assert_eq!(status, 200, "degraded is still serving");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["plugins"]["status"], "degraded");
    assert_eq!(body["checks"]["plugins"]["items"]["evil"], "failing");
    assert!(
        body["checks"]["plugins"]["message"]
            .as_str()
            .unwrap()
            .contains("evil"),
        "{body}"
    );
    let metrics = scrape(&base).await;
    assert_eq!(
        value(
            &metrics,
            "switchboard_plugin_healthy",
            &[("plugin", "evil")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &metrics,
            "switchboard_plugin_calls_total",
            &[("plugin", "evil"), ("hook", "auth"), ("outcome", "trap")]
        ),
        1.0
    );

    // Shutting down: unavailable, 503.
    let checks = server.checks().clone();
    server.shutdown().await;
    let report = checks.report();
    assert_eq!(
        serde_json::to_value(&report).unwrap()["status"],
        "unavailable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_and_a_failing_endpoint_show_in_metrics_and_readiness() {
    // A consumer that takes everything, and an address where nobody listens.
    let consumer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let consumer_url = format!("http://{}/hook", consumer.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
    );
    tokio::spawn(async move { axum::serve(consumer, app).await.unwrap() });
    let nobody = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down_url = format!("http://{}/hook", nobody.local_addr().unwrap());
    drop(nobody);
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let (server, base) = start(&format!(
        "[store]\npath = \"{}\"\n[outbox]\nretry_initial_ms = 50\nretry_max_ms = 200\n\
         [[webhooks]]\nname = \"crm\"\nurl = \"{consumer_url}\"\nsecret = \"{secret}\"\n\
         [[webhooks]]\nname = \"down\"\nurl = \"{down_url}\"\nsecret = \"{secret}\"\n",
        dir.path().join("store.redb").display()
    ))
    .await;
    let publisher = Publisher::connect(&base, "w", &opts()).await.unwrap();
    publisher.wait_connected(T).await.unwrap();

    let mut parsed = Value::Null;
    let moved = async {
        loop {
            parsed = scrape(&base).await;
            let delivered = sample(
                &parsed,
                "switchboard_webhook_deliveries_total",
                &[("endpoint", "crm"), ("outcome", "delivered")],
            );
            let failed = sample(
                &parsed,
                "switchboard_webhook_deliveries_total",
                &[("endpoint", "down"), ("outcome", "failed")],
            );
            if delivered >= Some(2.0) && failed >= Some(2.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(T, moved)
        .await
        .unwrap_or_else(|_| panic!("webhook figures did not move:\n{parsed}"));
    assert_eq!(
        value(
            &parsed,
            "switchboard_webhook_deliveries_total",
            &[("endpoint", "down"), ("outcome", "delivered")]
        ),
        0.0
    );
    assert!(
        value(&parsed, "switchboard_outbox_depth", &[]) >= 1.0,
        "the down endpoint's deliveries wait"
    );

    let resp = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    let webhooks = &body["checks"]["webhooks"];
    assert_eq!(webhooks["items"]["crm"], "active", "{body}");
    assert_eq!(webhooks["items"]["down"], "failing", "{body}");
    assert!(
        webhooks["message"].as_str().unwrap().contains("down"),
        "{body}"
    );
    publisher.close().await;
    server.shutdown().await;
}
