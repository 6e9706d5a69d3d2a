//! TURN REST credentials against a real coturn (`use-auth-secret`): clients that may only
//! relay publish and play with the credentials the server minted for their identity; coturn
//! refuses expired ones. coturn also answers the STUN query of public-address discovery.
//! Chromium on the embedded pages with `relay=1` publishes and plays through it too.

mod common;
mod support;

use common::*;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard::client::{ClientOptions, Publisher, StreamShape, Viewer};
use switchboard::ice::turn_rest::TurnRest;
use webrtc::peer_connection::RTCIceServer;

const TURN_SECRET: &str = "coturn-static-auth-secret-for-tests";
const TOKEN: &str = "t0ken-for-turn-tests";

fn config(turn_port: u16) -> String {
    format!(
        "[webrtc.turn]\nurls = [\"turn:127.0.0.1:{turn_port}?transport=udp\"]\nsecret = \"{TURN_SECRET}\"\nttl_secs = 600\n\
         [[plugins]]\nname = \"tokens\"\npath = \"{}\"\nhooks = [\"auth\"]\n[plugins.config]\ntoken = \"{TOKEN}\"\n",
        support::component("static-token").display()
    )
}

/// The `Link` values of an `OPTIONS` on `url`.
async fn options_links(url: &str, token: Option<&str>) -> Vec<String> {
    let mut req = reqwest::Client::new().request(reqwest::Method::OPTIONS, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("OPTIONS");
    assert_eq!(resp.status(), 204);
    resp.headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn quoted<'a>(link: &'a str, param: &str) -> &'a str {
    let start = link.find(&format!("{param}=\"")).expect(param) + param.len() + 2;
    let len = link[start..].find('"').unwrap();
    &link[start..start + len]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_clients_publish_and_play_through_coturn_with_minted_credentials() {
    let turn = support::servers::coturn(TURN_SECRET).await;
    let (server, base) = start(&config(turn.port)).await;

    // Only an authenticated caller is handed credentials, minted for its subject.
    let anonymous = options_links(&format!("{base}/whip/relayed"), None).await;
    assert!(
        !anonymous.iter().any(|l| l.contains("username=")),
        "no credentials without a valid token: {anonymous:?}"
    );
    let links = options_links(&format!("{base}/whip/relayed"), Some(TOKEN)).await;
    let turn_link = links
        .iter()
        .find(|l| l.starts_with(&format!("<turn:127.0.0.1:{}", turn.port)))
        .unwrap_or_else(|| panic!("a TURN link: {links:?}"));
    let username = quoted(turn_link, "username");
    let (expiry, subject) = username.split_once(':').unwrap();
    assert_eq!(subject, "token:any");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "expires in ttl_secs"
    );
    assert_eq!(quoted(turn_link, "credential-type"), "password");

    let relay = ClientOptions {
        token: Some(TOKEN.into()),
        ice_servers_from_options: true,
        relay_only: true,
        ..opts()
    };
    let publisher = Arc::new(Publisher::connect(&base, "relayed", &relay).await.unwrap());
    publisher
        .wait_connected(T)
        .await
        .expect("publisher connects through the relay");
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let viewer = Viewer::connect(&base, "relayed", &relay).await.unwrap();
    viewer
        .wait_connected(T)
        .await
        .expect("viewer connects through the relay");
    viewer
        .wait_media(50, 1, T)
        .await
        .expect("media flows through the relay");
    assert!(viewer.stats.audio_packets.load(Ordering::Relaxed) > 0);

    // coturn allocated for the minted user: the relay really carried the media.
    let log = turn.log();
    assert!(
        log.contains(&format!("user <{username}>")) || log.contains(":token:any>"),
        "coturn saw the minted username; log:\n{log}"
    );
    assert!(log.contains("ALLOCATE processed, success"), "{log}");

    stop.store(true, Ordering::Relaxed);
    let _ = streaming.await;
    viewer.close().await;
    publisher.pc.close().await.ok();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_refuses_expired_credentials_and_answers_stun() {
    let turn = support::servers::coturn(TURN_SECRET).await;
    let stun = format!("stun:127.0.0.1:{}", turn.port);
    let seen = switchboard::ice::stun::public_ip(&stun, IpAddr::from([127, 0, 0, 1]))
        .await
        .expect("coturn answers a STUN binding request");
    assert_eq!(seen, IpAddr::from([127, 0, 0, 1]));

    let (server, base) = start(&config(turn.port)).await;
    let rest = TurnRest::new(TURN_SECRET, Duration::from_secs(600));
    let expired = rest.mint_expiring("late", SystemTime::now() - Duration::from_secs(60));
    let relay_with = |c: &switchboard::ice::turn_rest::TurnCredential| ClientOptions {
        token: Some(TOKEN.into()),
        relay_only: true,
        ice_servers: vec![RTCIceServer {
            urls: vec![format!("turn:127.0.0.1:{}?transport=udp", turn.port)],
            username: c.username.clone(),
            credential: c.password.clone(),
        }],
        ..opts()
    };
    // Expired: no relay candidate, so no connection.
    let publisher = Publisher::connect(&base, "late", &relay_with(&expired))
        .await
        .expect("the offer is still answered");
    assert!(
        publisher
            .wait_connected(Duration::from_secs(4))
            .await
            .is_err(),
        "an expired credential must not get a relay"
    );
    let log = turn.log();
    assert!(log.contains("401"), "coturn answered 401; log:\n{log}");
    assert!(!log.contains(&format!(
        "user <{}>: incoming packet ALLOCATE processed, success",
        expired.username
    )));
    publisher.pc.close().await.ok();

    // The same secret minted fresh works: the refusal was the expiry.
    let fresh = rest.mint("on-time", SystemTime::now());
    let publisher = Publisher::connect(&base, "on-time", &relay_with(&fresh))
        .await
        .unwrap();
    publisher
        .wait_connected(T)
        .await
        .expect("fresh credential relays");
    publisher.pc.close().await.ok();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_with_relay_1_publish_and_play_through_coturn_in_chromium() {
    let turn = support::servers::coturn(TURN_SECRET).await;
    let (server, base) = start(&config(turn.port)).await;
    let result = support::browser::run(
        tokio::process::Command::new("node"),
        &[&base, "--token", TOKEN, "--relay", "--timeout-ms", "60000"],
    )
    .await;
    // Both pages' selected pairs start at a relay candidate of this coturn.
    for page in ["publish", "play"] {
        let local = result[page]["stats"]["candidatePair"]["local"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            local.starts_with("relay udp 127.0.0.1:"),
            "{page}: {result}"
        );
    }
    let log = turn.log();
    assert!(
        log.contains(":token:any>"),
        "coturn saw minted usernames; log:\n{log}"
    );
    assert!(log.contains("ALLOCATE processed, success"), "{log}");
    server.shutdown().await;
}
