//! ICE-TCP (`webrtc.tcp_port`): clients that cannot use UDP publish and play through one TCP
//! port, on both viewer drivers, next to UDP clients in the same room.
//!
//! - In-process: webrtc-rs clients that gather TCP candidates only (no UDP socket at all).
//! - In a network namespace the test creates, whose nftables rules drop every UDP packet:
//!   the load tool's clients (UDP and TCP candidates, as browsers gather) and headless
//!   Chromium on the embedded pages, against the server in this namespace. The rules' drop
//!   counters show the clients did try UDP.

mod common;
mod support;

use common::*;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{ClientOptions, Publisher, StreamShape, Transports, Viewer};
use switchboard::config::Config;
use switchboard::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (transport, port, tcptype) of every candidate in `sdp`.
fn candidates(sdp: &str) -> Vec<(String, u16, String)> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            let tcptype = f
                .windows(2)
                .find(|w| w[0] == "tcptype")
                .map(|w| w[1].to_owned())
                .unwrap_or_default();
            (f[2].to_lowercase(), f[5].parse().unwrap(), tcptype)
        })
        .collect()
}

fn tcp_only() -> ClientOptions {
    ClientOptions {
        transports: Transports::Tcp,
        ..opts()
    }
}

async fn tcp_clients_publish_and_play(viewers: usize, extra: &str) {
    let port = support::servers::free_port();
    let (server, base) = start(&format!("tcp_port = {port}\n{extra}")).await;
    assert_eq!(
        server.sfu().tcp_mux_addrs(),
        [format!("127.0.0.1:{port}")
            .parse::<std::net::SocketAddr>()
            .unwrap()]
    );
    let publisher = Arc::new(Publisher::connect(&base, "tcp", &tcp_only()).await.unwrap());
    publisher
        .wait_connected(T)
        .await
        .expect("publisher connected over TCP");
    let answer = publisher.pc.remote_description().await.unwrap().sdp;
    assert!(
        candidates(&answer).contains(&("tcp".into(), port, "passive".into())),
        "the answer offers the shared TCP port: {answer}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let mut all = Vec::new();
    for _ in 0..viewers {
        all.push(Viewer::connect(&base, "tcp", &tcp_only()).await.unwrap());
    }
    // A UDP viewer in the same room.
    all.push(Viewer::connect(&base, "tcp", &opts()).await.unwrap());
    for v in &all {
        v.wait_connected(T).await.expect("viewer connected");
        v.wait_media(30, 1, T).await.expect("media at every viewer");
    }
    let answer = all[0].pc.remote_description().await.unwrap().sdp;
    let tcp: std::collections::BTreeSet<_> = candidates(&answer)
        .into_iter()
        .filter(|c| c.0 == "tcp")
        .collect();
    assert_eq!(
        tcp,
        [("tcp".into(), port, "passive".into())].into(),
        "one TCP candidate, on the shared port: {answer}"
    );

    // Strangers on the port: not an ICE check, an unknown fragment, silence. Each is closed
    // (the silent one at the handshake timeout, not waited for here) and nobody notices.
    let (unrouted, ..) = switchboard::ice::tcp::counters();
    for first in [b"\x00\x05hello".to_vec(), framed(&stun_request("nosuch:x"))] {
        let mut stranger = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stranger.write_all(&first).await.unwrap();
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(T, stranger.read(&mut buf))
            .await
            .expect("closed by the server")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    assert!(switchboard::ice::tcp::counters().0 >= unrouted + 2);
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

    // Sessions end cleanly: nothing left behind.
    stop.store(true, Ordering::Relaxed);
    let _ = streaming.await;
    for v in all {
        v.close().await;
    }
    publisher.close().await;
    assert!(
        eventually(T, || server.sfu().session_count() == 0).await,
        "every session ended"
    );
    server.shutdown().await;
}

fn framed(datagram: &[u8]) -> Vec<u8> {
    let mut out = (datagram.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(datagram);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_clients_publish_and_play_on_direct_viewers() {
    tcp_clients_publish_and_play(3, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_clients_play_on_stack_driven_viewers() {
    tcp_clients_publish_and_play(2, "direct_viewers = false\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_and_single_port_udp_together() {
    let udp = support::servers::free_port();
    tcp_clients_publish_and_play(2, &format!("udp_port = {udp}\n")).await;
}

/// The server on our end of a veth pair, ICE-TCP on, plain HTTP.
async fn server_for(ns: &support::netns::NetNs) -> (Server, String) {
    let tcp_port = support::servers::free_port();
    let toml = format!(
        "[http]\nbind = \"{ip}:0\"\n[auth]\nallow_unauthenticated_public = true\n[limits]\nrequests_per_sec_per_ip = 1000\nrequest_burst_per_ip = 1000\nmax_sessions_per_ip = 1000\n[webrtc]\nbind_ips = [\"{ip}\"]\ntcp_port = {tcp_port}\nconnect_timeout_secs = 20\n",
        ip = ns.host_ip
    );
    let server = Server::start(Config::from_toml_str(&toml).unwrap())
        .await
        .expect("server starts");
    let base = format!("http://{}", server.http_addr());
    (server, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_clients_without_udp_connect_over_ice_tcp() {
    let ns = support::netns::NetNs::create("icetcp");
    ns.block_udp();
    let (server, base) = server_for(&ns).await;
    let json = tempfile::NamedTempFile::new().unwrap();
    let run = ns
        .command(env!("CARGO_BIN_EXE_switchboard-load"))
        .args([
            "--url",
            &base,
            "--viewers",
            "3",
            "--duration",
            "3",
            "--warmup",
            "1",
        ])
        .args(["--client-ip", &ns.ns_ip.to_string(), "--transports", "both"])
        .args(["--join-timeout", "20", "--no-pin", "--quiet", "--json"])
        .arg(json.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the load tool finishes")
        .unwrap();
    assert!(
        out.status.success(),
        "switchboard-load failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
    let report = &summary["runs"][0];
    assert_eq!(report["joins"]["attempted"], 3, "{report}");
    assert_eq!(report["joins"]["failed"], 0, "{report}");
    let delivery = report["throughput"]["delivery_ratio"].as_f64().unwrap();
    assert!(delivery > 0.9, "delivery ratio {delivery}: {report}");
    assert!(
        ns.udp_dropped() > 0,
        "the clients tried UDP and it was dropped"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_without_udp_publishes_and_plays_over_ice_tcp() {
    let ns = support::netns::NetNs::create("icetcpb");
    ns.block_udp();
    let (server, base) = server_for(&ns).await;
    let mut node = ns.command("node");
    node.env(
        "CHROMIUM_EXTRA_FLAGS",
        format!("--unsafely-treat-insecure-origin-as-secure={base}"),
    );
    let result = support::browser::run(node, &[&base, "--timeout-ms", "60000"]).await;
    // Both pages' selected pairs end at the shared TCP port.
    let tcp = server.sfu().tcp_mux_addrs()[0];
    for page in ["publish", "play"] {
        let remote = &result[page]["stats"]["candidatePair"]["remote"];
        assert_eq!(
            remote.as_str(),
            Some(format!("host tcp {tcp}").as_str()),
            "{page}: {result}"
        );
    }
    assert!(
        ns.udp_dropped() > 0,
        "Chromium tried UDP and it was dropped"
    );
    server.shutdown().await;
}
