//! End to end in a real browser: headless Chromium with a fake camera and microphone publishes
//! from the embedded `/publish` page (WHIP) and plays on the embedded `/play` page (WHEP), and the
//! play page's `getStats()` must show decoded video frames and received audio packets.
//!
//! The browser is driven by `tests/e2e/browser.mjs` (Node.js + playwright-core, using the system
//! Chromium; no browser is ever downloaded). Its dependencies are installed by `cargo xtask test`
//! (`npm ci` in `host/tests/e2e`). Chromium is looked up at `$CHROMIUM_BIN`, else
//! `/usr/bin/chromium` (Debian package `chromium`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use switchboard::config::Config;
use switchboard::server::Server;
use tokio::io::AsyncReadExt;

/// How long the browser script may take beyond its own deadline before it is killed: time to
/// report and clean up.
const BROWSER_GRACE: Duration = Duration::from_secs(15);
/// The script's own deadline, per scenario.
const SCRIPT_TIMEOUT_MS: u64 = 45_000;
const SIMULCAST_SCRIPT_TIMEOUT_MS: u64 = 90_000;
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("e2e")
}

fn chromium_bin() -> PathBuf {
    std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails with instructions when the browser test's prerequisites are missing.
fn check_prerequisites(dir: &Path) {
    let module = dir
        .join("node_modules")
        .join("playwright-core")
        .join("package.json");
    assert!(
        module.is_file(),
        "the browser test's Node.js dependencies are not installed ({} is missing).\n\
         Run the tests with `cargo xtask test`, which installs them, or run \
         `npm ci --no-audit --no-fund` in {}.",
        module.display(),
        dir.display()
    );
    let chromium = chromium_bin();
    assert!(
        chromium.is_file(),
        "Chromium not found at {}. Run the tests with `cargo xtask test`, which installs the \
         Debian package `chromium` when run as root, or install it yourself \
         (`sudo apt-get install chromium`), or set CHROMIUM_BIN to a Chromium/Chrome binary.",
        chromium.display()
    );
}

/// Sends `signal` to a whole process group. Errors (the group is already gone) are ignored.
fn signal_group(pgid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills the whole process group of the browser script (node, Chromium and Chromium's helper
/// processes) when dropped: on success, failure, timeout or panic alike.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        signal_group(self.0, "KILL");
    }
}

struct ScriptRun {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

/// Runs `node browser.mjs <base> <extra>` in its own process group, bounded by its deadline
/// plus [`BROWSER_GRACE`].
async fn run_browser_script(dir: &Path, base: &str, timeout_ms: u64, extra: &[&str]) -> ScriptRun {
    let mut child = tokio::process::Command::new("node")
        .arg("browser.mjs")
        .arg(base)
        .arg("--timeout-ms")
        .arg(timeout_ms.to_string())
        .args(extra)
        .current_dir(dir)
        .env("CHROMIUM_BIN", chromium_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` (is Node.js installed and on PATH?): {e}"));
    let pgid = child.id().expect("the child has not been awaited yet");
    let _group = ProcessGroup(pgid);

    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    // `read_to_end` keeps what it has read if its future is dropped, so output survives a timeout.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut timed_out = false;
    let mut status = None;
    let limit = Duration::from_millis(timeout_ms) + BROWSER_GRACE;
    for (limit, last_chance) in [(limit, false), (Duration::from_secs(5), true)] {
        let finished = tokio::time::timeout(limit, async {
            let (_, _, status) = tokio::join!(
                out.read_to_end(&mut stdout),
                err.read_to_end(&mut stderr),
                child.wait()
            );
            status
        })
        .await;
        match finished {
            Ok(exit) => {
                status = exit.ok();
                break;
            }
            // Let the script stop Chromium and delete its profile; `_group` kills what remains.
            Err(_) if !last_chance => {
                timed_out = true;
                signal_group(pgid, "TERM");
            }
            Err(_) => {}
        }
    }
    ScriptRun {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
    }
}

fn number(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// Start a server, run the browser script against it, shut the server down, and return the
/// script's JSON result (asserting it succeeded) and how long it took.
async fn browser_run(timeout_ms: u64, extra: &[&str]) -> (Value, Duration) {
    let dir = e2e_dir();
    check_prerequisites(&dir);

    let config = Config::from_toml_str("[http]\nbind = \"127.0.0.1:0\"\n").expect("test config");
    let server = tokio::time::timeout(SETUP_TIMEOUT, Server::start(config))
        .await
        .expect("server started in time")
        .expect("server starts");
    let base = format!("http://{}", server.http_addr());

    let started = Instant::now();
    let run = run_browser_script(&dir, &base, timeout_ms, extra).await;
    let elapsed = started.elapsed();
    // Shut the server down before asserting so a failure does not leak its sessions.
    if tokio::time::timeout(SETUP_TIMEOUT, server.shutdown())
        .await
        .is_err()
    {
        eprintln!("server shutdown took longer than {SETUP_TIMEOUT:?}");
    }

    eprintln!("--- browser.mjs stderr ---\n{}", run.stderr.trim_end());
    assert!(
        !run.timed_out,
        "the browser script did not finish within {timeout_ms} ms + {BROWSER_GRACE:?}; it was killed"
    );
    let line = run
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "the browser script printed no JSON result (exit {:?}); stdout:\n{}",
                run.status, run.stdout
            )
        });
    let result: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("the browser script's result is not JSON ({e}): {line}"));
    let pretty = serde_json::to_string_pretty(&result).unwrap_or_default();

    assert_eq!(
        result["ok"],
        Value::Bool(true),
        "browser end-to-end failed: {}\nfull result:\n{pretty}",
        result["error"]
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "the browser script reported success but exited with {:?}",
        run.status
    );
    (result, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_publishes_and_plays_through_embedded_pages() {
    let (result, elapsed) = browser_run(SCRIPT_TIMEOUT_MS, &[]).await;
    let pretty = serde_json::to_string_pretty(&result).unwrap_or_default();

    let frames = number(&result, "/play/stats/inbound/video/framesDecoded");
    let video_packets = number(&result, "/play/stats/inbound/video/packetsReceived");
    let audio_packets = number(&result, "/play/stats/inbound/audio/packetsReceived");
    let sent_video = number(&result, "/publish/stats/outbound/video/packetsSent");
    let sent_audio = number(&result, "/publish/stats/outbound/audio/packetsSent");
    println!(
        "browser e2e in {elapsed:.1?}: published {sent_video} video / {sent_audio} audio packets; \
         played {video_packets} video packets, framesDecoded = {frames} ({} {}x{}), \
         {audio_packets} audio packets ({})",
        result
            .pointer("/play/stats/inbound/video/codec")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        number(&result, "/play/stats/inbound/video/frameWidth"),
        number(&result, "/play/stats/inbound/video/frameHeight"),
        result
            .pointer("/play/stats/inbound/audio/codec")
            .and_then(Value::as_str)
            .unwrap_or("?"),
    );
    println!(
        "play transport: {}",
        result
            .pointer("/play/stats/candidatePair")
            .unwrap_or(&Value::Null)
    );

    assert!(
        sent_video > 0,
        "the publish page sent no video packets:\n{pretty}"
    );
    assert!(
        sent_audio > 0,
        "the publish page sent no audio packets:\n{pretty}"
    );
    assert!(
        frames > 0,
        "the play page decoded no video frames:\n{pretty}"
    );
    let first = number(&result, "/play/firstFramesDecoded");
    assert!(
        frames > first,
        "video stalled after the first {first} decoded frames:\n{pretty}"
    );
    assert!(
        audio_packets > 0,
        "the play page received no audio packets:\n{pretty}"
    );
    assert_eq!(
        result["play"]["stats"]["connectionState"], "connected",
        "play connection state:\n{pretty}"
    );
    assert_eq!(
        result["play"]["sse"]["live"],
        Value::Bool(true),
        "the play page learned from server-sent events that the room is live:\n{pretty}"
    );
    assert!(
        result["play"]["sse"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Publisher live") && t.contains("watching")),
        "{pretty}"
    );
    let refused = result["refusedStatus"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with("Error: HTTP 400") && refused.len() > "Error: HTTP 400".len() + 5,
        "an invalid room name should show the server's 400 answer and message, got {refused:?}"
    );
    // The viewer posts its offer before gathering and trickles every candidate with PATCH.
    let patches: Vec<u64> = result["play"]["patchStatuses"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert!(
        !patches.is_empty() && patches.iter().all(|s| (200..300).contains(s)),
        "trickle ICE PATCHes of the play page should all succeed, got {patches:?}:\n{pretty}"
    );
    for page in ["publish", "play"] {
        let status = result[page]["deleteStatus"].as_u64();
        assert!(
            status.is_some_and(|s| (200..300).contains(&s)),
            "DELETE of the {page} session answered {status:?}, expected 2xx:\n{pretty}"
        );
    }
}

/// Chromium publishes simulcast from the publish page (`simulcast=1`); the viewer decodes the
/// top layer, keeps decoding a smaller one when the top layer is turned off on the publisher,
/// and returns to the top layer when it is turned back on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_simulcast_viewer_follows_layer_switches_without_corruption() {
    let (result, elapsed) = browser_run(SIMULCAST_SCRIPT_TIMEOUT_MS, &["--simulcast"]).await;
    let pretty = serde_json::to_string_pretty(&result).unwrap_or_default();
    let sim = &result["simulcast"];
    let top = sim["topWidth"].as_u64().unwrap_or(0);
    let steps: Vec<&Value> = sim["steps"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let field = |i: usize, name: &str| steps.get(i).and_then(|s| s[name].as_u64()).unwrap_or(0);
    println!(
        "browser simulcast in {elapsed:.1?}: {}",
        serde_json::to_string(sim).unwrap_or_default()
    );
    assert_eq!(steps.len(), 3, "top, down, up:\n{pretty}");
    assert!(top > 0, "{pretty}");
    assert!(
        field(0, "frameWidth") >= top,
        "the viewer reached the top layer:\n{pretty}"
    );
    assert!(
        field(1, "frameWidth") > 0 && field(1, "frameWidth") < top,
        "the viewer moved to a smaller layer when the top one stopped:\n{pretty}"
    );
    assert!(field(2, "frameWidth") >= top, "and back up:\n{pretty}");
    // Decoding never stopped, and each switch brought a keyframe with it.
    assert!(
        field(1, "framesDecoded") > field(0, "framesDecoded"),
        "{pretty}"
    );
    assert!(
        field(2, "framesDecoded") > field(1, "framesDecoded"),
        "{pretty}"
    );
    assert!(
        field(1, "keyFramesDecoded") > field(0, "keyFramesDecoded"),
        "{pretty}"
    );
    assert!(
        field(2, "keyFramesDecoded") > field(1, "keyFramesDecoded"),
        "{pretty}"
    );
    // A decoder fed a switch off a keyframe (or interleaved layers) asks for keyframes itself,
    // at every switch; a few requests can also come from loss on a busy machine.
    assert!(
        field(2, "pliCount") <= 3,
        "the viewer's decoder asked for keyframes:\n{pretty}"
    );
}
