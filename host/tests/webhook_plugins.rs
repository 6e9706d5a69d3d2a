//! `webhook` plugins: the bundled `webhook-filter` drops, reshapes and routes events to named
//! endpoints (every delivery still verifying with the Standard Webhooks reference library);
//! a plugin that traps on every event loses nothing — each event is delivered as is, and the
//! failures are counted.

mod common;
mod support;

use common::*;
use serde_json::Value;
use support::webhooks::{self as wh, Consumer};
use switchboard::client::Publisher;

fn store(dir: &tempfile::TempDir) -> String {
    format!(
        "[store]\npath = \"{}\"\n",
        dir.path().join("store.redb").display()
    )
}

async fn room_life(base: &str, room: &str) {
    let publisher = Publisher::connect(base, room, &opts()).await.unwrap();
    assert_eq!(publisher.delete().await.unwrap(), 200);
}

fn has(room: &'static str, event_type: &'static str) -> impl Fn(&[Value]) -> bool {
    move |got| {
        wh::summary(got)
            .iter()
            .any(|(r, t, _)| r == room && t == event_type)
    }
}

fn types(got: &[Value]) -> Vec<String> {
    wh::summary(got).into_iter().map(|(_, t, _)| t).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_plugin_drops_reshapes_and_routes() {
    let crm = Consumer::start(wh::SECRET, 0);
    let audit = Consumer::start(wh::SECRET, 0);
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("\"{}\"", wh::SECRET);
    let config = format!(
        "{}{}[[plugins]]\nname = \"hooks\"\npath = \"{}\"\nhooks = [\"webhook\"]\n\
         [plugins.config]\nexclude = [\"plugin.*\"]\nredact = [\"subject\"]\n\
         [plugins.config.add]\nsource = \"test\"\n\
         [[plugins.config.routes]]\nevents = [\"room.*\"]\nendpoints = [\"crm\"]\n{}",
        wh::endpoint("crm", &crm.url(), &secret, ""),
        wh::endpoint("audit", &audit.url(), &secret, ""),
        support::component("webhook-filter").display(),
        store(&dir),
    );
    let (server, base) = start(&config).await;
    room_life(&base, "r").await;
    let to_crm = crm.wait(T, has("r", "room.finished")).await;
    let to_audit = audit.wait(T, has("r", "session.ended")).await;
    let (crm_types, audit_types) = (types(&to_crm), types(&to_audit));
    assert!(
        crm_types.contains(&"room.started".to_string()),
        "{crm_types:?}"
    );
    assert!(
        crm_types.contains(&"publish.started".to_string()),
        "no route: every endpoint"
    );
    assert!(
        !audit_types.iter().any(|t| t.starts_with("room.")),
        "{audit_types:?}"
    );
    assert!(audit_types.contains(&"publish.started".to_string()));
    for d in to_crm.iter().chain(&to_audit) {
        assert!(
            !d["body"]["type"].as_str().unwrap().starts_with("plugin."),
            "excluded"
        );
        assert_eq!(d["body"]["source"], "test", "added field");
        assert!(d["body"]["data"].get("subject").is_none(), "redacted: {d}");
        assert_eq!(d["body"]["data"]["id"], d["id"], "still the event's id");
    }
    assert!(crm.refused().is_empty() && audit.refused().is_empty());
    let counters = server.outbox().unwrap().counters();
    assert!(
        counters.dropped_by_plugin >= 1,
        "plugin.loaded was dropped: {counters:?}"
    );
    assert_eq!(counters.plugin_failures, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_plugin_loses_nothing() {
    let consumer = Consumer::start(wh::SECRET, 0);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[[plugins]]\nname = \"evil\"\npath = \"{}\"\nhooks = [\"webhook\"]\n\
         [plugins.config]\nmode = \"trap\"\n{}",
        wh::endpoint("all", &consumer.url(), &format!("\"{}\"", wh::SECRET), ""),
        support::component("testing-hostile").display(),
        store(&dir),
    );
    let (server, base) = start(&config).await;
    let mut bus = server.sfu().events().subscribe();
    room_life(&base, "r").await;
    let got = consumer.wait(T, has("r", "room.finished")).await;
    let mut published = Vec::new();
    while let Ok(e) = bus.try_recv() {
        if e.room.as_deref() == Some("r") {
            published.push(e);
        }
    }
    let delivered: Vec<&Value> = got
        .iter()
        .filter(|d| d["body"]["data"]["room"] == "r")
        .collect();
    assert_eq!(delivered.len(), published.len(), "every event of the room");
    for (d, e) in delivered.iter().zip(&published) {
        assert_eq!(d["body"], e.to_json(), "delivered as is");
    }
    let counters = server.outbox().unwrap().counters();
    assert!(
        counters.plugin_failures as usize >= published.len(),
        "{counters:?}"
    );
    server.shutdown().await;
}
