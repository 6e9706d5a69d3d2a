//! The admin API against a real server with real WHIP/WHEP peers: the bearer token (401
//! without, 404 when none is configured), rooms listed and inspected with live figures,
//! closing a room ends every session with reason `room-closed` and its events, kicking one
//! session ends only it, plugins listed with health and call statistics, and the public room
//! list (off by default, hidden rooms never listed).

mod common;
mod observe;
mod support;

use common::*;
use observe::*;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{ClientOptions, Publisher, StreamShape, Viewer};
use switchboard::events::{EndCode, Event, EventData};
use tokio::sync::broadcast::Receiver;

/// The session id: the last segment of the resource URL.
fn id_of(url: &str) -> String {
    url.rsplit('/').next().expect("a session URL").to_owned()
}

/// A publisher streaming in `room` until `stop`, connected.
async fn streaming_publisher(
    base: &str,
    room: &str,
    opts: &ClientOptions,
    stop: &Arc<AtomicBool>,
) -> Arc<Publisher> {
    let p = Arc::new(Publisher::connect(base, room, opts).await.unwrap());
    p.wait_connected(T).await.unwrap();
    let (publisher, stop) = (p.clone(), stop.clone());
    tokio::spawn(async move { publisher.stream(StreamShape::default(), &stop).await });
    p
}

