//! Smoke test of the README's run command, run as a person would: `cargo xtask run` from the
//! repository root, in its own process group, until `GET /healthz` answers; then the publish
//! page must be served, and Ctrl-C (SIGINT to the whole group, as a terminal sends it) must stop
//! everything cleanly.
//!
//! The only setting changed is the HTTP port (`SWITCHBOARD_HTTP__BIND`, which the server
//! honours), so the test never collides with a server already on 8080. The command's output
//! goes to `target/xtask-smoke/run.log`; progress and, on failure, the log's last lines are
//! printed here.

use crate::plugins::target_dir;
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long `/healthz` may take to answer: the first run builds the release binary, about
/// 15 minutes from clean on a 2-core machine, plus slack for a slower or busier one.
const READY_TIMEOUT: Duration = Duration::from_secs(25 * 60);
/// How often a progress line is printed while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);
/// Between two looks at the process and the port.
const POLL: Duration = Duration::from_millis(500);
/// One HTTP request (connect, send, read the whole answer).
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// From SIGINT to every process of the group gone: the server closes its sessions (none here)
/// and then HTTP, so a few seconds; generous for a loaded CI machine.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the command's log printed when something goes wrong.
const LOG_TAIL_LINES: usize = 25;
/// What identifies the embedded publish page (host/src/web/publish.html).
const PUBLISH_PAGE_MARKERS: [&str; 2] = ["<title>Publish", "data-page=\"publish\""];
/// What the server prints when it has shut down gracefully (host/src/main.rs).
const STOPPED_LINE: &str = "switchboard stopped";

/// Runs the smoke test from start to end; the error says which expectation failed.
pub fn run_command_smoke_test(root: &Path) -> Result<()> {
    Smoke::start(root)?.finish()
}

/// A smoke test under way: `cargo xtask run` started, not yet checked.
///
/// `cargo xtask test` starts it before building the tests, so the release build it triggers
/// overlaps the plugin and test builds (cargo locks `target/release` and `target/debug`
/// separately), and checks it once they are built and before any test runs, so no test
/// shares the CPU with the release build.
pub struct Smoke {
    run: RunCommand,
    base: String,
    started: Instant,
}

