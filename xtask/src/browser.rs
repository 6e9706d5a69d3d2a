//! Prerequisites of the browser end-to-end test (`host/tests/browser_e2e.rs`): a system Chromium,
//! Node.js with npm, and the locked npm dependencies of `host/tests/e2e` (playwright-core, which
//! drives the system Chromium and never downloads a browser of its own).

use crate::node::{ensure_node, install_node_modules};
use crate::system::apt_install;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// Where the Debian/Ubuntu `chromium` package puts the browser.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Makes sure the browser test can run: Chromium and Node.js are present (installed with apt-get
/// when missing and running as root) and `npm ci` has installed `host/tests/e2e/node_modules`.
pub fn prepare_browser_tests(root: &Path) -> Result<()> {
    ensure_chromium()?;
    ensure_node()?;
    install_node_modules(
        &root.join("host").join("tests").join("e2e"),
        "the browser test's npm dependencies",
    )
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
