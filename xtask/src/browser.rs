//! Prerequisites of the browser end-to-end test (`host/tests/browser_e2e.rs`): a system Chromium,
//! Node.js with npm, and the locked npm dependencies of `host/tests/e2e` (playwright-core, which
//! drives the system Chromium and never downloads a browser of its own).

use crate::system::{apt_install, command_stdout};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the Debian/Ubuntu `chromium` package puts the browser.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// Oldest Node.js major version the test script supports.
const MIN_NODE_MAJOR: u32 = 18;

/// Makes sure the browser test can run: Chromium and Node.js are present (installed with apt-get
/// when missing and running as root) and `npm ci` has installed `host/tests/e2e/node_modules`.
pub fn prepare_browser_tests(root: &Path) -> Result<()> {
    ensure_chromium()?;
    ensure_node()?;
    install_node_modules(&root.join("host").join("tests").join("e2e"))
}

/// The Chromium the test will use: `$CHROMIUM_BIN` if set, else [`DEFAULT_CHROMIUM`].
fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM))
}

fn ensure_chromium() -> Result<()> {
    let path = chromium_path();
    if path.is_file() {
        return Ok(());
    }
    if std::env::var_os("CHROMIUM_BIN").is_some() {
        bail!(
            "CHROMIUM_BIN is set to {}, which does not exist; point it at a Chromium or Chrome \
             binary, or unset it to use {DEFAULT_CHROMIUM}",
            path.display()
        );
    }
    apt_install(
        &["chromium"],
        "Chromium (Debian package `chromium`) is needed by the browser end-to-end test",
    )?;
    if !path.is_file() {
        bail!(
            "apt-get installed `chromium` but {} still does not exist; set CHROMIUM_BIN to the \
             browser binary",
            path.display()
        );
    }
    Ok(())
}

fn ensure_node() -> Result<()> {
    let version = match command_stdout("node", &["--version"]) {
        Some(v) => v,
        None => {
            apt_install(
                &["nodejs", "npm"],
                "Node.js and npm are needed to drive Chromium in the browser end-to-end test",
            )?;
            command_stdout("node", &["--version"])
                .context("`node --version` still fails after installing nodejs")?
        }
    };
    match node_major(&version) {
        Some(major) if major >= MIN_NODE_MAJOR => {}
        _ => bail!(
            "the browser end-to-end test needs Node.js {MIN_NODE_MAJOR} or newer; `node --version` \
             says {version:?}"
        ),
    }
    if command_stdout("npm", &["--version"]).is_none() {
        apt_install(
            &["npm"],
            "npm is needed to install the browser test's dependencies",
        )?;
    }
    Ok(())
}

/// `npm ci` in the e2e folder: exactly the versions in its committed package-lock.json.
fn install_node_modules(dir: &Path) -> Result<()> {
    if !dir.join("package-lock.json").is_file() {
        bail!("{} has no package-lock.json", dir.display());
    }
    eprintln!(
        "xtask: installing the browser test's npm dependencies in {}",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        // playwright-core never downloads browsers; make sure nothing else tries either.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status()
        .context("cannot run `npm`")?;
    if !status.success() {
        bail!(
            "`npm ci --no-audit --no-fund` failed in {} ({status}); the npm registry must be \
             reachable (or its packages cached in ~/.npm)",
            dir.display()
        );
    }
    Ok(())
}

/// The major version from `node --version` output such as `v20.11.1`.
fn node_major(version: &str) -> Option<u32> {
    version
        .trim()
        .strip_prefix('v')?
        .split('.')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_versions() {
        assert_eq!(node_major("v20.20.2\n"), Some(20));
        assert_eq!(node_major("v18.0.0"), Some(18));
        assert_eq!(node_major("20.1.0"), None);
        assert_eq!(node_major(""), None);
    }
}