impl Smoke {
    /// Spawns `cargo xtask run` on a free port.
    pub fn start(root: &Path) -> Result<Smoke> {
        let port = free_port()?;
        let log_dir = target_dir(root).join("xtask-smoke");
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("cannot create {}", log_dir.display()))?;
        let log_path = log_dir.join("run.log");
        eprintln!(
            "xtask smoke: running `cargo xtask run` in {} with \
             SWITCHBOARD_HTTP__BIND=127.0.0.1:{port} (output: {}); the first run builds the \
             release binary, about 15 min on 2 cores",
            root.display(),
            log_path.display()
        );
        Ok(Smoke {
            run: RunCommand::spawn(root, port, &log_path)?,
            base: format!("http://127.0.0.1:{port}"),
            started: Instant::now(),
        })
    }

    /// Waits (at most `timeout`) until the command has printed something: the `cargo run
    /// --release` it starts has then taken its own lock, and a debug build started next no
    /// longer blocks the xtask build that comes first. Returns early if the command exits.
    pub fn wait_until_building(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let printed = std::fs::metadata(&self.run.log_path).is_ok_and(|m| m.len() > 0);
            if printed || !matches!(self.run.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for `/healthz`, checks `/publish`, stops the command with Ctrl-C.
    pub fn finish(mut self) -> Result<()> {
        let result = drive(&mut self.run, &self.base, self.started);
        if result.is_err() {
            print_log_tail(&self.run.log_path);
        }
        result
    }
}

fn drive(run: &mut RunCommand, base: &str, started: Instant) -> Result<()> {
    wait_until_healthy(run, base, started)?;
    let ready_after = started.elapsed();
    eprintln!(
        "xtask smoke: {base}/healthz answered 200 when asked, {} after `cargo xtask run` started",
        minutes(ready_after)
    );
    check_publish_page(base)?;
    let stopping = Instant::now();
    let status = run.interrupt_and_wait()?;
    if !status.success() {
        bail!("`cargo xtask run` exited with {status} after Ctrl-C (SIGINT); expected success");
    }
    let log = std::fs::read_to_string(&run.log_path).unwrap_or_default();
    if !log.contains(STOPPED_LINE) {
        bail!(
            "after Ctrl-C the server did not print `{STOPPED_LINE}` (see {})",
            run.log_path.display()
        );
    }
    eprintln!(
        "xtask smoke: ok — `cargo xtask run` served /healthz and /publish (checked {} after it \
         started) and stopped cleanly {:.1}s after Ctrl-C",
        minutes(ready_after),
        stopping.elapsed().as_secs_f64()
    );
    Ok(())
}

fn wait_until_healthy(run: &mut RunCommand, base: &str, started: Instant) -> Result<()> {
    let url = format!("{base}/healthz");
    let mut next_progress = started + PROGRESS_EVERY;
    loop {
        if let Some(status) = run
            .child
            .try_wait()
            .context("cannot wait for `cargo xtask run`")?
        {
            bail!(
                "`cargo xtask run` exited ({status}) after {} before {url} answered: {}",
                minutes(started.elapsed()),
                last_line(&run.log_path)
            );
        }
        match http_get(&url) {
            Ok(answer) if answer.status == 200 => return Ok(()),
            Ok(answer) => bail!("{url} answered {} instead of 200", answer.status),
            Err(_) => {}
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!(
                "{url} did not answer within {} of starting `cargo xtask run`; it says: {}",
                minutes(READY_TIMEOUT),
                last_line(&run.log_path)
            );
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            eprintln!(
                "xtask smoke: {} waiting for {url}; `cargo xtask run` says: {}",
                minutes(started.elapsed()),
                last_line(&run.log_path)
            );
        }
        std::thread::sleep(POLL);
    }
}

fn check_publish_page(base: &str) -> Result<()> {
    let url = format!("{base}/publish");
    let answer = http_get(&url).with_context(|| format!("GET {url}"))?;
    if answer.status != 200 {
        bail!("GET {url} answered {} instead of 200", answer.status);
    }
    let content_type = answer.header("content-type").unwrap_or_default();
    if !content_type.starts_with("text/html") {
        bail!("GET {url} answered Content-Type {content_type:?}, expected text/html");
    }
    let body = String::from_utf8_lossy(&answer.body);
    if let Some(missing) = PUBLISH_PAGE_MARKERS.iter().find(|m| !body.contains(*m)) {
        bail!(
            "GET {url} answered 200 HTML without the publish page's `{missing}` ({} bytes)",
            body.len()
        );
    }
    eprintln!(
        "xtask smoke: {url} answered 200 text/html, the publish page ({} bytes)",
        body.len()
    );
    Ok(())
}

/// `cargo xtask run` in its own process group; the group is killed if we leave early.
struct RunCommand {
    child: Child,
    /// Process group id (= the child's pid).
    pgid: libc::pid_t,
    log_path: PathBuf,
}

impl RunCommand {
    fn spawn(root: &Path, port: u16, log_path: &Path) -> Result<RunCommand> {
        let log = std::fs::File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut cmd = Command::new("cargo");
        cmd.args(["xtask", "run"])
            .current_dir(root)
            .env("SWITCHBOARD_HTTP__BIND", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot duplicate the log file")?)
            .stderr(log)
            // Its own group, so SIGINT reaches every process the command starts, as a
            // terminal's Ctrl-C does, and nothing of ours.
            .process_group(0);
        // What `cargo run` set for us describes xtask, not a person's shell.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || matches!(
                    key.as_ref(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                )
            {
                cmd.env_remove(key.as_ref());
            }
        }
        let child = cmd
            .spawn()
            .context("cannot start `cargo xtask run` (is cargo on PATH?)")?;
        let pgid = libc::pid_t::try_from(child.id()).context("process id out of range")?;
        Ok(RunCommand {
            child,
            pgid,
            log_path: log_path.to_owned(),
        })
    }

    /// Ctrl-C to the whole group, then wait for the command and every process it started.
    fn interrupt_and_wait(&mut self) -> Result<ExitStatus> {
        signal_group(self.pgid, libc::SIGINT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("cannot wait for the command")?
            {
                break status;
            }
            if Instant::now() > deadline {
                bail!(
                    "`cargo xtask run` was still running {}s after Ctrl-C (SIGINT)",
                    STOP_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while group_alive(self.pgid) {
            if Instant::now() > deadline {
                bail!(
                    "`cargo xtask run` exited but processes of its group were still running {}s \
                     after Ctrl-C (SIGINT)",
                    STOP_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(status)
    }
}

impl Drop for RunCommand {
    fn drop(&mut self) {
        if group_alive(self.pgid) {
            signal_group(self.pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals the process group we created.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Whether any process of the group is left (a zombie of our own child counts until reaped).
fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the group exists and may be signalled.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// A port free right now on loopback (the OS picks it; the listener is closed at once).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot bind a loopback port to find a free one")?;
    Ok(listener.local_addr()?.port())
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain `GET` over HTTP/1.0: the server answers with the whole body and closes, so no
/// chunked encoding or keep-alive to handle and no HTTP client dependency.
fn http_get(url: &str) -> Result<Answer> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are fetched")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = authority
        .parse()
        .with_context(|| format!("{authority} is not an IP address and port"))?;
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let path = if path.is_empty() { "/" } else { path };
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: xtask-smoke\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Result<Answer> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the answer has no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// The log's last non-empty line, trimmed, for progress and error lines.
fn last_line(log: &Path) -> String {
    tail(log, 1)
        .pop()
        .unwrap_or_else(|| "(no output yet: `cargo xtask` first builds xtask, quietly)".into())
}

fn tail(log: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<String> = text
        .lines()
        // cargo redraws its progress bar with carriage returns; keep the last drawing.
        .filter_map(|l| l.rsplit('\r').find(|part| !part.trim().is_empty()))
        .map(|l| l.trim().to_owned())
        .collect();
    all[all.len().saturating_sub(lines)..].to_vec()
}

fn print_log_tail(log: &Path) {
    let lines = tail(log, LOG_TAIL_LINES);
    if lines.is_empty() {
        return;
    }
    eprintln!("xtask smoke: last lines of {}:", log.display());
    for line in lines {
        eprintln!("    {line}");
    }
}

/// `14m03s`, or `42s` under a minute.
fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_http_answer() {
        let raw = b"HTTP/1.0 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                    content-length: 5\r\n\r\n<html";
        let answer = parse_answer(raw).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(answer.body, b"<html");
        assert!(parse_answer(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(parse_answer(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn formats_durations_as_minutes() {
        assert_eq!(minutes(Duration::from_secs(42)), "42s");
        assert_eq!(minutes(Duration::from_secs(843)), "14m03s");
    }

    #[test]
    fn the_publish_page_has_the_markers_we_look_for() {
        let page = include_str!("../../host/src/web/publish.html");
        for marker in PUBLISH_PAGE_MARKERS {
            assert!(page.contains(marker), "{marker}");
        }
    }

    /// The whole smoke check against a stand-in for `cargo xtask run`: a process group whose
    /// leader answers HTTP until SIGINT. Exercises the polling, the page check and the stop.
    #[test]
    fn stops_the_whole_group_on_interrupt() {
        let dir = std::env::temp_dir().join(format!("xtask-smoke-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log_path = dir.join("run.log");
        let port = free_port().unwrap();
        let page = include_str!("../../host/src/web/publish.html");
        std::fs::write(dir.join("publish"), page).unwrap();
        std::fs::write(dir.join("healthz"), "ok").unwrap();
        // python3's http.server serves the two files; a `sleep` child shares its group, so
        // the test also sees that the whole group is stopped; trap prints the stop line.
        let script = format!(
            "sleep 600 & s=$!; \
             python3 -m http.server {port} --bind 127.0.0.1 --directory {} & p=$!; \
             trap 'kill $s $p; wait; echo {STOPPED_LINE}; exit 0' INT; wait $p",
            dir.display()
        );
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new("bash")
            .args(["-c", &script])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as libc::pid_t;
        let mut run = RunCommand {
            child,
            pgid,
            log_path,
        };
        let base = format!("http://127.0.0.1:{port}");
        wait_until_healthy(&mut run, &base, Instant::now()).unwrap();
        let err = check_publish_page(&base).unwrap_err().to_string();
        // http.server guesses no type for an extension-less file.
        assert!(err.contains("Content-Type"), "{err}");
        let status = run.interrupt_and_wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(!group_alive(pgid));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
