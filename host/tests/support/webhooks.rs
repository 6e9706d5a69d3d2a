//! Webhook consumers for the tests: `webhook_consumer.py` verifies every delivery with the
//! `standardwebhooks` package (the scheme's reference library, installed by `cargo xtask test`
//! or, for a lone `cargo test`, here), so signatures are checked by an independent
//! implementation.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The Standard Webhooks reference libraries' test secret.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another one (32 bytes of 7), for rotation.
pub const NEW_SECRET: &str = "whsec_BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/webhook_consumer.py")
}

/// Make sure `standardwebhooks` is importable, installing it with pip once if needed.
pub fn ensure_standardwebhooks() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let importable = || {
            Command::new("python3")
                .args(["-c", "import standardwebhooks"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if importable() {
            return;
        }
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "standardwebhooks"])
            .env("PIP_BREAK_SYSTEM_PACKAGES", "1")
            .status()
            .expect("python3 is needed for the webhook tests");
        assert!(
            status.success() && importable(),
            "could not install standardwebhooks: run `python3 -m pip install standardwebhooks`"
        );
    });
}

/// A running `webhook_consumer.py`: what it verified and what it refused.
pub struct Consumer {
    pub port: u16,
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Consumer {
    /// Verify with `secret`, on `port` (0: a free one).
    pub fn start(secret: &str, port: u16) -> Consumer {
        ensure_standardwebhooks();
        let mut child = Command::new("python3")
            .arg(script())
            .arg(secret)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run webhook_consumer.py");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first)
            .expect("the consumer prints its port");
        let port = serde_json::from_str::<Value>(&first).expect("port line")["port"]
            .as_u64()
            .expect("port") as u16;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Consumer { port, child, lines }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// Deliveries that verified, in arrival order.
    pub fn verified(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|v| v["ok"] == true).cloned().collect()
    }

    /// Requests that did not verify.
    pub fn refused(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|v| v["ok"] == false).cloned().collect()
    }

    /// Wait until `done(verified)` holds; the verified deliveries then.
    pub async fn wait(&self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.verified();
            if done(&got) || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ask the reference library whether `body` with these headers verifies under `secret`.
pub fn verify(secret: &str, headers: &[(&str, &str)], body: &str) -> Result<(), String> {
    ensure_standardwebhooks();
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let mut child = Command::new("python3")
        .arg(script())
        .args(["--verify", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run webhook_consumer.py --verify");
    {
        use std::io::Write;
        let request = serde_json::json!({ "headers": headers, "body": body });
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(request.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().expect("verify output");
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}

/// A `[[webhooks]]` entry.
pub fn endpoint(name: &str, url: &str, secret: &str, extra: &str) -> String {
    format!("[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = {secret}\n{extra}\n")
}

/// The events' `data.room` and type of each delivery, and its `webhook-id`.
pub fn summary(deliveries: &[Value]) -> Vec<(String, String, String)> {
    deliveries
        .iter()
        .map(|d| {
            (
                d["body"]["data"]["room"].as_str().unwrap_or("").to_string(),
                d["body"]["type"].as_str().unwrap_or("").to_string(),
                d["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}
