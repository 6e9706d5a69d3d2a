//! What the load tool reads from and asks of the operating system: a process's CPU time and
//! resident memory from `/proc`, pinning to a core, and the open-file limit.

use std::io;
use std::time::Duration;

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time of all the process's threads so far.
    pub cpu: Duration,
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
}

/// Sample `/proc/PID/stat` (utime + stime) and `/proc/PID/status` (VmRSS).
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| bad_data("/proc/PID/stat"))?;
    let rss_kib = parse_rss_kib(&status).ok_or_else(|| bad_data("VmRSS in /proc/PID/status"))?;
    Ok(ProcSample {
        cpu: ticks_to_duration(ticks),
        rss_kib,
    })
}

fn bad_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {what}"))
}

/// utime + stime in clock ticks. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

/// CPU time the whole machine spent busy (user, nice, system, irq, softirq, steal) so far,
/// from the first line of `/proc/stat`.
pub fn machine_busy() -> io::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks = parse_machine_busy_ticks(&stat).ok_or_else(|| bad_data("/proc/stat"))?;
    Ok(ticks_to_duration(ticks))
}

fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let busy = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| f.get(i))
        .sum();
    Some(busy)
}

/// Number of CPUs online on the machine (not just those this process is pinned to).
pub fn cpu_count() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Pin the calling thread to `core`; threads it creates afterwards inherit the mask, so call
/// this before building the async runtime.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    // SAFETY: `set` is a plain bitmask owned by this frame; CPU_ZERO/CPU_SET only write into
    // it, and sched_setaffinity(0, ..) reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raise the soft open-file limit to the hard limit (hundreds of peers, each with sockets).
/// Returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    // SAFETY: `lim` is a plain struct owned by this frame, read and written by the kernel.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(lim.rlim_cur as u64)
    }
}

/// A one-line description of the machine: CPU model, CPU count, kernel.
pub fn machine_summary() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown kernel".into());
    format!("{model}, {} CPUs, Linux {kernel}", cpu_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_paren() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 \
                    123 456789 1234 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\tswitchboard\nVmPeak:\t  99999 kB\nVmRSS:\t   20480 kB\nThreads:\t4\n";
        assert_eq!(parse_rss_kib(status), Some(20480));
    }

    #[test]
    fn machine_busy_time_skips_idle_and_iowait() {
        let stat = "cpu  100 5 50 9000 40 3 2 1 0 0\ncpu0 50 2 25 4500 20 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(161));
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("sample self");
        assert!(s.rss_kib > 0, "a running process has resident memory");
    }
}
