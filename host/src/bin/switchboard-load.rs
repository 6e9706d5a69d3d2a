//! `switchboard-load`: publish real RTP over WHIP, attach N WHEP viewers, report the figures.
//!
//! Against a running server:
//!
//! ```sh
//! switchboard-load --url http://127.0.0.1:8080 --viewers 100 --server-pid "$(pidof switchboard)"
//! ```
//!
//! Or let the tool start the server(s) itself, the server pinned to core 0 and the tool to
//! core 1, and compare Switchboard with the reference SFU in one run:
//!
//! ```sh
//! switchboard-load --spawn both --viewers 100,200 --duration 15 --json bench.json
//! ```
//!
//! See `docs/benchmarks.md` for the method and the figures.

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use switchboard::client::{ClientOptions, StreamShape, Transports};
use switchboard::loadgen::spawn::{ServerKind, SpawnedServer};
use switchboard::loadgen::{self, LoadOptions, Summary, system};

#[derive(Parser)]
#[command(
    name = "switchboard-load",
    version,
    about = "Load generator for WHIP/WHEP servers: real RTP, N viewers, CPU/latency/loss figures"
)]
struct Cli {
    /// Base URL of a running WHIP/WHEP server (ignored with --spawn).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Start the server(s) itself: switchboard, reference, or both (one after the other,
    /// same scenario, with ratios).
    #[arg(long, value_enum)]
    spawn: Option<Spawn>,
    /// Number of viewers; a comma-separated list runs each in turn (e.g. 10,50,100).
    #[arg(long, value_delimiter = ',', default_value = "10")]
    viewers: Vec<usize>,
    /// Rooms; each has one publisher and viewers are spread round-robin.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Measurement window in seconds (after all joins and the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds between the last join and the start of the window.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Video bitrate per publisher, bits/s; `k` and `M` suffixes allowed (e.g. 1M, 500k).
    #[arg(long, default_value = "1M", value_parser = switchboard::loadgen::parse_bitrate)]
    bitrate: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Viewers joining concurrently.
    #[arg(long, default_value_t = 4)]
    join_concurrency: usize,
    /// Seconds a viewer may take to connect and receive its first packet.
    #[arg(long, default_value_t = 15)]
    join_timeout: u64,
    /// PID of the server process, for CPU and RSS (with --url).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Directory holding the `switchboard` and `reference-sfu` binaries (with --spawn);
    /// default: next to this binary.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Core to pin a spawned server to.
    #[arg(long, default_value_t = 0)]
    server_core: usize,
    /// Core to pin the load tool to (default: 1 with --spawn, unpinned otherwise).
    #[arg(long)]
    load_core: Option<usize>,
    /// Run everything unpinned.
    #[arg(long)]
    no_pin: bool,
    /// ICE check interval of the tool's clients in ms; 0 keeps webrtc-rs's 200 ms default,
    /// which adds up to 200 ms of client-side delay to every join (see docs/benchmarks.md).
    #[arg(long, default_value_t = 20)]
    client_ice_check_ms: u64,
    /// DTLS role the clients' offers ask for: `actpass` (browsers, OBS; the server picks) or
    /// `passive` (the client insists on being the DTLS server, so the server must start the
    /// handshake).
    #[arg(long, value_enum, default_value = "actpass")]
    dtls_setup: DtlsSetup,
    /// Local IP of the clients' media sockets.
    #[arg(long, default_value = "127.0.0.1")]
    client_ip: std::net::IpAddr,
    /// Transports the clients gather ICE candidates on: udp, tcp (ICE-TCP only, as on a
    /// network that blocks UDP), or both (as browsers do).
    #[arg(long, value_enum, default_value = "udp")]
    transports: Transports,
    /// Bearer token for WHIP/WHEP.
    #[arg(long)]
    token: Option<String>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DtlsSetup {
    Actpass,
    Passive,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Spawn {
    Switchboard,
    Reference,
    Both,
}

fn main() -> std::process::ExitCode {
    // Our own diagnostics through tracing; webrtc-rs's `log` errors are counted, not printed
    // (a flood of them would itself load the tool), and reported per run.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
    let _ = loadgen::ClientLog::install();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    if let Some(&n) = cli.viewers.iter().find(|&&n| !(1..=1000).contains(&n)) {
        bail!("--viewers {n}: must be between 1 and 1000");
    }
    if cli.rooms == 0 {
        bail!("--rooms must be at least 1");
    }
    if let Err(e) = system::raise_fd_limit() {
        eprintln!("switchboard-load: cannot raise the open-file limit: {e}");
    }
    // Pin before the runtime exists, so every thread it starts inherits the mask.
    let load_core = match (cli.no_pin, cli.load_core, cli.spawn) {
        (true, _, _) => None,
        (false, Some(core), _) => Some(core),
        (false, None, Some(_)) if system::cpu_count() >= 2 => Some(1),
        _ => None,
    };
    if let Some(core) = load_core {
        system::pin_current_thread(core).with_context(|| format!("pinning to core {core}"))?;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if load_core.is_some() {
        builder.worker_threads(1); // one core: more workers would only contend for it
    }
    let runtime = builder.enable_all().build().context("starting runtime")?;
    runtime.block_on(drive(cli, load_core))
}

async fn drive(cli: Cli, load_core: Option<usize>) -> anyhow::Result<()> {
    let base = LoadOptions {
        rooms: cli.rooms,
        duration: Duration::from_secs(cli.duration),
        warmup: Duration::from_secs(cli.warmup),
        shape: StreamShape {
            fps: cli.fps,
            video_bitrate: cli.bitrate,
            ..StreamShape::default()
        },
        join_concurrency: cli.join_concurrency,
        join_timeout: Duration::from_secs(cli.join_timeout),
        client: ClientOptions {
            token: cli.token.clone(),
            ice_check_interval: (cli.client_ice_check_ms > 0)
                .then(|| Duration::from_millis(cli.client_ice_check_ms)),
            dtls_setup: (cli.dtls_setup == DtlsSetup::Passive).then_some("passive"),
            bind_ip: cli.client_ip,
            transports: cli.transports,
            ..ClientOptions::default()
        },
        progress: !cli.quiet,
        ..LoadOptions::default()
    };
    let kinds: &[ServerKind] = match cli.spawn {
        None => &[],
        Some(Spawn::Switchboard) => &[ServerKind::Switchboard],
        Some(Spawn::Reference) => &[ServerKind::Reference],
        Some(Spawn::Both) => &[ServerKind::Switchboard, ServerKind::Reference],
    };
    let server_core = (!cli.no_pin && system::cpu_count() >= 2).then_some(cli.server_core);
    let bin_dir = match &cli.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the load tool's own directory")?
            .to_path_buf(),
    };
    let mut machine = system::machine_summary();
    if let Some(core) = load_core {
        machine.push_str(&format!("; load tool on core {core}"));
    }
    if kinds.is_empty() {
        machine.push_str(&format!("; server at {}", cli.url));
    } else if let Some(core) = server_core {
        machine.push_str(&format!("; spawned server on core {core}"));
    }

    let mut runs = Vec::new();
    for &viewers in &cli.viewers {
        if kinds.is_empty() {
            let opts = LoadOptions {
                url: cli.url.clone(),
                label: cli.url.clone(),
                viewers,
                server_pid: cli.server_pid,
                ..base.clone()
            };
            runs.push(loadgen::run(&opts).await?);
            continue;
        }
        for &kind in kinds {
            let server = SpawnedServer::start(kind, &bin_dir, server_core).await?;
            let opts = LoadOptions {
                url: server.url().to_owned(),
                label: kind.to_string(),
                viewers,
                server_pid: Some(server.pid()),
                ..base.clone()
            };
            let result = loadgen::run(&opts).await;
            let log = server.log_path().to_owned();
            server.stop().await;
            let report = result
                .with_context(|| format!("{kind}, {viewers} viewers (log: {})", log.display()))?;
            if !cli.quiet {
                eprintln!(
                    "{kind} N={viewers}: {:.0} pkt/s, {} failed joins",
                    report.throughput.forwarded_packets_per_sec, report.joins.failed
                );
            }
            runs.push(report);
            // Let sockets and the previous server's memory settle before the next run.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let summary = Summary::new(machine, runs, "switchboard", "reference");
    print!("{}", summary.table());
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
