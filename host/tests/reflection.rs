//! The server cannot be used as a UDP reflector: remote ICE candidates are capped per request
//! and per session (400 beyond), addresses it must not send to are dropped, each candidate gets
//! a bounded number of checks, and an ICE restart needs `If-Match` (428 without).
//!
//! A UDP sink bound to the wildcard address on loopback counts what the server sends to the
//! candidates pointing at it (every 127.x.y.z address reaches it).

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use switchboard::client::Viewer;
use switchboard::sfu::candidates::{MAX_PER_REQUEST, MAX_PER_SESSION};
use switchboard::sfu::peer::ICE_MAX_CHECKS;

/// A sink on every loopback address at one port; returns it and the port.
fn sink() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("0.0.0.0:0").expect("sink");
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

/// Datagrams the sink receives over `window`.
fn count(sink: &UdpSocket, window: Duration) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let until = Instant::now() + window;
    while Instant::now() < until {
        if sink.recv_from(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

fn candidate(i: usize, ip: &str, port: u16) -> String {
    format!("a=candidate:{i} 1 udp 2122260223 {ip} {port} typ host")
}

/// A real offer (from a webrtc-rs viewer) with its own candidates replaced by `candidates`.
fn with_candidates(offer: &str, candidates: &[String]) -> String {
    let mut out = String::new();
    let mut placed = false;
    for line in offer.lines() {
        if line.starts_with("a=candidate:") || line.starts_with("a=end-of-candidates") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if !placed && line.starts_with("a=mid:") {
            for c in candidates {
                out.push_str(c);
                out.push_str("\r\n");
            }
            placed = true;
        }
    }
    out
}

async fn post(base: &str, path: &str, offer: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap()
}

async fn patch(url: &str, body: String, if_match: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .patch(url)
        .header("content-type", "application/trickle-ice-sdpfrag");
    if let Some(tag) = if_match {
        r = r.header("if-match", tag);
    }
    r.body(body).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_are_capped_filtered_and_checked_a_bounded_number_of_times() {
    let (server, base) = start("").await;
    let source = Viewer::connect(&base, "offer-source", &opts())
        .await
        .unwrap();
    let offer = source.pc.local_description().await.unwrap().sdp;
    let (sink, port) = sink();

    // Over the per-request cap: refused before any check is sent.
    let flood: Vec<String> = (0..500)
        .map(|i| candidate(i, &format!("127.0.{}.{}", i / 250, i % 250 + 1), port))
        .collect();
    let r = post(&base, "/whep/reflect", with_candidates(&offer, &flood)).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("at most"));
    assert_eq!(
        count(&sink, Duration::from_millis(300)),
        0,
        "nothing sent for a refused offer"
    );

    // Within the cap: reachable loopback targets are kept, forbidden ones dropped.
    let mut first: Vec<String> = (0..15)
        .map(|i| candidate(i, &format!("127.0.0.{}", i + 2), port))
        .collect();
    for (i, ip) in [
        "169.254.169.254",
        "224.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "fe80::1",
    ]
    .iter()
    .enumerate()
    {
        first.push(candidate(100 + i, ip, port));
    }
    assert_eq!(first.len(), MAX_PER_REQUEST);
    let r = post(&base, "/whep/reflect", with_candidates(&offer, &first)).await;
    assert_eq!(r.status(), 201);
    let url = format!("{base}{}", r.headers()["location"].to_str().unwrap());
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();

    // Trickled candidates count against the same session cap.
    let frag = |range: std::ops::Range<usize>, octet: usize| -> String {
        let mut s = String::from("a=mid:0\r\n");
        for i in range {
            s.push_str(&candidate(
                i,
                &format!("127.0.{octet}.{}", i % 250 + 1),
                port,
            ));
            s.push_str("\r\n");
        }
        s
    };
    let r = patch(&url, frag(0..MAX_PER_REQUEST + 1, 7), None).await;
    assert_eq!(r.status(), 400, "over the per-request cap");
    let r = patch(&url, frag(0..MAX_PER_REQUEST, 8), None).await;
    assert_eq!(r.status(), 204, "35 of 40");
    let r = patch(&url, frag(0..6, 9), None).await;
    assert_eq!(r.status(), 400, "41 of 40: over the session cap");
    assert!(r.text().await.unwrap().contains("at most"));

    // An ICE restart without If-Match is refused (428); with it, accepted.
    let restart = "a=ice-ufrag:newu\r\na=ice-pwd:newpassword0123456789ab\r\n".to_string();
    assert_eq!(patch(&url, restart.clone(), None).await.status(), 428);

    // What the sink got: a bounded number of checks for at most the session cap of targets.
    let sent = count(&sink, Duration::from_secs(2));
    let bound = MAX_PER_SESSION * (ICE_MAX_CHECKS as usize + 1);
    println!("{sent} datagrams to 35 candidates (bound {bound})");
    assert!(sent > 0, "the kept candidates were checked");
    assert!(sent <= bound, "{sent} datagrams, more than {bound}");
    let r = patch(&url, restart, Some(&etag)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    source.close().await;
    server.shutdown().await;
}

/// Loopback candidates are only checked when the server itself binds loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_not_a_target_for_a_server_that_does_not_bind_it() {
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!("skipped: this machine has no non-loopback IPv4 address");
        return;
    };
    let mut config = test_config("");
    config.webrtc.bind_ips = vec![ip];
    let server = switchboard::server::Server::start(config).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    // The offer comes from a client on loopback talking to a loopback-bound server.
    let (other, other_base) = start("").await;
    let source = Viewer::connect(&other_base, "offer-source", &opts())
        .await
        .unwrap();
    let offer = source.pc.local_description().await.unwrap().sdp;
    let (sink, port) = sink();
    let targets: Vec<String> = (0..10)
        .map(|i| candidate(i, &format!("127.0.0.{}", i + 2), port))
        .collect();
    let r = post(&base, "/whep/lo", with_candidates(&offer, &targets)).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        count(&sink, Duration::from_secs(1)),
        0,
        "nothing sent to loopback"
    );
    source.close().await;
    server.shutdown().await;
    other.shutdown().await;
}

fn non_loopback_ipv4() -> Option<std::net::IpAddr> {
    // The address the kernel would use to reach a public address (no packet is sent).
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
