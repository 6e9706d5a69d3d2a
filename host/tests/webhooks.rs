//! Webhook delivery: every delivery verifies with the Standard Webhooks reference library
//! (`standardwebhooks`, Python) under a rotated secret, while a tampered body or an old
//! timestamp does not; a room's events arrive in order with `webhook-id` = the event id; the
//! endpoints' filters; `Retry-After` on 503; `410 Gone` disables an endpoint, whose parked
//! deliveries are listed and replayed in order; an endpoint down longer than
//! `outbox.park_after_secs` is parked, listed and replayed through the admin API once it is
//! back.

mod common;
mod observe;
mod support;

use axum::http::StatusCode;
use common::*;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::webhooks::{self as wh, Consumer};
use switchboard::client::Publisher;
use switchboard::events::webhook::EndpointState;

fn store(dir: &tempfile::TempDir) -> String {
    format!(
        "[store]\npath = \"{}\"\n",
        dir.path().join("store.redb").display()
    )
}

/// A room's life in events: a publisher comes and goes.
async fn room_life(base: &str, room: &str) {
    let publisher = Publisher::connect(base, room, &opts()).await.unwrap();
    assert_eq!(publisher.delete().await.unwrap(), 200);
}

fn has_finished(room: &'static str) -> impl Fn(&[Value]) -> bool {
    move |got| {
        wh::summary(got)
            .iter()
            .any(|(r, t, _)| r == room && t == "room.finished")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_verify_with_the_reference_library_and_tampering_does_not() {
    // The consumer already moved to the new secret; the server signs with old and new.
    let all = Consumer::start(wh::NEW_SECRET, 0);
    let rooms_only = Consumer::start(wh::SECRET, 0);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}{}",
        wh::endpoint(
            "all",
            &all.url(),
            &format!("[\"{}\", \"{}\"]", wh::SECRET, wh::NEW_SECRET),
            ""
        ),
        wh::endpoint(
            "rooms",
            &rooms_only.url(),
            &format!("\"{}\"", wh::SECRET),
            "events = [\"room.*\"]"
        ),
        store(&dir)
    );
    let (server, base) = start(&config).await;
    let mut bus = server.sfu().events().subscribe();
    room_life(&base, "stage").await;

    let got = all.wait(T, has_finished("stage")).await;
    assert!(all.refused().is_empty(), "{:?}", all.refused());
    let delivered: Vec<String> = wh::summary(&got)
        .into_iter()
        .filter(|(r, _, _)| r == "stage")
        .map(|(_, _, id)| id)
        .collect();
    let mut published = Vec::new();
    while let Ok(e) = bus.try_recv() {
        if e.room.as_deref() == Some("stage") {
            published.push(e);
        }
    }
    let published_ids: Vec<String> = published.iter().map(|e| e.id.clone()).collect();
    let mut unique = delivered.clone();
    unique.dedup();
    assert_eq!(unique, published_ids, "every event of the room, in order");
    for (d, e) in got.iter().zip(&published) {
        assert_eq!(d["id"], e.id.as_str(), "webhook-id is the event id");
        assert_eq!(d["body"], e.to_json(), "the body is the event's JSON");
        assert_eq!(d["body"]["data"]["id"], d["id"]);
        let signatures: Vec<&str> = d["signature"].as_str().unwrap().split(' ').collect();
        assert_eq!(signatures.len(), 2, "one v1 signature per secret");
        assert!(signatures.iter().all(|s| s.starts_with("v1,")));
    }

    // The reference library refuses what was not signed as it is.
    let first = &got[0];
    let (id, timestamp, signature, raw) = (
        first["id"].as_str().unwrap(),
        first["timestamp"].as_str().unwrap(),
        first["signature"].as_str().unwrap(),
        first["raw"].as_str().unwrap(),
    );
    let headers = |ts: &str, sig: &str| {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig.to_string()),
        ]
    };
    let check = |h: Vec<(&str, String)>, body: &str| {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        wh::verify(wh::NEW_SECRET, &h, body)
    };
    assert_eq!(check(headers(timestamp, signature), raw), Ok(()));
    let tampered = raw.replace("stage", "stagf");
    let err = check(headers(timestamp, signature), &tampered).unwrap_err();
    assert!(err.contains("signature"), "{err}");
    let old = (timestamp.parse::<u64>().unwrap() - 3600).to_string();
    let secret = switchboard::events::sign::Secret::parse(wh::NEW_SECRET).unwrap();
    let old_sig =
        switchboard::events::sign::signature(&[secret], id, old.parse().unwrap(), raw.as_bytes());
    let err = check(headers(&old, &old_sig), raw).unwrap_err();
    assert!(err.contains("too old"), "{err}");

    // The filtered endpoint got the room events only, verified under the old secret.
    let rooms = rooms_only.wait(T, has_finished("stage")).await;
    let types: Vec<String> = wh::summary(&rooms).into_iter().map(|(_, t, _)| t).collect();
    assert!(
        !types.is_empty() && types.iter().all(|t| t.starts_with("room.")),
        "{types:?}"
    );
    assert!(rooms_only.refused().is_empty());
    server.shutdown().await;
}

