//! Helpers of the observability tests (`admin.rs`, `metrics.rs`, `openapi.rs`): independent
//! tools through Python — `prometheus_client`'s text parser reads `/metrics`, `schemathesis`
//! tests the served OpenAPI document — installed with pip on first use (`cargo xtask test`
//! installs them up front), and a few HTTP shorthands.
#![allow(dead_code)] // Each test binary uses a different subset.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The admin token the tests configure.
pub const ADMIN_TOKEN: &str = "adm1n-t0ken-for-observability-tests";

/// `[admin] token = ...` for a test server's config.
pub fn admin_config() -> String {
    format!("[admin]\ntoken = \"{ADMIN_TOKEN}\"\n")
}

/// A GET/DELETE/POST against the admin API with the token; returns status and JSON body.
pub async fn admin(method: reqwest::Method, url: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin request");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("admin body");
    (
        status,
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "admin answers JSON, got {:?}",
                String::from_utf8_lossy(&body)
            )
        }),
    )
}

/// Make sure `python3` can import `module`, installing `package` with pip once if needed.
pub fn ensure_python_module(module: &str, package: &str) {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _one_at_a_time = LOCK.get_or_init(Default::default).lock();
    let importable = || {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return;
    }
    let install = |break_system: bool| {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            package,
        ]);
        if break_system {
            cmd.env("PIP_BREAK_SYSTEM_PACKAGES", "1"); // Debian's python3 (PEP 668)
        }
        cmd.status().is_ok_and(|s| s.success())
    };
    let _ = install(false) || install(true);
    assert!(
        importable(),
        "could not install {package}: run `python3 -m pip install {package}`"
    );
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/observe")
        .join(name)
}

/// `/metrics` text parsed by `prometheus_client`: `{"families": {name: type}, "samples":
/// [{"name", "labels", "value"}]}`. Panics if the parser rejects the text.
pub fn parse_metrics(text: &str) -> Value {
    ensure_python_module("prometheus_client", "prometheus_client");
    let mut child = Command::new("python3")
        .arg(script("parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("parse_metrics.py output");
    assert!(
        out.status.success(),
        "prometheus_client rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parse_metrics.py prints JSON")
}

/// The value of the sample `name` whose labels include `labels`, if any.
pub fn sample(parsed: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parsed["samples"].as_array()?.iter().find_map(|s| {
        let matches = s["name"] == name
            && labels
                .iter()
                .all(|(k, v)| s["labels"][*k].as_str() == Some(*v));
        matches.then(|| s["value"].as_f64()).flatten()
    })
}
