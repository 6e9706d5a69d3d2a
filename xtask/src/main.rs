//! `cargo xtask <command>`: the project's build, run and test entry points.
//!
//! - `run [-- ARGS]`: build (release) and run the server on `config.toml`.
//! - `test`: install what the tests need, build the plugins, run the whole test suite.
//! - `plugins`: build every plugin into a WebAssembly component under `target/plugins/`.
//! - `setup`: only the installation step of `test`.

mod browser;
mod plugins;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("run") => run(&root, &args[1..]),
        Some("test") => test(&root, &args[1..]),
        Some("plugins") => plugins::build_plugins().map(|dir| {
            println!("xtask: plugins built into {}", dir.display());
        }),
        Some("setup") => setup(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <run|test|plugins|setup>\n\
                 \n  run [-- ARGS]   build and run the server on config.toml\
                 \n  test [ARGS]     install test prerequisites, build plugins, run all tests\
                 \n  plugins         build the WebAssembly plugins into target/plugins/\
                 \n  setup           install test prerequisites only"
            );
            bail!("unknown or missing command")
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(root: &Path, extra: &[String]) -> Result<()> {
    let config = root.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("[[plugins]]"))
    {
        plugins::build_plugins()?;
    }
    let extra = extra.strip_prefix(&["--".to_string()]).unwrap_or(extra);
    let mut cmd = Command::new(cargo());
    cmd.args(["run", "--release", "-p", "switchboard", "--", "--config"])
        .arg(&config)
        .args(extra);
    status(&mut cmd, "cargo run")
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    setup(root)?;
    plugins::build_plugins()?;
    plugins::test_plugins()?;
    let mut cmd = Command::new(cargo());
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .args(extra);
    status(&mut cmd, "cargo test")
}

/// Everything the tests need that cargo does not bring: Python JWT minting, Chromium and the
/// browser driver, the ffmpeg-free toolchain for plugins (installed by `plugins`).
fn setup(root: &Path) -> Result<()> {
    ensure_python_modules()?;
    browser::prepare_browser_tests(root)?;
    Ok(())
}

fn ensure_python_modules() -> Result<()> {
    let probe = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .status();
    if matches!(probe, Ok(s) if s.success()) {
        return Ok(());
    }
    println!("xtask: installing PyJWT and cryptography (used by tests to mint real JWTs)");
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "pyjwt>=2.8",
        "cryptography>=42",
    ]);
    status(&mut cmd, "pip install pyjwt cryptography")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn status(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}
