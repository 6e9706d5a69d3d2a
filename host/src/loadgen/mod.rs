//! The load generator behind `switchboard-load`: real publishers, N real viewers, figures.
//!
//! One [`run`] against any WHIP/WHEP server:
//!
//! 1. one [`Publisher`] per room sends synthetic VP8 + Opus RTP (correct keyframe markers, a
//!    send timestamp in every payload) at the configured bitrate;
//! 2. N [`Viewer`]s join round-robin over the rooms, a bounded number at a time; each join is
//!    timed (POST -> 201, -> ICE connected, -> first RTP, -> first keyframe) and a viewer that
//!    is refused, does not connect or receives nothing within the timeout is a failed join;
//! 3. after a short warm-up, a measurement window: every viewer's counters (packets, bytes,
//!    sequence gaps, reordering, one-way delay samples), the publishers' sent counts and the
//!    server process's CPU time and RSS (`/proc`, when its pid is known) are sampled at both
//!    ends, and the [`Report`] is computed from the differences.
//!
//! Viewers only decrypt and count; nothing is decoded. The CPU the load tool itself used is
//! reported too: when it nears one core, the tool, not the server, is the bottleneck.
//!
//! [`spawn`] starts the server under test (pinned to a core) for the command-line tool;
//! [`system`] reads `/proc` and pins threads.

pub mod report;
pub mod spawn;
pub mod system;

use crate::client::{ClientOptions, Publisher, StreamShape, Viewer};
use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use report::{Joins, Quality, Scenario, ServerCost, Throughput};
pub use report::{Percentiles, Report, Summary};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use system::ProcSample;

/// The ICE check interval the tool's clients use by default. webrtc-rs clients start DTLS on
/// their next check tick after selecting a pair, so with the crate's 200 ms default every
/// timed join would carry up to 200 ms of the *client's* timer; browsers start DTLS at once.
pub const CLIENT_ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Name of the server in the report.
    pub label: String,
    pub viewers: usize,
    pub rooms: usize,
    /// Length of the measurement window.
    pub duration: Duration,
    /// Pause between the last join and the window, so join work does not count.
    pub warmup: Duration,
    /// Stream sent by every publisher.
    pub shape: StreamShape,
    /// Viewers joining at the same time.
    pub join_concurrency: usize,
    /// How long a viewer may take to connect and receive its first packet.
    pub join_timeout: Duration,
    /// The server process, for CPU and memory figures. `None` leaves them out.
    pub server_pid: Option<u32>,
    /// How the publishers and viewers connect (token, local IP).
    pub client: ClientOptions,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            url: "http://127.0.0.1:8080".into(),
            label: "server".into(),
            viewers: 10,
            rooms: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            shape: StreamShape::default(),
            join_concurrency: 4,
            join_timeout: Duration::from_secs(15),
            server_pid: None,
            client: ClientOptions {
                ice_check_interval: Some(CLIENT_ICE_CHECK_INTERVAL),
                ..ClientOptions::default()
            },
            progress: false,
        }
    }
}

/// Errors webrtc-rs logged inside this process (see [`ClientLog`]).
static CLIENT_ERRORS: AtomicU64 = AtomicU64::new(0);
static FIRST_CLIENT_ERROR: OnceLock<String> = OnceLock::new();

/// A `log` logger for the load tool that counts the errors webrtc-rs logs on the client side
/// instead of printing them.
///
/// The one that matters is "Failed to send RtpPacket to track remote ...: Full": a viewer's
/// reader fell behind and the *load tool* dropped the packet. Such packets show up as loss,
/// so the report carries the count and warns, rather than blaming the server for them.
pub struct ClientLog;

impl ClientLog {
    /// Install as the process's `log` logger (errors only). Fails if one is already set.
    pub fn install() -> Result<(), log::SetLoggerError> {
        static LOGGER: ClientLog = ClientLog;
        log::set_logger(&LOGGER)?;
        log::set_max_level(log::LevelFilter::Error);
        Ok(())
    }
}

impl log::Log for ClientLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Error
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() == log::Level::Error {
            CLIENT_ERRORS.fetch_add(1, Ordering::Relaxed);
            FIRST_CLIENT_ERROR.get_or_init(|| {
                let text = format!("{}: {}", record.target(), record.args());
                text.chars().take(160).collect()
            });
        }
    }

    fn flush(&self) {}
}

/// A viewer that joined (or tried to), and the room it is in.
struct Joined {
    room: usize,
    viewer: Option<Viewer>,
    failure: Option<String>,
}

/// Counters of one viewer at one moment.
#[derive(Clone, Copy, Default)]
struct ViewerCounters {
    packets: u64,
    bytes: u64,
    lost: u64,
    out_of_order: u64,
    delay_samples: usize,
}

