//! Bounded resources: per-client request rates and session counts answer 429 with
//! `Retry-After`, the server-wide session cap answers 503 with a reason, slow headers and slow
//! bodies are cut at their timeouts, and idle connections held open up to the connection cap
//! leave `/healthz` answering at once.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use switchboard::client::Viewer;
use switchboard::config::Config;
use switchboard::server::Server;

async fn serve(config: Config) -> (Server, String) {
    let server = Server::start(config).await.expect("server starts");
    let base = format!("http://{}", server.http_addr());
    (server, base)
}

async fn post_offer(base: &str, room: &str, offer: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/whep/{room}"))
        .header("content-type", "application/sdp")
        .body(offer.to_owned())
        .send()
        .await
        .unwrap()
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds")
}

/// A real offer, from a viewer of another server (so it counts against nothing here).
async fn offer() -> (Server, Viewer, String) {
    let (other, other_base) = start("").await;
    let v = Viewer::connect(&other_base, "source", &opts())
        .await
        .unwrap();
    let sdp = v.pc.local_description().await.unwrap().sdp;
    (other, v, sdp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rate_per_client_answers_429_with_retry_after() {
    let mut config = test_config("");
    config.limits.requests_per_sec_per_ip = 2;
    config.limits.request_burst_per_ip = 3;
    let (server, base) = serve(config).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = http
            .delete(format!("{base}/whep/room/nope"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(retry_after(&r) >= 1);
        }
    }
    assert_eq!(statuses, [404, 404, 404, 429]);
    // Pages and health are not limited.
    for _ in 0..10 {
        assert_eq!(
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_caps_answer_429_per_client_and_503_for_the_server() {
    let (other, _source, sdp) = offer().await;
    let mut config = test_config("");
    config.limits.max_sessions_per_ip = 2;
    let (server, base) = serve(config).await;
    for _ in 0..2 {
        assert_eq!(post_offer(&base, "capped", &sdp).await.status(), 201);
    }
    let r = post_offer(&base, "capped", &sdp).await;
    assert_eq!(r.status(), 429);
    assert!(retry_after(&r) >= 1);
    assert!(r.text().await.unwrap().contains("max_sessions_per_ip"));
    server.shutdown().await;

    let mut config = test_config("");
    config.limits.max_sessions = 2;
    let (server, base) = serve(config).await;
    for _ in 0..2 {
        assert_eq!(post_offer(&base, "full", &sdp).await.status(), 201);
    }
    let r = post_offer(&base, "full", &sdp).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("session limit"));
    assert_eq!(
        server.sfu().session_count(),
        2,
        "nothing was set up for the refused one"
    );
    server.shutdown().await;
    other.shutdown().await;
}

/// Read until the server closes the connection; returns what it sent and when it closed.
fn read_until_closed(mut s: TcpStream, limit: Duration) -> (String, Option<Duration>) {
    s.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                return (
                    String::from_utf8_lossy(&got).into(),
                    Some(started.elapsed()),
                );
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (
                    String::from_utf8_lossy(&got).into(),
                    Some(started.elapsed()),
                );
            }
            Err(_) => return (String::from_utf8_lossy(&got).into(), None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_slow_bodies_are_cut_at_their_timeouts() {
    let mut config = test_config("");
    config.limits.header_timeout_secs = 1;
    config.limits.body_timeout_secs = 1;
    let (server, _base) = serve(config).await;
    let addr = server.http_addr();

    let slow_headers = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        // Half a request line, then nothing (slow-loris).
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        read_until_closed(s, Duration::from_secs(10))
    });
    let slow_body = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(
            b"POST /whep/room HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/sdp\r\ncontent-length: 1000\r\n\r\nv=0\r\n",
        )
        .unwrap();
        read_until_closed(s, Duration::from_secs(10))
    });
    let (_, closed) = slow_headers.await.unwrap();
    let closed = closed.expect("the server closed the slow-header connection");
    assert!(closed < Duration::from_secs(4), "closed after {closed:?}");
    let (answer, closed) = slow_body.await.unwrap();
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        (400..500).contains(&status) || closed.is_some_and(|c| c < Duration::from_secs(4)),
        "a slow body is cut: {answer:?} after {closed:?}"
    );
    assert!(
        closed.is_some(),
        "the slow-body connection does not stay open"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_at_the_cap_leave_healthz_answering() {
    let mut config = test_config("");
    config.limits.max_connections = 40;
    let (server, base) = serve(config).await;
    let addr = server.http_addr();
    // Hold more idle connections than the cap allows.
    let idle: Vec<TcpStream> = (0..60).map(|_| TcpStream::connect(addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let r = reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .expect("healthz answers");
        assert_eq!(r.status(), 200);
        worst = worst.max(started.elapsed());
    }
    println!(
        "healthz with {} idle connections held: worst {worst:?}",
        idle.len()
    );
    assert!(worst < Duration::from_millis(100), "worst {worst:?}");
    let (refused, evicted) = switchboard::signalling::listener::counters();
    assert!(
        evicted > 0,
        "idle connections were evicted (refused {refused})"
    );
    drop(idle);
    server.shutdown().await;
}
