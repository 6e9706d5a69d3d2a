//! `log.format = "json"`: the server binary writes one JSON object per line (timestamp, level,
//! target, fields), which a log pipeline can parse line by line; `text` stays the default.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// Start the binary on `config`, collect stderr until `wanted` lines came (or 15 s), stop it.
fn first_lines(config: &str, wanted: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut lines = Vec::new();
    while lines.len() < wanted {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    lines
}

const BASE: &str = "[http]\nbind = \"127.0.0.1:0\"\n[webrtc]\nbind_ips = [\"127.0.0.1\"]\n";

#[test]
fn json_format_writes_one_object_per_line() {
    let lines = first_lines(&format!("{BASE}[log]\nformat = \"json\"\n"), 2);
    assert!(lines.len() >= 2, "the server logged at start: {lines:?}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(
            v["target"].as_str().unwrap().starts_with("switchboard"),
            "{line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("switchboard listening")),
        "{lines:?}"
    );
}

#[test]
fn text_format_is_the_default() {
    let lines = first_lines(BASE, 1);
    assert!(!lines.is_empty());
    assert!(
        serde_json::from_str::<serde_json::Value>(&lines[0]).is_err(),
        "text, not JSON: {}",
        lines[0]
    );
}