/// A consumer whose answers the test scripts: `(status, Retry-After)` in turn, then 204.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    always: Mutex<Option<u16>>,
    got: Mutex<Vec<(Instant, u16, Value)>>,
}

async fn scripted() -> (Arc<Scripted>, String) {
    use axum::extract::State;
    use axum::response::{IntoResponse, Response};
    async fn hook(State(s): State<Arc<Scripted>>, body: String) -> Response {
        let (status, after) = match *s.always.lock().unwrap() {
            Some(code) => (code, None),
            None => s.answers.lock().unwrap().pop_front().unwrap_or((204, None)),
        };
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        s.got.lock().unwrap().push((Instant::now(), status, body));
        let mut r = StatusCode::from_u16(status).unwrap().into_response();
        if let Some(after) = after {
            r.headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        if status == 302 {
            r.headers_mut()
                .insert("location", "http://127.0.0.1:9/elsewhere".parse().unwrap());
        }
        r
    }
    let state = Arc::new(Scripted::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, url)
}

fn delivered(s: &Scripted, status: u16) -> Vec<(Instant, Value)> {
    s.got
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, code, _)| *code == status)
        .map(|(at, _, body)| (*at, body.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_gone_redirects_parking_and_replay() {
    let (flaky, flaky_url) = scripted().await;
    let (gone, gone_url) = scripted().await;
    let (moved, moved_url) = scripted().await;
    // Twice 503 with Retry-After: 1, then accepted. Backoff alone would wait 5 s.
    flaky
        .answers
        .lock()
        .unwrap()
        .extend([(503, Some("1")), (503, Some("1"))]);
    *gone.always.lock().unwrap() = Some(410);
    *moved.always.lock().unwrap() = Some(302);
    let secret = format!("\"{}\"", wh::SECRET);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}{}{}[outbox]\nretry_initial_ms = 5000\nretry_max_ms = 5000\npark_after_secs = 60\n",
        wh::endpoint("flaky", &flaky_url, &secret, "events = [\"room.started\"]"),
        wh::endpoint("gone", &gone_url, &secret, ""),
        wh::endpoint("moved", &moved_url, &secret, "events = [\"room.started\"]"),
        store(&dir)
    );
    let (server, base) = start(&config).await;
    let outbox = server.outbox().expect("webhooks configured").clone();
    room_life(&base, "r1").await;
    room_life(&base, "r1").await;

    // Retry-After is honoured: about a second between attempts, not the 5 s backoff.
    assert!(eventually(T, || delivered(&flaky, 204).len() == 2).await);
    let attempts = flaky.got.lock().unwrap().clone();
    let first_try = attempts[0].0;
    let success = delivered(&flaky, 204)[0].0;
    let waited = success - first_try;
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_millis(4500),
        "{waited:?}"
    );

    // 410 disables the endpoint; everything for it is parked, in order.
    assert!(
        eventually(T, || {
            let s = &outbox.endpoints()[1];
            s.state == EndpointState::Disabled && s.parked >= 10 && s.queued == 0
        })
        .await,
        "{:?}",
        outbox.endpoints()[1]
    );
    assert_eq!(delivered(&gone, 410).len(), 1, "one 410 is enough");
    let parked = outbox.parked("gone", None, 100).unwrap().unwrap();
    assert!(parked.len() >= 10);
    let page = outbox
        .parked("gone", Some(parked[3].seq), 2)
        .unwrap()
        .unwrap();
    assert_eq!(page, parked[4..6].to_vec(), "pages continue after `after`");
    assert!(outbox.parked("nope", None, 1).unwrap().is_none());

    // A redirect is a failure, never followed.
    assert!(
        eventually(T, || outbox.endpoints()[2]
            .last_error
            .as_deref()
            .is_some_and(
                |e| e.contains("HTTP 302") && e.contains("not followed")
            ))
        .await
    );
    assert_eq!(outbox.endpoints()[2].delivered, 0);

    // The consumer is back: a replay delivers everything parked, in order.
    *gone.always.lock().unwrap() = None;
    let n = outbox.replay("gone").await.unwrap();
    assert_eq!(n as usize, parked.len());
    assert!(eventually(T, || delivered(&gone, 204).len() >= parked.len()).await);
    let ids: Vec<String> = delivered(&gone, 204)
        .iter()
        .map(|(_, b)| b["data"]["id"].as_str().unwrap().to_string())
        .collect();
    let parked_ids: Vec<String> = parked.iter().map(|p| p.event_id.clone()).collect();
    assert_eq!(ids[..parked_ids.len()], parked_ids[..]);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "in order");
    let status = &outbox.endpoints()[1];
    assert_eq!(status.state, EndpointState::Active);
    assert_eq!(status.parked, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_down_too_long_is_parked_then_replayed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}{}[outbox]\nretry_initial_ms = 100\nretry_max_ms = 200\npark_after_secs = 1\n",
        observe::admin_config(),
        wh::endpoint(
            "later",
            &format!("http://127.0.0.1:{port}/hooks"),
            &format!("\"{}\"", wh::SECRET),
            ""
        ),
        store(&dir)
    );
    let (server, base) = start(&config).await;
    let outbox = server.outbox().unwrap().clone();
    room_life(&base, "a").await;
    room_life(&base, "b").await;
    assert!(
        eventually(T, || {
            let s = &outbox.endpoints()[0];
            s.state == EndpointState::Parked && s.queued == 0 && s.parked >= 10
        })
        .await,
        "{:?}",
        outbox.endpoints()
    );
    // What an operator sees: the endpoint parked with its last error, then the parked
    // deliveries page by page.
    let (code, list) =
        observe::admin(reqwest::Method::GET, &format!("{base}/admin/webhooks")).await;
    assert_eq!(code, 200, "{list}");
    let endpoint = &list["endpoints"][0];
    assert_eq!(endpoint["name"], "later");
    assert_eq!(endpoint["state"], "parked");
    assert_eq!(endpoint["queued"], 0);
    assert!(endpoint["last_error"].is_string() && endpoint["failing_since"].is_string());
    assert!(list["outbox"]["parked"].as_u64().unwrap() >= 10, "{list}");
    let parked = outbox.parked("later", None, 1000).unwrap().unwrap();
    assert_eq!(endpoint["parked"].as_u64().unwrap() as usize, parked.len());
    let (code, first) = observe::admin(
        reqwest::Method::GET,
        &format!("{base}/admin/webhooks/later/parked?limit=3"),
    )
    .await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["deliveries"].as_array().unwrap().len(), 3);
    assert_eq!(first["deliveries"][0]["event_id"], parked[0].event_id);
    assert!(
        first["deliveries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("failing for over 1 s"),
        "{first}"
    );
    let next = first["next_after"].as_u64().unwrap();
    let (_, second) = observe::admin(
        reqwest::Method::GET,
        &format!("{base}/admin/webhooks/later/parked?limit=3&after={next}"),
    )
    .await;
    assert_eq!(second["deliveries"][0]["event_id"], parked[3].event_id);
    for bad in [
        "later/parked?limit=0",
        "later/parked?limit=501",
        "later/parked?after=x",
    ] {
        let (code, body) = observe::admin(
            reqwest::Method::GET,
            &format!("{base}/admin/webhooks/{bad}"),
        )
        .await;
        assert_eq!(code, 400, "{bad}: {body}");
    }
    for unknown in ["nope/parked", "nope/replay"] {
        let method = if unknown.ends_with("replay") {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let (code, body) =
            observe::admin(method, &format!("{base}/admin/webhooks/{unknown}")).await;
        assert_eq!(code, 404, "{unknown}: {body}");
    }

    let consumer = Consumer::start(wh::SECRET, port);
    let (code, replayed) = observe::admin(
        reqwest::Method::POST,
        &format!("{base}/admin/webhooks/later/replay"),
    )
    .await;
    assert_eq!(code, 200, "{replayed}");
    assert_eq!(
        replayed["replayed"].as_u64().unwrap() as usize,
        parked.len()
    );
    let got = consumer.wait(T, |got| got.len() >= parked.len()).await;
    for room in ["a", "b"] {
        let ids: Vec<String> = wh::summary(&got)
            .into_iter()
            .filter(|(r, _, _)| r == room)
            .map(|(_, _, id)| id)
            .collect();
        let expected: Vec<String> = parked
            .iter()
            .filter(|p| p.room.as_deref() == Some(room))
            .map(|p| p.event_id.clone())
            .collect();
        assert_eq!(
            ids,
            expected,
            "room {room}: every event, in order; got {:?} refused {:?} status {:?} parked {:?}",
            wh::summary(&got),
            consumer.refused(),
            outbox.endpoints(),
            outbox.parked("later", None, 100)
        );
    }
    assert!(consumer.refused().is_empty());
    server.shutdown().await;
}
