//! The machine around the build: who we run as, which programs answer, and installing Debian
//! packages when a test prerequisite is missing. Shared by every step that installs something.

use anyhow::{Context, Result, bail};
use std::process::Command;

/// How long apt-get waits for another apt/dpkg run to release its lock before failing.
const APT_LOCK_TIMEOUT_SECS: &str = "600";

/// Installs Debian packages when running as root; otherwise explains what to install.
/// `why` completes "<why>, but it is not installed".
pub fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    let list = packages.join(" ");
    if !is_root() {
        bail!("{why}, but it is not installed. Install it with `sudo apt-get install {list}`");
    }
    if command_stdout("apt-get", &["--version"]).is_none() {
        bail!("{why}, but it is not installed and apt-get is not available: install {list}");
    }
    eprintln!("xtask: {why}; installing {list} with apt-get");
    let lock_timeout = format!("DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_SECS}");
    let install = || {
        Command::new("apt-get")
            // Wait for another apt/dpkg run to finish instead of failing on its lock.
            .args(["-o", &lock_timeout, "install", "-y", "-q"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")
    };
    if install()?.success() {
        return Ok(());
    }
    eprintln!("xtask: apt-get install failed; refreshing the package lists and retrying");
    let updated = Command::new("apt-get")
        .args(["-o", &lock_timeout, "update"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get update")?;
    if !updated.success() || !install()?.success() {
        bail!("{why}, and `apt-get install -y {list}` failed; install it and retry");
    }
    Ok(())
}

/// Whether we run as root (effective uid 0), so apt-get may be used.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid(&status))
        .or_else(|| command_stdout("id", &["-u"]).and_then(|uid| uid.parse().ok()))
        == Some(0)
}

/// The effective user id from the `Uid:` line of `/proc/self/status` (real, effective, ...).
fn effective_uid(proc_status: &str) -> Option<u32> {
    proc_status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
}

/// Trimmed stdout of a successful command, or `None` if it cannot run or fails.
pub fn command_stdout(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs `cmd` to completion; an error names `what` and the exit status.
pub fn run_status(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// From now on SIGINT no longer ends this process: it interrupts a wait, which resumes. A
/// handler rather than `SIG_IGN`, because handlers reset to the default in the children we
/// start (an ignored signal would stay ignored in them): Ctrl-C still stops them, and we exit
/// with their status once they are done.
pub fn wait_through_interrupts() {
    extern "C" fn on_interrupt(_: libc::c_int) {}
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: installs an async-signal-safe handler that does nothing.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// User plus system CPU time of every child process that has ended and been waited for (and,
/// through them, of their own children): what a build or test run cost in CPU.
pub fn children_cpu() -> std::time::Duration {
    // SAFETY: getrusage only writes into the struct we hand it.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) != 0 {
            return std::time::Duration::ZERO;
        }
        usage
    };
    let micros = |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64;
    std::time::Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_uid() {
        let status =
            "Name:\tcargo\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t1000\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(effective_uid("Name:\tx\n"), None);
    }

    #[test]
    fn counts_the_cpu_of_ended_children() {
        let before = children_cpu();
        // Busy work in a child, waited for.
        let status = Command::new("sh")
            .args([
                "-c",
                "end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done",
            ])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(children_cpu() > before, "{before:?}");
    }
}
