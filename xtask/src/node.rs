//! Node.js test prerequisites shared by every suite that drives a script: Node.js with npm, and
//! a folder's locked npm dependencies. The browser test (`host/tests/e2e`, see `browser.rs`)
//! and the chain-auth tests (`host/tests/chain`: wallet libraries, ganache, solc) each keep
//! their own `package.json` and committed `package-lock.json`.

use crate::system::{apt_install, command_stdout};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

/// Oldest Node.js major version the test scripts support (ESM, `node:util` `parseArgs`).
const MIN_NODE_MAJOR: u32 = 18;
/// What npm writes into `node_modules` once an install has finished: its date says when.
const INSTALLED_MARKER: &str = ".package-lock.json";

/// Node.js (at least [`MIN_NODE_MAJOR`]) and npm, installed with apt-get when missing and
/// running as root.
pub fn ensure_node() -> Result<()> {
    let version = match command_stdout("node", &["--version"]) {
        Some(v) => v,
        None => {
            apt_install(
                &["nodejs", "npm"],
                "Node.js and npm are needed by the browser and chain-auth tests' scripts",
            )?;
            command_stdout("node", &["--version"])
                .context("`node --version` still fails after installing nodejs")?
        }
    };
    match node_major(&version) {
        Some(major) if major >= MIN_NODE_MAJOR => {}
        _ => bail!(
            "the tests' Node.js scripts need Node.js {MIN_NODE_MAJOR} or newer; `node --version` \
             says {version:?}"
        ),
    }
    if command_stdout("npm", &["--version"]).is_none() {
        apt_install(
            &["npm"],
            "npm is needed to install the test scripts' dependencies",
        )?;
    }
    Ok(())
}

/// `npm ci` in `dir` (exactly the versions in its committed package-lock.json) unless its
/// `node_modules` is already at least as new as the lock file. `what` names the dependencies
/// in the progress line.
pub fn install_node_modules(dir: &Path, what: &str) -> Result<()> {
    let lock = dir.join("package-lock.json");
    if !lock.is_file() {
        bail!("{} has no package-lock.json", dir.display());
    }
    if is_current(&dir.join("node_modules").join(INSTALLED_MARKER), &lock) {
        return Ok(());
    }
    eprintln!("xtask: installing {what} with npm ci in {}", dir.display());
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

/// Whether `installed` exists and is no older than `lock` (a pull that changes the lock file
/// makes it newer, and the next run reinstalls).
fn is_current(installed: &Path, lock: &Path) -> bool {
    let modified = |path: &Path| -> Option<SystemTime> { path.metadata().ok()?.modified().ok() };
    matches!((modified(installed), modified(lock)), (Some(i), Some(l)) if i >= l)
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

    #[test]
    fn installs_when_missing_or_older_than_the_lock() {
        let dir = std::env::temp_dir().join(format!("xtask-node-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (installed, lock) = (dir.join("installed"), dir.join("lock"));
        std::fs::write(&lock, "{}").unwrap();
        assert!(!is_current(&installed, &lock), "nothing installed yet");
        std::fs::write(&installed, "{}").unwrap();
        let set = |path: &Path, secs: u64| {
            let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        };
        set(&lock, 2_000);
        set(&installed, 1_000);
        assert!(
            !is_current(&installed, &lock),
            "the lock file changed since"
        );
        set(&installed, 3_000);
        assert!(is_current(&installed, &lock));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
