//! The S3-compatible server the recording upload tests use (`host/tests/recording_upload.rs`):
//! s3s-fs, a file-system-backed S3 server that checks SigV4 signatures, installed with
//! `cargo install` into cargo's bin directory when missing (no Debian package has one).

use crate::system::run_status;
use anyhow::Result;
use std::path::PathBuf;
use std::process::Command;

/// The release that builds with this machine's Rust (later ones need a newer toolchain).
const S3S_FS_VERSION: &str = "0.14.1";

/// Install s3s-fs unless cargo's bin directory already has it.
pub fn ensure_s3_server() -> Result<()> {
    if cargo_bin().join("s3s-fs").is_file() {
        return Ok(());
    }
    eprintln!(
        "xtask: s3s-fs is needed by the recording upload tests; installing it with cargo install"
    );
    let mut cmd = Command::new(crate::cargo());
    cmd.args([
        "install",
        "s3s-fs",
        "--version",
        S3S_FS_VERSION,
        "--features",
        "binary",
        "--locked",
    ]);
    // Its own build directory: a shared CARGO_TARGET_DIR would mix its profile with ours.
    cmd.env_remove("CARGO_TARGET_DIR");
    run_status(&mut cmd, "cargo install s3s-fs")
}

/// Where `cargo install` puts binaries.
fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default()
        .join("bin")
}