/// Every event until `until` has been seen for `room` (or the timeout), in order.
async fn events_until(
    rx: &mut Receiver<Arc<Event>>,
    room: &str,
    until: impl Fn(&[Arc<Event>]) -> bool,
) -> Vec<Arc<Event>> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + T;
    while !until(&seen) {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the expected events in time")
            .expect("no lag");
        if e.room.as_deref() == Some(room) {
            seen.push(e);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_token_and_vanish_without_one() {
    let (server, base) = start(&admin_config()).await;
    let client = reqwest::Client::new();
    for (method, path) in [
        (Method::GET, "/admin/rooms"),
        (Method::GET, "/admin/rooms/x"),
        (Method::DELETE, "/admin/rooms/x"),
        (Method::DELETE, "/admin/rooms/x/sessions/y"),
        (Method::GET, "/admin/plugins"),
        (Method::POST, "/admin/plugins/reload"),
        (Method::GET, "/admin/openapi.json"),
    ] {
        let url = format!("{base}{path}");
        let resp = client.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{method} {path} without a token");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(body["error"].as_str().unwrap().contains("token"));
        let wrong = client
            .request(method.clone(), &url)
            .bearer_auth("not-the-admin-token-at-all")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
    }
    let (status, rooms) = admin(Method::GET, &format!("{base}/admin/rooms")).await;
    assert_eq!((status, rooms), (200, serde_json::json!({ "rooms": [] })));
    let (status, doc) = admin(Method::GET, &format!("{base}/admin/openapi.json")).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    server.shutdown().await;

    // No token configured: the admin API does not exist, token or not.
    let (server, base) = start("").await;
    for path in ["/admin/rooms", "/admin/plugins", "/admin/openapi.json"] {
        let resp = client
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_listed_inspected_and_closed_with_every_session_ending() {
    let (server, base) = start(&admin_config()).await;
    let mut rx = server.sfu().events().subscribe();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = streaming_publisher(&base, "stage", &opts(), &stop).await;
    let mut viewers = Vec::new();
    for _ in 0..2 {
        let v = Viewer::connect(&base, "stage", &opts()).await.unwrap();
        v.wait_media(50, 1, T).await.unwrap();
        viewers.push(v);
    }

    // The list: counts, the streams viewers get, bitrates.
    let (status, list) = admin(Method::GET, &format!("{base}/admin/rooms")).await;
    assert_eq!(status, 200);
    let room = &list["rooms"][0];
    assert_eq!(room["name"], "stage");
    assert_eq!(room["publishers"], 1);
    assert_eq!(room["viewers"], 2);
    let kinds: Vec<&str> = room["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["audio", "video"]);
    assert!(room["bitrate_bps"].as_u64().unwrap() > 0, "{room}");
    for track in room["tracks"].as_array().unwrap() {
        assert!(track["packets_in"].as_u64().unwrap() > 0, "{track}");
        assert!(track["packets_forwarded"].as_u64().unwrap() > 0, "{track}");
    }

    // One room in detail: its sessions, who they are, what they moved.
    let (status, detail) = admin(Method::GET, &format!("{base}/admin/rooms/stage")).await;
    assert_eq!(status, 200);
    assert_eq!(detail["name"], "stage");
    let sessions = detail["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[0]["kind"], "publisher");
    assert_eq!(sessions[0]["id"], id_of(&publisher.resource.url).as_str());
    for s in sessions {
        assert_eq!(s["subject"], "anonymous");
        assert_eq!(s["state"], "connected", "{s}");
        assert_eq!(s["client"], "127.0.0.1");
        assert!(s["connected_since"].as_str().unwrap().ends_with('Z'), "{s}");
        assert!(s["packets"].as_u64().unwrap() > 0, "{s}");
        assert!(s["bytes"].as_u64().unwrap() > s["packets"].as_u64().unwrap());
    }
    let viewer_ids: Vec<&str> = sessions[1..]
        .iter()
        .map(|s| {
            assert_eq!(s["kind"], "viewer");
            s["id"].as_str().unwrap()
        })
        .collect();
    for v in &viewers {
        assert!(viewer_ids.contains(&id_of(&v.resource.url).as_str()));
    }
    let (status, one) = admin(
        Method::GET,
        &format!("{base}/admin/rooms/stage/sessions/{}", viewer_ids[0]),
    )
    .await;
    assert_eq!((status, &one["id"]), (200, &sessions[1]["id"]));

    // Close it: every session ends as `room-closed`, with its events, then the room.
    let (status, closed) = admin(Method::DELETE, &format!("{base}/admin/rooms/stage")).await;
    assert_eq!(status, 200);
    assert_eq!(closed["sessions_ended"], 3);
    assert_eq!(server.sfu().session_count(), 0, "answered once they ended");
    let events = events_until(&mut rx, "stage", |seen| {
        seen.iter().any(|e| e.type_name() == "room.finished")
    })
    .await;
    let mut ended: BTreeMap<&str, Vec<EndCode>> = BTreeMap::new();
    for e in &events {
        match &e.data {
            EventData::PublishEnded { reason, .. }
            | EventData::PlayEnded { reason, .. }
            | EventData::SessionEnded { reason, .. } => {
                ended.entry(e.type_name()).or_default().push(*reason)
            }
            _ => {}
        }
    }
    assert_eq!(ended["publish.ended"], [EndCode::RoomClosed]);
    assert_eq!(ended["play.ended"], [EndCode::RoomClosed; 2]);
    assert_eq!(ended["session.ended"], [EndCode::RoomClosed; 3]);
    assert_eq!(events.last().unwrap().type_name(), "room.finished");
    for v in &viewers {
        let closed = eventually(T, || {
            !matches!(
                v.connection_state(),
                webrtc::peer_connection::RTCPeerConnectionState::Connected
            )
        })
        .await;
        assert!(closed, "the viewer's connection was closed");
    }
    let (status, body) = admin(Method::GET, &format!("{base}/admin/rooms/stage")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such room"))
    );
    let (status, _) = admin(Method::DELETE, &format!("{base}/admin/rooms/stage")).await;
    assert_eq!(status, 404);
    stop.store(true, Ordering::Relaxed);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_ends_one_session_only() {
    let (server, base) = start(&admin_config()).await;
    let mut rx = server.sfu().events().subscribe();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = streaming_publisher(&base, "hall", &opts(), &stop).await;
    let kicked = Viewer::connect(&base, "hall", &opts()).await.unwrap();
    let stays = Viewer::connect(&base, "hall", &opts()).await.unwrap();
    kicked.wait_media(20, 1, T).await.unwrap();
    stays.wait_media(20, 1, T).await.unwrap();
    let id = id_of(&kicked.resource.url);

    let (status, body) = admin(
        Method::DELETE,
        &format!("{base}/admin/rooms/hall/sessions/{id}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["room"].as_str(), body["session"].as_str()),
        (Some("hall"), Some(id.as_str()))
    );
    let events = events_until(&mut rx, "hall", |seen| {
        seen.iter().any(|e| e.type_name() == "session.ended")
    })
    .await;
    let ends: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::PlayEnded {
                session, reason, ..
            } => Some((session.clone(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [(id.clone(), EndCode::Kicked)]);
    assert!(
        eventually(T, || server.sfu().session_count() == 2).await,
        "only the kicked session ended"
    );
    let before = stays.stats.packets();
    assert!(
        eventually(T, || stays.stats.packets() > before + 20).await,
        "the other viewer keeps receiving"
    );

    // Unknown room and unknown session are told apart.
    let (status, body) = admin(
        Method::DELETE,
        &format!("{base}/admin/rooms/hall/sessions/{id}"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such session in this room"))
    );
    let (status, body) = admin(
        Method::DELETE,
        &format!("{base}/admin/rooms/nowhere/sessions/{id}"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such room"))
    );
    stop.store(true, Ordering::Relaxed);
    drop(publisher);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_listed_with_health_and_call_statistics() {
    let tokens = format!(
        "[[plugins]]\nname = \"tokens\"\npath = \"{}\"\nhooks = [\"auth\"]\n[plugins.config]\ntoken = \"t0ken-for-tests\"\n",
        support::component("static-token").display()
    );
    let (server, base) = start(&format!("{}{tokens}", admin_config())).await;
    let good = ClientOptions {
        token: Some("t0ken-for-tests".into()),
        ..opts()
    };
    let bad = ClientOptions {
        token: Some("wrong".into()),
        ..opts()
    };
    let viewer = Viewer::connect(&base, "r", &good).await.unwrap();
    assert!(Viewer::connect(&base, "r", &bad).await.is_err());
    assert!(Viewer::connect(&base, "r", &bad).await.is_err());

    let (status, list) = admin(Method::GET, &format!("{base}/admin/plugins")).await;
    assert_eq!(status, 200);
    let p = &list["plugins"][0];
    assert_eq!(p["name"], "tokens");
    assert_eq!(p["hooks"], serde_json::json!(["auth"]));
    assert!(
        p["interface"]
            .as_str()
            .unwrap()
            .starts_with("switchboard:plugin@")
    );
    assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(p["health"], "ok");
    let auth = &p["calls"][0];
    assert_eq!(auth["hook"], "auth");
    assert_eq!(auth["outcomes"]["allowed"], 1, "{auth}");
    assert_eq!(auth["outcomes"]["denied"], 2, "{auth}");
    assert_eq!(auth["calls"], 3);
    assert_eq!(auth["failures"], 0);
    assert!(auth["mean_ms"].as_f64().unwrap() > 0.0);
    assert!(auth["last_failure"].is_null());

    // The reload moved under /admin/plugins; the old path still works. Statistics survive it.
    for path in ["/admin/plugins/reload", "/admin/reload"] {
        let (status, report) = admin(Method::POST, &format!("{base}{path}")).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(report["plugins"], serde_json::json!(["tokens"]));
    }
    let (_, list) = admin(Method::GET, &format!("{base}/admin/plugins")).await;
    assert!(
        list["plugins"][0]["calls"][0]["calls"].as_u64().unwrap() >= 3,
        "kept across reloads (the reload re-checked the live viewer too): {list}"
    );
    viewer.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_room_list_shows_live_rooms_except_hidden_ones() {
    let (server, base) = start("").await;
    let resp = reqwest::get(format!("{base}/api/rooms")).await.unwrap();
    assert_eq!(resp.status(), 404, "off by default");
    server.shutdown().await;

    let mut config = test_config("[public_api]\nenabled = true\nhidden_rooms = [\"private-*\"]\n");
    config.http.cors_origins = vec!["https://lobby.example".into()];
    let server = switchboard::server::Server::start(config).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    let stop = Arc::new(AtomicBool::new(false));
    let _open = streaming_publisher(&base, "open", &opts(), &stop).await;
    let _secret = streaming_publisher(&base, "private-1", &opts(), &stop).await;
    let viewer = Viewer::connect(&base, "open", &opts()).await.unwrap();
    viewer.wait_connected(T).await.unwrap();
    // A room with only a viewer waiting is not live.
    let _waiting = Viewer::connect(&base, "empty", &opts()).await.unwrap();

    let resp = reqwest::Client::new()
        .get(format!("{base}/api/rooms"))
        .header("origin", "https://lobby.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://lobby.example"
    );
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let list: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let rooms = list["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1, "{list}");
    assert_eq!(rooms[0]["name"], "open");
    assert_eq!(rooms[0]["viewers"], 1);
    assert!(rooms[0]["live_since"].as_str().unwrap().ends_with('Z'));
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.shutdown().await;
}
