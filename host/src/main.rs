//! The `switchboard` binary: load config, start the server, stop on SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use switchboard::config::Config;
use switchboard::server::Server;

/// mimalloc instead of glibc malloc: webrtc-rs allocates and frees on every forwarded packet
/// (driver events, interceptor messages, SRTP output) and keeps many small long-lived blocks
/// per connection; mimalloc is faster at the first and packs the second tighter
/// (figures in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "WebRTC SFU (WHIP/WHEP) with WebAssembly policy plugins"
)]
struct Cli {
    /// Configuration file (TOML). Environment variables `SWITCHBOARD_<SECTION>__<KEY>` override it.
    #[arg(long, short, default_value = "config.toml")]
    config: PathBuf,
    /// Validate the configuration as start-up would (load every plugin, check upstreams) and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    switchboard::logging::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if cli.check {
        // Everything start-up checks (plugins loaded and configured, upstreams), same errors.
        return match runtime.block_on(Server::check(&config)) {
            Ok(summary) => {
                println!("{summary}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard: {e:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    match runtime.block_on(run(config, cli.config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let server = Server::start(config).await.context("start-up failed")?;
    // SIGHUP and `POST /admin/reload` re-read the plugin sections of the same file (and env).
    server.plugins().set_reload_source(Box::new(move || {
        Config::load(&path)
            .map(|c| (c.plugins, c.upstreams))
            .map_err(|e| e.to_string())
    }));
    let _reload_on_hangup = switchboard::plugins::spawn_sighup_reload(server.plugins().clone())
        .context("cannot listen for SIGHUP")?;
    // SIGHUP also re-reads `[http.tls]`'s certificate and key (a renewed certificate).
    let _tls_reload_on_hangup = match server.tls() {
        Some(certs) => Some(
            switchboard::signalling::tls::spawn_sighup_reload(certs.clone())
                .context("cannot listen for SIGHUP")?,
        ),
        None => None,
    };
    wait_for_stop_signal().await?;
    tracing::info!("shutting down: closing sessions");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
