//! `cargo xtask <command>`: the project's build, run and test entry points.
//!
//! - `run [-- ARGS]`: build (release) and run the server on `config.toml`.
//! - `test [ARGS]`: install what the tests need, build the plugins, run the whole test suite,
//!   and smoke-test `cargo xtask run` itself (skipped when ARGS narrow the run).
//! - `smoke`: only the smoke test of `cargo xtask run` (see `smoke.rs`).
//! - `plugins`: build every plugin into a WebAssembly component under `target/plugins/`.
//! - `setup`: only the installation step of `test`.
//!
//! Parts: `system.rs` (root, apt-get, running commands), `python.rs`, `node.rs`, `browser.rs`
//! and `network_servers.rs` (test prerequisites), `plugins.rs` with `plugin_crates.rs` (the wasm build), `smoke.rs`.
//! Every failure ends as one line, `xtask: error: <what>: <why>`, and a non-zero exit.

mod browser;
mod network_servers;
mod node;
mod plugin_crates;
mod plugins;
mod python;
mod s3_server;
mod smoke;
mod system;

use anyhow::{Context, Result, bail};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use system::run_status;

const USAGE: &str = "usage: cargo xtask <run|test|smoke|plugins|setup>

  run [-- ARGS]   build and run the server on config.toml
  test [ARGS]     install test prerequisites, build plugins, run all tests, smoke-test `run`
                  (ARGS go to `cargo test`; with ARGS the smoke test is skipped)
  smoke           only the smoke test of `cargo xtask run`
  plugins         build the WebAssembly plugins into target/plugins/
  setup           install test prerequisites only";

fn main() -> ExitCode {
    match dispatch() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {}", one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

fn dispatch() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)
        .with_context(|| format!("cannot enter the workspace root {}", root.display()))?;
    match args.first().map(String::as_str) {
        Some("run") => run(&root, &args[1..]),
        Some("test") => test(&root, &args[1..]),
        Some("smoke") => smoke::run_command_smoke_test(&root),
        Some("plugins") => plugins::build_plugins().map(|dir| {
            println!("xtask: plugins built into {}", dir.display());
        }),
        Some("setup") => setup(&root),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            eprintln!("{USAGE}\n");
            bail!("unknown command `{other}`")
        }
        None => {
            eprintln!("{USAGE}\n");
            bail!("missing command")
        }
    }
}

/// anyhow's `{:#}` joins the causes with ": "; a cause that itself spans lines (a tool's
/// stderr) is folded so the error stays one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The README's run command. The host crate has several binaries (`switchboard`,
/// `switchboard-load`, `reference-sfu`), so the one to run is named.
fn run(root: &Path, extra: &[String]) -> Result<()> {
    let config = root.join("config.toml");
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("[[plugins]]"))
    {
        plugins::build_plugins().context("building the plugins config.toml loads")?;
    }
    let extra = extra.strip_prefix(&["--".to_string()]).unwrap_or(extra);
    let mut cmd = Command::new(cargo());
    cmd.args([
        "run",
        "--release",
        "-p",
        "switchboard",
        "--bin",
        "switchboard",
        "--",
        "--config",
    ])
    .arg(&config)
    .args(extra);
    // Ctrl-C reaches the whole foreground process group: the server shuts down gracefully on
    // it, and we wait for that instead of dying first and leaving it printing after the prompt.
    system::wait_through_interrupts();
    let what = "the server (`cargo run --release --bin switchboard`)";
    let status = cmd
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if status.signal() == Some(libc::SIGINT) {
        // Ctrl-C while cargo was still building: cargo stops at once, which is what was asked.
        bail!("interrupted (Ctrl-C) before the server started");
    }
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// How long `test` waits for `cargo xtask run` to start its release build before building
/// the tests (see [`smoke::Smoke::wait_until_building`]).
const SMOKE_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// The README's test command. A full run (no ARGS) also smoke-tests the README's run command:
/// it is started first so its release build overlaps the plugin and test builds, and checked
/// once they are done, before any test runs.
fn test(root: &Path, extra: &[String]) -> Result<()> {
    let started = std::time::Instant::now();
    let result = test_steps(root, extra);
    // CI has a time budget; the CPU time tells how much of the wall time was waiting.
    eprintln!(
        "xtask: test took {}s of wall time, {}s of CPU in the commands it ran",
        started.elapsed().as_secs(),
        system::children_cpu().as_secs()
    );
    result
}

fn test_steps(root: &Path, extra: &[String]) -> Result<()> {
    setup(root)?;
    let smoke = if extra.is_empty() {
        let mut smoke = smoke::Smoke::start(root)?;
        smoke.wait_until_building(SMOKE_START_TIMEOUT);
        Some(smoke)
    } else {
        eprintln!("xtask: test arguments given; skipping the smoke test of `cargo xtask run`");
        None
    };
    plugins::build_plugins()?;
    plugins::test_plugins()?;
    let cargo_test = || {
        let mut cmd = Command::new(cargo());
        cmd.args(["test", "--workspace", "--no-fail-fast"])
            .args(extra);
        cmd
    };
    let Some(smoke) = smoke else {
        return run_status(&mut cargo_test(), "cargo test");
    };
    run_status(
        cargo_test().arg("--no-run"),
        "building the tests (cargo test --no-run)",
    )?;
    // Checked even if it failed: the test results are worth having either way.
    let smoke = smoke.finish();
    let tests = run_status(&mut cargo_test(), "cargo test");
    match (tests, smoke) {
        (Ok(()), smoke) => smoke.context("smoke test of `cargo xtask run`"),
        (Err(tests), Ok(())) => Err(tests),
        (Err(tests), Err(smoke)) => {
            bail!("{tests:#}; and the smoke test of `cargo xtask run` failed: {smoke:#}")
        }
    }
}

/// Everything the tests need that cargo does not bring: Python modules (PyJWT for real JWTs,
/// PyAV for the FFmpeg WHIP publisher), OpenSSL's CLI, Chromium and the browser driver, and the
/// chain-auth tests' wallet libraries, local EVM node and Solidity compiler, the network
/// servers (coturn, nginx, Caddy) and s3s-fs for recording uploads. The plugins' wasm
/// toolchain is installed by `plugins`.
fn setup(root: &Path) -> Result<()> {
    python::ensure_test_prerequisites()?;
    browser::prepare_browser_tests(root)?;
    node::install_node_modules(
        &root.join("host").join("tests").join("chain"),
        "the chain-auth tests' npm dependencies (wallet libraries, ganache, solc)",
    )?;
    network_servers::ensure_network_servers()?;
    s3_server::ensure_s3_server()?;
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_folded_into_one_line() {
        let error = anyhow::anyhow!("error: could not compile\n\n  --> src/x.rs\n")
            .context("cargo metadata failed");
        assert_eq!(
            one_line(&format!("{error:#}")),
            "cargo metadata failed: error: could not compile --> src/x.rs"
        );
    }
}
