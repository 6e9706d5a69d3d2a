//! The outbox survives a consumer outage and a `kill -9` of the server in the middle of it:
//! events from before the kill and after the restart all reach the consumer once it is back —
//! verified by the Standard Webhooks reference library, every one exactly once after
//! de-duplication by `webhook-id`, in order per room.

mod common;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::webhooks::{self as wh, Consumer};
use switchboard::client::Publisher;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn healthy(base: &str) {
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never became healthy");
}

async fn room_life(base: &str, room: &str) {
    let publisher = Publisher::connect(base, room, &common::opts())
        .await
        .unwrap();
    assert_eq!(publisher.delete().await.unwrap(), 200);
}

/// The types of one publisher's visit to an empty room.
const ADMIN_TOKEN: &str = "adm1n-t0ken-for-durability";

/// Wait until the outbox counts `n` events written (`accepted` is counted after the commit).
async fn committed_at_least(base: &str, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = reqwest::Client::new()
            .get(format!("{base}/admin/webhooks"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let accepted = list["outbox"]["accepted"].as_u64().unwrap();
        if accepted >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {accepted} of {n} events written: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const LIFE: [&str; 5] = [
    "room.started",
    "publish.started",
    "publish.ended",
    "session.ended",
    "room.finished",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_down_server_killed_consumer_back_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (http, hooks) = (free_port(), free_port());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nbind = \"127.0.0.1:{http}\"\n[webrtc]\nbind_ips = [\"127.0.0.1\"]\n\
             [limits]\nrequests_per_sec_per_ip = 1000\nrequest_burst_per_ip = 1000\n\
             max_sessions_per_ip = 1000\n\
             [admin]\ntoken = \"{ADMIN_TOKEN}\"\n\
             {}[outbox]\nretry_initial_ms = 100\nretry_max_ms = 300\n\
             [store]\npath = \"{}\"\n",
            wh::endpoint(
                "crm",
                &format!("http://127.0.0.1:{hooks}/hooks"),
                &format!("\"{}\"", wh::SECRET),
                "",
            ),
            dir.path().join("store.redb").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let base = format!("http://127.0.0.1:{http}");

    // First life: the consumer is down; events pile up in the outbox, retried.
    let mut server = spawn(&config, &log);
    healthy(&base).await;
    let mut cycles: BTreeMap<&str, usize> = BTreeMap::new();
    for room in ["r0", "r1", "r2", "r0", "r1", "r2"] {
        room_life(&base, room).await;
        *cycles.entry(room).or_default() += 1;
    }
    // Kill only once the outbox says every event so far is committed to disk.
    let written = cycles.values().sum::<usize>() * LIFE.len();
    committed_at_least(&base, written as u64).await;
    server.kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.wait().unwrap();

    // Second life, same store: more events while the consumer is still down.
    let mut server = spawn(&config, &log);
    healthy(&base).await;
    room_life(&base, "r0").await;
    *cycles.entry("r0").or_default() += 1;

    // The consumer is back.
    let consumer = Consumer::start(wh::SECRET, hooks);
    let expected: usize = cycles.values().sum::<usize>() * LIFE.len();
    let got = consumer
        .wait(Duration::from_secs(30), |got| {
            let ids: HashSet<&str> = got.iter().filter_map(|d| d["id"].as_str()).collect();
            ids.len() >= expected
        })
        .await;
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();

    assert!(consumer.refused().is_empty(), "{:?}", consumer.refused());
    let mut seen = HashSet::new();
    let mut per_room: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut duplicates = 0;
    for (room, event_type, id) in wh::summary(&got) {
        if !seen.insert(id.clone()) {
            duplicates += 1; // at-least-once: the consumer de-duplicates by webhook-id
            continue;
        }
        per_room.entry(room).or_default().push((event_type, id));
    }
    eprintln!("{} deliveries, {duplicates} duplicates", got.len());
    assert_eq!(seen.len(), expected, "every event arrived: {per_room:?}");
    for (room, n) in &cycles {
        let events = &per_room[*room];
        let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        let life: Vec<&str> = LIFE.iter().copied().cycle().take(n * LIFE.len()).collect();
        assert_eq!(types, life, "room {room}: its events in order");
        let ids: Vec<&String> = events.iter().map(|(_, id)| id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(
            ids, sorted,
            "room {room}: ids (time-ordered) arrive in order"
        );
    }
}
