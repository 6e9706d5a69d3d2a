//! Soak benchmark: a release server under join/leave churn and abuse traffic for a long time
//! (30 minutes by default), sampling its memory, open file descriptors and threads, to show
//! they stay flat. A benchmark, not a test: run it on an otherwise idle machine.
//!
//! ```sh
//! cargo build --release -p switchboard --bins --example soak
//! ./target/release/examples/soak --minutes 30 --json soak.json
//! ```
//!
//! What runs against the server (spawned from `--bin-dir`, pinned to core 0):
//! - one publisher streaming 1 Mbit/s VP8 + Opus;
//! - about `--viewers` viewers, each staying 5–30 s, then leaving (DELETE) or vanishing without
//!   a word (every fourth), and being replaced;
//! - every second: malformed offers, offers and PATCHes with too many candidates, requests for
//!   a foreign `Host`; every 10 s a viewer floods 200 NACKs, and 50 idle TCP connections are
//!   opened and held for 5 s.

use clap::Parser;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard::client::{ClientOptions, Publisher, StreamShape, Viewer};
use switchboard::loadgen::spawn::{ServerKind, SpawnedServer};
use switchboard::loadgen::system;

#[derive(Parser)]
struct Cli {
    /// How long to run.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Viewers kept in the room.
    #[arg(long, default_value_t = 40)]
    viewers: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
    /// Where `switchboard` is (default: next to this example's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Write the samples as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    at_secs: u64,
    rss_kib: u64,
    fds: usize,
    threads: u64,
    viewers_joined: u64,
    viewers_left: u64,
    abuse_requests: u64,
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin_dir = match cli.bin_dir.clone() {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("cannot find the binaries; pass --bin-dir"))?,
    };
    let _ = system::raise_fd_limit();
    let server = SpawnedServer::start(ServerKind::Switchboard, &bin_dir, Some(0)).await?;
    let _ = system::pin_current_thread(1);
    let base = server.url().to_owned();
    let pid = server.pid();
    let opts = ClientOptions {
        ice_check_interval: Some(Duration::from_millis(20)),
        ..ClientOptions::default()
    };
    eprintln!(
        "soak: {} for {} min, {} viewers, server pid {pid}",
        base, cli.minutes, cli.viewers
    );

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = Arc::new(Publisher::connect(&base, "soak", &opts).await?);
    publisher.wait_connected(Duration::from_secs(15)).await?;
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };

    let joined = Arc::new(AtomicU64::new(0));
    let left = Arc::new(AtomicU64::new(0));
    let abuse = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // Churn: each slot keeps one viewer coming and going.
    for slot in 0..cli.viewers {
        let (base, opts, stop, joined, left) = (
            base.clone(),
            opts.clone(),
            stop.clone(),
            joined.clone(),
            left.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = slot as u64;
            tokio::time::sleep(Duration::from_millis(100 * slot as u64)).await;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let Ok(v) = Viewer::connect(&base, "soak", &opts).await else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                joined.fetch_add(1, Ordering::Relaxed);
                let stay = Duration::from_secs(5 + (n * 7919) % 26);
                let until = Instant::now() + stay;
                let mut nacked = false;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // Every tenth viewer floods NACKs once during its stay.
                    if !nacked && n.is_multiple_of(10) && v.stats.packets() > 100 {
                        nacked = true;
                        if let Ok(ssrc) = v.video_ssrc().await {
                            for i in 0..200u16 {
                                let nack = TransportLayerNack {
                                    sender_ssrc: 1,
                                    media_ssrc: ssrc,
                                    nacks: vec![NackPair {
                                        packet_id: i * 17,
                                        lost_packets: 0xffff,
                                    }],
                                };
                                let _ = v.send_rtcp(vec![Box::new(nack)]).await;
                            }
                        }
                    }
                }
                // Every fourth vanishes without DELETE: the server must reap it.
                if !n.is_multiple_of(4) {
                    let _ = v.delete().await;
                }
                v.close().await;
                left.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Abuse.
    {
        let (base, stop, abuse) = (base.clone(), stop.clone(), abuse.clone());
        let addr = base.trim_start_matches("http://").to_owned();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let many: String = (0..30)
                .map(|i| format!("a=candidate:{i} 1 udp 1 192.0.2.{i} 9 typ host\r\n"))
                .collect();
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick += 1;
                let requests = [
                    (
                        "application/sdp",
                        "v=0\r\nnonsense\r\n".to_string(),
                        "localhost",
                    ),
                    ("application/sdp", format!("v=0\r\n{many}"), "localhost"),
                    ("application/sdp", "v=0\r\n".to_string(), "rebind.example"),
                ];
                for (ct, body, host) in requests {
                    let _ = http
                        .post(format!("{base}/whep/soak"))
                        .header("content-type", ct)
                        .header("host", host)
                        .body(body)
                        .send()
                        .await;
                    abuse.fetch_add(1, Ordering::Relaxed);
                }
                if tick.is_multiple_of(10) {
                    let held: Vec<_> = (0..50)
                        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
                        .collect();
                    abuse.fetch_add(held.len() as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    drop(held);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let total = Duration::from_secs(cli.minutes * 60);
    println!(
        "{:>6} {:>10} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "secs", "rss KiB", "fds", "threads", "joined", "left", "abuse"
    );
    loop {
        let proc = system::sample(pid)?;
        let s = Sample {
            at_secs: started.elapsed().as_secs(),
            rss_kib: proc.rss_kib,
            fds: fds(pid),
            threads: threads(pid),
            viewers_joined: joined.load(Ordering::Relaxed),
            viewers_left: left.load(Ordering::Relaxed),
            abuse_requests: abuse.load(Ordering::Relaxed),
        };
        println!(
            "{:>6} {:>10} {:>6} {:>8} {:>8} {:>8} {:>8}",
            s.at_secs,
            s.rss_kib,
            s.fds,
            s.threads,
            s.viewers_joined,
            s.viewers_left,
            s.abuse_requests
        );
        samples.push(s);
        if started.elapsed() >= total {
            break;
        }
        tokio::time::sleep(
            Duration::from_secs(cli.sample_secs).min(total.saturating_sub(started.elapsed())),
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), streaming).await;
    for t in tasks {
        t.abort();
    }

    // Flat: the last third against the first full third after warm-up.
    let third = (samples.len() / 3).max(1);
    let median = |xs: &[u64]| {
        let mut v = xs.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let early: Vec<&Sample> = samples.iter().skip(1).take(third).collect();
    let late: Vec<&Sample> = samples.iter().rev().take(third).collect();
    let rss = |s: &[&Sample]| median(&s.iter().map(|x| x.rss_kib).collect::<Vec<_>>());
    let fd = |s: &[&Sample]| median(&s.iter().map(|x| x.fds as u64).collect::<Vec<_>>());
    let th = |s: &[&Sample]| median(&s.iter().map(|x| x.threads).collect::<Vec<_>>());
    println!(
        "median early -> late: RSS {} -> {} KiB ({:+.1} %), fds {} -> {}, threads {} -> {}; {} viewers joined, {} abuse requests",
        rss(&early),
        rss(&late),
        (rss(&late) as f64 / rss(&early) as f64 - 1.0) * 100.0,
        fd(&early),
        fd(&late),
        th(&early),
        th(&late),
        joined.load(Ordering::Relaxed),
        abuse.load(Ordering::Relaxed),
    );
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&samples)?)?;
    }
    drop(server);
    Ok(())
}
