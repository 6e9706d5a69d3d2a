//! The browser script (`host/tests/e2e/browser.mjs`: headless Chromium on the embedded pages)
//! run by tests that bring their own set-up (a TURN server, a network namespace).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// `host/tests/e2e`, with its Node packages installed.
pub fn script_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in host/tests/e2e (the test command does)"
    );
    dir
}

/// `node browser.mjs <args>` as `node` (a command that runs node, e.g. inside a network
/// namespace): its JSON result, or a panic with everything it printed.
pub async fn run(mut node: tokio::process::Command, args: &[&str]) -> serde_json::Value {
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut child = node
        .arg("browser.mjs")
        .args(args)
        .current_dir(script_dir())
        .env("CHROMIUM_BIN", chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let _group = KillGroup(child.id().unwrap());
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(90), async {
        let (_, _, status) = tokio::join!(
            out.read_to_string(&mut stdout),
            err.read_to_string(&mut stderr),
            child.wait()
        );
        status
    })
    .await
    .expect("the browser script finishes")
    .unwrap();
    assert!(
        status.success(),
        "the browser did not get media end to end:\n{stdout}\n{stderr}"
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON result");
    assert_eq!(result["ok"], true, "{result}");
    result
}

/// Kills a process group (the script, Chromium and its helpers) when dropped.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}
