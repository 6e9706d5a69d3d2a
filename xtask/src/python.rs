//! Prerequisites of the tests that use independent implementations through Python and the
//! OpenSSL CLI: PyJWT + cryptography mint real JWTs (`host/tests/support/`), PyAV's bundled
//! FFmpeg publishes over its `whip` muxer (`host/tests/ffmpeg_whip.rs`), `prometheus_client`
//! parses `/metrics` (`host/tests/metrics.rs`), `schemathesis` tests the served OpenAPI
//! document (`host/tests/openapi.rs`), `standardwebhooks` verifies webhook deliveries
//! (`host/tests/webhooks*.rs`), and `openssl` makes the certificates those tests hand
//! to their peers.

use crate::system::{apt_install, command_stdout};
use anyhow::{Context, Result, bail};
use std::process::Command;

/// pip requirement specs. PyAV 18 bundles FFmpeg 8, whose `whip` muxer the FFmpeg test uses
/// (FFmpeg 7.1 has it too, but PyAV's wheels jumped from 7.0 to 8).
const PYTHON_PACKAGES: [&str; 6] = [
    "pyjwt>=2.8",
    "cryptography>=42",
    "av>=18",
    "prometheus_client>=0.20",
    "schemathesis>=4",
    "standardwebhooks>=1.0",
];

/// Succeeds when every module imports and PyAV's FFmpeg has the `whip` muxer.
const PROBE: &str = "import jwt, cryptography, av, prometheus_client, schemathesis, standardwebhooks, sys; \
                     sys.exit(0 if 'whip' in av.formats_available else 3)";

/// Makes sure `python3` has PyJWT, cryptography and PyAV (with `whip`), and that `openssl` runs.
pub fn ensure_test_prerequisites() -> Result<()> {
    ensure_openssl()?;
    ensure_python_modules()
}

fn ensure_openssl() -> Result<()> {
    if command_stdout("openssl", &["version"]).is_some() {
        return Ok(());
    }
    apt_install(
        &["openssl"],
        "the OpenSSL command line tool makes the RSA and EC certificates the interop and FFmpeg \
         tests give their peers",
    )
}

fn ensure_python_modules() -> Result<()> {
    if command_stdout("python3", &["--version"]).is_none() {
        apt_install(
            &["python3", "python3-pip"],
            "python3 runs PyJWT (JWT tests), PyAV (the FFmpeg WHIP test), prometheus_client \
             and schemathesis (the metrics and OpenAPI tests)",
        )?;
    }
    if probe() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} with pip (PyJWT mints real JWTs; PyAV's FFmpeg publishes over WHIP; \
         prometheus_client parses /metrics; schemathesis tests the OpenAPI document)",
        PYTHON_PACKAGES.join(" ")
    );
    let pip = |break_system_packages: bool| {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_PACKAGES);
        if break_system_packages {
            // Debian's own python3 refuses system-wide pip installs (PEP 668); a test machine
            // may take them.
            cmd.env("PIP_BREAK_SYSTEM_PACKAGES", "1");
        }
        cmd.output().context("cannot run `python3 -m pip`")
    };
    let mut out = pip(false)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() && stderr.contains("externally-managed-environment") {
        eprintln!("xtask: this python3 is externally managed (PEP 668); installing anyway");
        out = pip(true)?;
    }
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`python3 -m pip install {}` failed ({}): {}",
            PYTHON_PACKAGES.join(" "),
            out.status,
            stderr.trim().lines().last().unwrap_or("no output")
        );
    }
    if !probe() {
        let av = command_stdout(
            "python3",
            &[
                "-c",
                "import av; print(av.__version__, av.library_versions['libavformat'])",
            ],
        )
        .unwrap_or_else(|| "not importable".into());
        bail!(
            "pip installed {} but the probe still fails (PyAV {av}); the FFmpeg test needs a \
             PyAV whose FFmpeg has the `whip` muxer (FFmpeg 7.1 or newer)",
            PYTHON_PACKAGES.join(" ")
        );
    }
    Ok(())
}

fn probe() -> bool {
    Command::new("python3")
        .args(["-c", PROBE])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
