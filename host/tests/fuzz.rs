//! Generated inputs against what untrusted clients feed the server: trickle fragments (PATCH
//! bodies), SDP offers (POST bodies) and raw datagrams to a viewer's media socket. Each target
//! runs a bounded number of cases in CI (`FUZZ_CASES`, default 256); none may panic, hang or
//! answer 5xx, and a server hit by all of it still serves a real viewer afterwards.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use std::net::UdpSocket;
use std::time::Duration;
use switchboard::client::{Publisher, Viewer};
use switchboard::sfu::trickle::SdpFrag;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Lines a trickle fragment or an offer is made of, mixed with garbage.
fn sdp_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a=ice-ufrag:abcd".to_string()),
        Just("a=ice-pwd:0123456789abcdef012345".to_string()),
        Just("a=mid:0".to_string()),
        Just("a=end-of-candidates".to_string()),
        Just("m=audio 9 UDP/TLS/RTP/SAVPF 111".to_string()),
        "a=candidate:[0-9]{1,3} [0-9] (udp|tcp|UDP|x) [0-9]{1,10} [0-9.:a-f]{1,20} [0-9]{1,6} typ (host|srflx|relay|prflx)( raddr [0-9.]{1,15} rport [0-9]{1,5})?",
        "a=[a-z-]{1,12}:[ -~]{0,40}",
        "[a-z]=[ -~]{0,60}",
        "[ -~]{0,80}",
        any::<String>(),
    ]
}

#[test]
fn trickle_fragments_never_panic() {
    let mut runner = TestRunner::new(RunnerConfig::with_cases(cases() * 8));
    let lines = proptest::collection::vec(sdp_line(), 0..30);
    runner
        .run(&lines, |lines| {
            let body = lines.join("\r\n");
            let _ = SdpFrag::parse(body.as_bytes());
            Ok(())
        })
        .unwrap();
    let bytes = proptest::collection::vec(any::<u8>(), 0..2000);
    runner
        .run(&bytes, |b| {
            let _ = SdpFrag::parse(&b);
            Ok(())
        })
        .unwrap();
}

/// One way to damage a real offer.
#[derive(Debug, Clone)]
enum Damage {
    DropLine(usize),
    DuplicateLine(usize),
    ReplaceLine(usize, String),
    InsertLine(usize, String),
    FlipByte(usize, u8),
    Truncate(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::DropLine),
        any::<usize>().prop_map(Damage::DuplicateLine),
        (any::<usize>(), sdp_line()).prop_map(|(i, l)| Damage::ReplaceLine(i, l)),
        (any::<usize>(), sdp_line()).prop_map(|(i, l)| Damage::InsertLine(i, l)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::FlipByte(i, b)),
        any::<usize>().prop_map(Damage::Truncate),
    ]
}

fn apply(offer: &str, damages: &[Damage]) -> String {
    let mut lines: Vec<String> = offer.lines().map(str::to_owned).collect();
    let mut text_damage = Vec::new();
    for d in damages {
        let n = lines.len().max(1);
        match d {
            Damage::DropLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Damage::DuplicateLine(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Damage::ReplaceLine(i, l) if !lines.is_empty() => lines[i % n] = l.clone(),
            Damage::InsertLine(i, l) => lines.insert(i % (lines.len() + 1), l.clone()),
            other => text_damage.push(other.clone()),
        }
    }
    let mut bytes = lines.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n");
    for d in text_damage {
        match d {
            Damage::FlipByte(i, b) if !bytes.is_empty() => {
                let n = bytes.len();
                bytes[i % n] = b;
            }
            Damage::Truncate(i) if !bytes.is_empty() => {
                let n = bytes.len();
                bytes.truncate(i % n);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_offers_get_4xx_or_201_never_5xx() {
    let (server, base) = start("").await;
    let source = Viewer::connect(&base, "offer-source", &opts())
        .await
        .unwrap();
    let whep_offer = source.pc.local_description().await.unwrap().sdp;
    let publisher = Publisher::connect(&base, "offer-source-2", &opts())
        .await
        .unwrap();
    let whip_offer = publisher.pc.local_description().await.unwrap().sdp;
    let http = reqwest::Client::new();
    let handle = tokio::runtime::Handle::current();

    let strategy = (any::<bool>(), proptest::collection::vec(damage(), 1..6));
    let mut runner = TestRunner::new(RunnerConfig::with_cases(cases() / 4));
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(whip, damages)| {
            let (path, offer) = match whip {
                true => ("whip", &whip_offer),
                false => ("whep", &whep_offer),
            };
            let body = apply(offer, &damages);
            let status = handle.block_on(async {
                let r = http
                    .post(format!("{base}/{path}/fuzz"))
                    .header("content-type", "application/sdp")
                    .body(body.clone())
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                    .expect("answered");
                let status = r.status().as_u16();
                // Whatever was created is ended again, so sessions do not pile up.
                if status == 201
                    && let Some(location) = r.headers().get("location")
                {
                    let url = format!("{base}{}", location.to_str().unwrap());
                    let _ = http.delete(url).send().await;
                }
                status
            });
            prop_assert!(status < 500, "{path} answered {status} to:\n{body}");
            Ok(())
        })
    });
    result.unwrap();
    // Still healthy: a real viewer joins and connects.
    let v = Viewer::connect(&base, "after", &opts())
        .await
        .expect("still serving");
    v.wait_connected(T).await.expect("and connecting");
    assert!(eventually(T, || server.sfu().session_count() == 3).await);
    server.shutdown().await;
}

/// The server's media port of a viewer session, from the answer's first candidate.
fn media_port(answer: &str) -> u16 {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("a=candidate:"))
        .and_then(|c| c.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
        .expect("a host candidate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_datagrams_to_a_viewer_connection_do_not_hurt_it() {
    let (server, base) = start("").await;
    let viewer = Viewer::connect(&base, "raw", &opts()).await.unwrap();
    viewer.wait_connected(T).await.unwrap();
    let answer = viewer.pc.remote_description().await.unwrap().sdp;
    let port = media_port(&answer);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // STUN-, DTLS-, RTP/RTCP-shaped and arbitrary first bytes, any length.
    let datagram = (
        prop_oneof![0u8..4, 20u8..64, 128u8..192, any::<u8>()],
        proptest::collection::vec(any::<u8>(), 0..1500),
    );
    let mut runner = TestRunner::new(RunnerConfig::with_cases(cases() * 8));
    runner
        .run(&datagram, |(first, mut rest)| {
            rest.insert(0, first);
            socket.send_to(&rest, ("127.0.0.1", port)).unwrap();
            Ok(())
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The viewer's session survived it; the server serves others too.
    let id = viewer.resource.url.rsplit('/').next().unwrap();
    assert!(
        server.sfu().session("raw", id).is_ok(),
        "the viewer's session is still there"
    );
    assert_eq!(
        viewer.connection_state(),
        webrtc::peer_connection::RTCPeerConnectionState::Connected
    );
    let other = Viewer::connect(&base, "raw", &opts()).await.unwrap();
    other.wait_connected(T).await.expect("others still connect");
    server.shutdown().await;
}
