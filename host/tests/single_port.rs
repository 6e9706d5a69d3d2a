//! Single-port UDP (`webrtc.udp_port`): a publisher and 50 viewers (on both viewer drivers)
//! all on one UDP port, media at every viewer; a second server configured with the same port
//! refuses to start instead of sharing it; garbage and STUN requests for unknown sessions
//! sent to the port are dropped without effect.

mod common;
mod support;

use common::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{Publisher, StreamShape, Viewer};

fn candidate_ports(sdp: &str) -> BTreeSet<u16> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .filter_map(|c| c.split_whitespace().nth(5)?.parse().ok())
        .collect()
}

async fn everyone_on_one_port(viewers: usize, extra: &str) {
    let port = support::servers::free_port();
    let (server, base) = start(&format!("udp_port = {port}\n{extra}")).await;
    assert_eq!(
        server.sfu().udp_mux_addrs(),
        [format!("127.0.0.1:{port}")
            .parse::<std::net::SocketAddr>()
            .unwrap()]
    );
    let publisher = Arc::new(Publisher::connect(&base, "one", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let mut all = Vec::new();
    for _ in 0..viewers {
        all.push(Viewer::connect(&base, "one", &opts()).await.unwrap());
    }
    for v in &all {
        v.wait_connected(T).await.expect("viewer connected");
        v.wait_media(20, 1, T).await.expect("media at every viewer");
        let remote = v.pc.remote_description().await.unwrap().sdp;
        assert_eq!(candidate_ports(&remote), BTreeSet::from([port]));
    }
    let remote = publisher.pc.remote_description().await.unwrap().sdp;
    assert_eq!(candidate_ports(&remote), BTreeSet::from([port]));

    // Garbage, and STUN naming no session of ours: dropped, nobody notices.
    let (unrouted, _) = switchboard::ice::mux::counters();
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = format!("127.0.0.1:{port}");
    stranger
        .send_to(b"\x00\x01\x00\x00garbage", &target)
        .await
        .unwrap();
    stranger.send_to(&[0xffu8; 1200], &target).await.unwrap();
    stranger
        .send_to(&stun_request("nosuchfrag:x"), &target)
        .await
        .unwrap();
    assert!(
        eventually(T, || switchboard::ice::mux::counters().0 >= unrouted + 3).await,
        "the datagrams were dropped as unrouted"
    );
    let before: Vec<u64> = all
        .iter()
        .map(|v| v.stats.video_packets.load(Ordering::Relaxed))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (v, b) in all.iter().zip(before) {
        assert!(
            v.stats.video_packets.load(Ordering::Relaxed) > b,
            "media goes on"
        );
    }
    assert_eq!(server.sfu().session_count(), viewers + 1);

    // Another server on the same port: refused at start-up, ours unaffected.
    let second = switchboard::server::Server::start(test_config(&format!("udp_port = {port}\n")))
        .await
        .err()
        .expect("the port is taken")
        .to_string();
    assert!(second.contains("webrtc.udp_port"), "{second}");
    let last = all[0].stats.video_packets.load(Ordering::Relaxed);
    assert!(
        eventually(T, || all[0].stats.video_packets.load(Ordering::Relaxed)
            > last)
        .await,
        "sessions keep their media"
    );

    stop.store(true, Ordering::Relaxed);
    let _ = streaming.await;
    for v in all {
        v.close().await;
    }
    publisher.pc.close().await.ok();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_direct_viewers_and_a_publisher_share_one_port() {
    everyone_on_one_port(50, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_driven_viewers_share_the_port_too() {
    everyone_on_one_port(5, "direct_viewers = false\n").await;
}