impl ViewerCounters {
    fn of(viewer: &Viewer) -> ViewerCounters {
        let s = &viewer.stats;
        ViewerCounters {
            packets: s.packets(),
            bytes: s.bytes.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            out_of_order: s.out_of_order.load(Ordering::Relaxed),
            delay_samples: s.delays_us.lock().len(),
        }
    }
}

/// Everything sampled at one end of the window.
struct Snapshot {
    at: Instant,
    viewers: Vec<Option<ViewerCounters>>,
    published: Vec<u64>,
    server: Option<ProcSample>,
    me: Option<ProcSample>,
    machine: Option<Duration>,
    client_errors: u64,
}

fn snapshot(joined: &[Joined], publishers: &[Arc<Publisher>], server_pid: Option<u32>) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        viewers: joined
            .iter()
            .map(|j| j.viewer.as_ref().map(ViewerCounters::of))
            .collect(),
        published: publishers
            .iter()
            .map(|p| p.sent_packets.load(Ordering::Relaxed))
            .collect(),
        server: server_pid.and_then(|pid| system::sample(pid).ok()),
        me: system::sample(std::process::id()).ok(),
        machine: system::machine_busy().ok(),
        client_errors: CLIENT_ERRORS.load(Ordering::Relaxed),
    }
}

/// Run one load scenario against `opts.url` and compute its report.
pub async fn run(opts: &LoadOptions) -> anyhow::Result<Report> {
    if opts.viewers == 0 || opts.rooms == 0 {
        bail!("need at least one viewer and one room");
    }
    let rooms = opts.rooms.min(opts.viewers);
    let run_id = format!("{:08x}", rand::random::<u32>());
    let room_names: Vec<String> = (0..rooms).map(|i| format!("load-{run_id}-{i}")).collect();
    let http = reqwest::Client::new();
    let bar = progress_bar(opts.progress, &opts.label, opts.viewers);

    // Publishers first, so every viewer joins a live stream.
    bar.set_message("connecting publishers");
    let mut publishers = Vec::with_capacity(rooms);
    for room in &room_names {
        let p = Publisher::connect(&opts.url, room, &opts.client)
            .await
            .with_context(|| format!("publisher for room {room}"))?;
        p.wait_connected(opts.join_timeout)
            .await
            .with_context(|| format!("publisher for room {room} did not connect"))?;
        publishers.push(Arc::new(p));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = publishers
        .iter()
        .map(|p| {
            let (p, stop, shape) = (p.clone(), stop.clone(), opts.shape);
            tokio::spawn(async move { p.stream(shape, &stop).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_viewers = opts.server_pid.and_then(|pid| system::sample(pid).ok());

    // Viewers, a bounded number at a time.
    bar.set_message("joining viewers");
    let join_started = Instant::now();
    let mut joined: Vec<Joined> = futures::stream::iter(0..opts.viewers)
        .map(|i| {
            let (http, bar) = (http.clone(), bar.clone());
            let room = i % rooms;
            let name = room_names[room].clone();
            async move {
                let result = join_one(&http, opts, &name).await;
                bar.inc(1);
                match result {
                    Ok(viewer) => Joined {
                        room,
                        viewer: Some(viewer),
                        failure: None,
                    },
                    Err((viewer, reason)) => Joined {
                        room,
                        viewer,
                        failure: Some(reason),
                    },
                }
            }
        })
        .buffer_unordered(opts.join_concurrency.max(1))
        .collect()
        .await;
    let join_secs = join_started.elapsed().as_secs_f64();
    joined.sort_by_key(|j| j.room);

    // Warm-up, then the measurement window.
    bar.set_message("warming up");
    tokio::time::sleep(opts.warmup).await;
    let start = snapshot(&joined, &publishers, opts.server_pid);
    let window_secs = opts.duration.as_secs().max(1);
    bar.set_length(window_secs);
    bar.set_position(0);
    bar.set_message("measuring");
    for _ in 0..window_secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.inc(1);
    }
    let end = snapshot(&joined, &publishers, opts.server_pid);
    bar.finish_and_clear();

    let report = compute(
        opts,
        rooms,
        &joined,
        &start,
        &end,
        before_viewers,
        join_secs,
    );

    // Stop sending, then leave politely (DELETE) and close every peer.
    stop.store(true, Ordering::Relaxed);
    for s in streams {
        let _ = s.await;
    }
    futures::stream::iter(joined.into_iter().filter_map(|j| j.viewer))
        .for_each_concurrent(32, |v| async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), v.delete()).await;
            v.close().await;
        })
        .await;
    for p in &publishers {
        let _ = tokio::time::timeout(Duration::from_secs(5), p.delete()).await;
        p.close().await;
    }
    Ok(report)
}

/// Join one viewer: signalled, connected and with its first packet, or a reason why not.
async fn join_one(
    http: &reqwest::Client,
    opts: &LoadOptions,
    room: &str,
) -> Result<Viewer, (Option<Viewer>, String)> {
    let viewer = Viewer::connect_with(http, &opts.url, room, &opts.client)
        .await
        .map_err(|e| (None, format!("signalling: {e}")))?;
    if let Err(e) = viewer.wait_connected(opts.join_timeout).await {
        return Err((Some(viewer), format!("not connected: {e}")));
    }
    if let Err(e) = viewer.wait_media(1, 0, opts.join_timeout).await {
        return Err((Some(viewer), format!("no media: {e}")));
    }
    Ok(viewer)
}

fn progress_bar(enabled: bool, label: &str, len: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:32}] {pos:>4}/{len:4} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn compute(
    opts: &LoadOptions,
    rooms: usize,
    joined: &[Joined],
    start: &Snapshot,
    end: &Snapshot,
    before_viewers: Option<ProcSample>,
    join_secs: f64,
) -> Report {
    let wall = (end.at - start.at).as_secs_f64().max(1e-3);
    let mut warnings = Vec::new();

    // Joins.
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for j in joined {
        if let Some(f) = &j.failure {
            *failures.entry(f.clone()).or_default() += 1;
        }
    }
    let times: Vec<_> = joined
        .iter()
        .filter_map(|j| j.viewer.as_ref())
        .map(|v| v.stats.join_times())
        .collect();
    let joins = Joins {
        attempted: joined.len(),
        failed: joined.iter().filter(|j| j.failure.is_some()).count(),
        failures: failures.into_iter().collect(),
        post_to_201_ms: Percentiles::of_durations_ms(times.iter().filter_map(|t| t.created)),
        post_to_connected_ms: Percentiles::of_durations_ms(
            times.iter().filter_map(|t| t.connected),
        ),
        post_to_first_rtp_ms: Percentiles::of_durations_ms(
            times.iter().filter_map(|t| t.first_rtp),
        ),
        post_to_first_keyframe_ms: Percentiles::of_durations_ms(
            times.iter().filter_map(|t| t.first_keyframe),
        ),
        with_keyframe: times.iter().filter(|t| t.first_keyframe.is_some()).count(),
        total_secs: join_secs,
    };

    // Throughput and quality over the window, per viewer.
    let published: Vec<u64> = end
        .published
        .iter()
        .zip(&start.published)
        .map(|(e, s)| e - s)
        .collect();
    let mut viewers_in_room = vec![0u64; rooms];
    let (mut packets, mut bytes, mut lost, mut ooo) = (0u64, 0u64, 0u64, 0u64);
    let (mut worst_loss, mut worst_ooo, mut with_loss, mut starved) = (0.0f64, 0u64, 0, 0);
    let mut delays: Vec<f64> = Vec::new();
    for (i, j) in joined.iter().enumerate() {
        let (Some(viewer), Some(s), Some(e)) = (&j.viewer, start.viewers[i], end.viewers[i]) else {
            continue;
        };
        if j.failure.is_some() && e.packets == 0 {
            continue; // never got going: counted as a failed join, not as a starved viewer
        }
        viewers_in_room[j.room] += 1;
        let (p, l) = (e.packets - s.packets, e.lost - s.lost);
        packets += p;
        bytes += e.bytes - s.bytes;
        lost += l;
        ooo += e.out_of_order - s.out_of_order;
        worst_ooo = worst_ooo.max(e.out_of_order - s.out_of_order);
        if p == 0 {
            starved += 1;
        }
        if l > 0 {
            with_loss += 1;
            worst_loss = worst_loss.max(100.0 * l as f64 / (p + l) as f64);
        }
        let samples = viewer.stats.delays_us.lock();
        let window = samples
            .get(s.delay_samples..e.delay_samples)
            .unwrap_or_default();
        delays.extend(window.iter().map(|&us| us as f64 / 1000.0));
    }
    let expected: u64 = published
        .iter()
        .zip(&viewers_in_room)
        .map(|(p, v)| p * v)
        .sum();
    let throughput = Throughput {
        forwarded_packets_per_sec: packets as f64 / wall,
        forwarded_bytes_per_sec: bytes as f64 / wall,
        published_packets_per_sec: published.iter().sum::<u64>() as f64 / wall,
        delivery_ratio: if expected > 0 {
            packets as f64 / expected as f64
        } else {
            0.0
        },
    };
    let quality = Quality {
        loss_pct: if packets + lost > 0 {
            100.0 * lost as f64 / (packets + lost) as f64
        } else {
            0.0
        },
        worst_viewer_loss_pct: worst_loss,
        viewers_with_loss: with_loss,
        out_of_order: ooo,
        worst_viewer_out_of_order: worst_ooo,
        starved_viewers: starved,
        one_way_delay_ms: Percentiles::of(&mut delays),
    };

    // Server cost.
    let server = match (opts.server_pid, start.server, end.server) {
        (Some(pid), Some(s), Some(e)) => {
            let cpu = (e.cpu.saturating_sub(s.cpu)).as_secs_f64();
            let before = before_viewers.map(|b| b.rss_kib).unwrap_or(s.rss_kib);
            Some(ServerCost {
                pid,
                cpu_secs: cpu,
                cpu_utilisation: cpu / wall,
                cpu_us_per_packet: if packets > 0 {
                    cpu * 1e6 / packets as f64
                } else {
                    0.0
                },
                packets_per_cpu_sec: if cpu > 0.0 { packets as f64 / cpu } else { 0.0 },
                rss_before_kib: before,
                rss_after_kib: e.rss_kib,
                rss_per_viewer_kib: e.rss_kib.saturating_sub(before) as f64 / opts.viewers as f64,
            })
        }
        (Some(pid), _, _) => {
            warnings.push(format!(
                "could not read /proc/{pid}: server figures left out"
            ));
            None
        }
        _ => None,
    };
    let me = match (start.me, end.me) {
        (Some(s), Some(e)) => e.cpu.saturating_sub(s.cpu).as_secs_f64() / wall,
        _ => 0.0,
    };
    // Everything else the machine did meanwhile (other people's builds, say).
    let other = match (start.machine, end.machine) {
        (Some(s), Some(e)) => {
            let server_cpu = server.as_ref().map_or(0.0, |c| c.cpu_secs);
            let total = e.saturating_sub(s).as_secs_f64() / wall;
            let own = if opts.server_pid == Some(std::process::id()) {
                me // in-process server: its CPU is already in `me`
            } else {
                me + server_cpu / wall
            };
            Some((total - own).max(0.0))
        }
        _ => None,
    };
    if let Some(other) = other
        && other > 0.15
    {
        warnings.push(format!(
            "other processes used {other:.2} cores during the window: figures are disturbed"
        ));
    }
    let client_errors = end.client_errors - start.client_errors;
    if client_errors > 0 {
        warnings.push(format!(
            "the load tool's own webrtc stack logged {client_errors} errors (first: {}); \
             packets it dropped count as loss",
            FIRST_CLIENT_ERROR.get().map(String::as_str).unwrap_or("?")
        ));
    }
    if me > 0.9 {
        warnings.push(format!(
            "the load tool used {me:.2} cores: it may be the bottleneck, not the server"
        ));
    }
    if let Some(c) = &server
        && c.cpu_utilisation > 0.95
    {
        warnings.push(format!(
            "the server used {:.2} cores: it is saturated at this load",
            c.cpu_utilisation
        ));
    }
    let nominal_pps = f64::from(opts.shape.fps)
        * ((opts.shape.video_bitrate / 8 / opts.shape.fps.max(1)) as f64 / 1100.0)
            .ceil()
            .max(1.0)
        + 50.0;
    if throughput.published_packets_per_sec < 0.95 * nominal_pps * rooms as f64 {
        warnings.push(format!(
            "publishers sent {:.0} packets/s, below the nominal {:.0}: the load tool fell behind",
            throughput.published_packets_per_sec,
            nominal_pps * rooms as f64
        ));
    }

    Report {
        label: opts.label.clone(),
        url: opts.url.clone(),
        scenario: Scenario {
            viewers: opts.viewers,
            rooms,
            window_secs: wall,
            video_bitrate: opts.shape.video_bitrate,
            fps: opts.shape.fps,
            join_concurrency: opts.join_concurrency,
        },
        joins,
        throughput,
        quality,
        server,
        load_tool_cpu_utilisation: me,
        other_cpu_utilisation: other,
        load_tool_webrtc_errors: client_errors,
        warnings,
    }
}

/// Parses a bitrate given on the command line: plain bits/s or with a `k`/`M` suffix.
pub fn parse_bitrate(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (digits, scale) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000.0),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    let value: f64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a bitrate (e.g. 1000000, 500k, 2M)"))?;
    let bits = value * scale;
    if !(8_000.0..=50_000_000.0).contains(&bits) {
        return Err(format!("{s:?}: bitrate must be between 8k and 50M"));
    }
    Ok(bits as u32)
}

#[cfg(test)]
mod tests {
    use super::parse_bitrate;

    #[test]
    fn bitrates_with_suffixes() {
        assert_eq!(parse_bitrate("1M"), Ok(1_000_000));
        assert_eq!(parse_bitrate("500k"), Ok(500_000));
        assert_eq!(parse_bitrate("2500000"), Ok(2_500_000));
        assert_eq!(parse_bitrate("1.5M"), Ok(1_500_000));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("1k").is_err());
    }
}
