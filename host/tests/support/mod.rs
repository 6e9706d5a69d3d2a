//! Shared helpers for the plugin integration tests (`host/tests/plugins_*.rs`).
//!
//! Components come from `target/plugins/`, built by `cargo xtask plugins`; JWTs come from
//! PyJWT via `mint_jwt.py`, so the JWT plugin is checked against an independent implementation.
//! Parts: `chain.rs` (wallet-signed tokens and a local EVM node), `servers.rs` (coturn,
//! nginx, Caddy), `tls.rs`, `webhooks.rs`.
#![allow(dead_code)] // Each test binary uses a different subset.

pub mod browser;
pub mod chain;
pub mod netns;
pub mod servers;
pub mod tls;
pub mod webhooks;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use switchboard::auth::{Action, AdmitRequest, RoomCounts};
use switchboard::plugins::{Hook, PluginConfig, PluginGrants, PluginLimits, UpstreamConfig};

/// HS256 secret shared with `mint_jwt.py` tokens.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// `target/plugins/<name>.wasm`, or a panic saying how to build it.
pub fn component(name: &str) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    };
    let path = target.join("plugins").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the plugins first with `cargo xtask plugins`",
        path.display()
    );
    path
}

/// A `[[plugins]]` entry for the component `file` (e.g. "auth-jwt") serving `hooks` (names as
/// in `config.toml`: "auth", "room-policy").
pub fn plugin(name: &str, file: &str, hooks: &[&str], config: Value) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        path: component(file),
        hooks: hooks
            .iter()
            .map(|h| h.parse::<Hook>().expect("a registered hook"))
            .collect(),
        config: match config {
            Value::Object(map) => map,
            Value::Null => Default::default(),
            other => panic!("plugin config must be an object, got {other}"),
        },
        limits: PluginLimits::default(),
        grants: PluginGrants::default(),
    }
}

pub fn no_upstreams() -> BTreeMap<String, UpstreamConfig> {
    BTreeMap::new()
}

pub fn request(room: &str, action: Action, credential: Option<&str>) -> AdmitRequest {
    AdmitRequest {
        room: room.into(),
        action,
        credential: credential.map(Into::into),
        remote_addr: Some("127.0.0.1:50000".parse().expect("literal")),
        counts: RoomCounts::default(),
        replacing: None,
    }
}

/// Make sure PyJWT is importable, installing it with pip once if needed.
fn ensure_pyjwt() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let importable = || {
            Command::new("python3")
                .args(["-c", "import jwt, cryptography"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if importable() {
            return;
        }
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "pyjwt", "cryptography"])
            .status()
            .expect("python3 is needed for the JWT tests");
        assert!(
            status.success() && importable(),
            "could not install PyJWT: run `python3 -m pip install pyjwt cryptography`"
        );
    });
}

/// Run `mint_jwt.py` with `tokens` (see the script for the spec). Returns its JSON output:
/// `pem.{RS256,ES256,EdDSA}`, `jwks`, `tokens.<name>`.
pub fn mint(tokens: Value) -> Value {
    ensure_pyjwt();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/mint_jwt.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    let spec = serde_json::json!({ "secret": SECRET, "tokens": tokens });
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(spec.to_string().as_bytes())
            .expect("write spec");
    }
    let out = child.wait_with_output().expect("mint_jwt.py output");
    assert!(out.status.success(), "mint_jwt.py failed");
    serde_json::from_slice(&out.stdout).expect("mint_jwt.py prints JSON")
}

/// Claims valid for `room` with `roles`, expiring in ten minutes.
pub fn claims(room: Value, roles: Value) -> Value {
    serde_json::json!({
        "sub": "alice", "iss": "https://idp.test", "aud": "switchboard",
        "exp": "$now+600", "nbf": "$now-5", "iat": "$now",
        "room": room, "role": roles,
    })
}

/// The auth-jwt config matching `mint` output: all three PEM keys plus the shared secret.
pub fn jwt_config(minted: &Value) -> Value {
    serde_json::json!({
        "issuer": "https://idp.test",
        "audience": "switchboard",
        "keys": [
            { "alg": "HS256", "secret": SECRET },
            { "alg": "RS256", "pem": minted["pem"]["RS256"] },
            { "alg": "ES256", "pem": minted["pem"]["ES256"] },
            { "alg": "EdDSA", "pem": minted["pem"]["EdDSA"] },
        ],
    })
}

pub fn token<'a>(minted: &'a Value, name: &str) -> &'a str {
    minted["tokens"][name]
        .as_str()
        .unwrap_or_else(|| panic!("token {name} was minted"))
}

/// A local HTTP service standing in for an identity provider, reached by plugins through a
/// named upstream. `GET /check?token=T` answers `{"subject": "via-http:T"}` when the request
/// carries `x-api-key: upstream-key` (injected by the host from config), 401 otherwise;
/// token `slow` waits 400 ms first, token `stall` 5 s, token `banned` gets 403 and token
/// `redirect` a 302 to another host.
pub fn idp_router() -> axum::Router {
    use axum::extract::Query;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use std::collections::HashMap;

    async fn check(headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("upstream-key") {
            return (StatusCode::UNAUTHORIZED, "no api key").into_response();
        }
        let token = q.get("token").cloned().unwrap_or_default();
        match token.as_str() {
            "slow" => tokio::time::sleep(std::time::Duration::from_millis(400)).await,
            "stall" => tokio::time::sleep(std::time::Duration::from_secs(5)).await,
            "banned" => return (StatusCode::FORBIDDEN, "banned").into_response(),
            "redirect" => {
                return (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://127.0.0.1:9/check?token=evil")],
                )
                    .into_response();
            }
            _ => {}
        }
        (
            StatusCode::OK,
            serde_json::json!({ "subject": format!("via-http:{token}") }).to_string(),
        )
            .into_response()
    }

    axum::Router::new().route("/check", get(check))
}

/// [`idp_router`] over plain HTTP on a free port; returns its base URL.
pub async fn spawn_idp() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind idp");
    let addr = listener.local_addr().expect("idp addr");
    tokio::spawn(async move {
        axum::serve(listener, idp_router())
            .await
            .expect("idp serves");
    });
    format!("http://{addr}")
}

/// `[upstreams.idp]` pointing at `url`, with the API key the host injects.
pub fn idp_upstream(url: &str, timeout_ms: u64) -> BTreeMap<String, UpstreamConfig> {
    let mut headers = BTreeMap::new();
    headers.insert("x-api-key".to_string(), "upstream-key".to_string());
    BTreeMap::from([(
        "idp".to_string(),
        UpstreamConfig {
            timeout_ms,
            headers,
            max_response_kib: 64,
            ..UpstreamConfig::new(url)
        },
    )])
}

/// The probe plugin with every grant (it imports every host interface).
pub fn probe(name: &str, config: Value) -> PluginConfig {
    let mut p = plugin(name, "testing-probe", &["auth"], config);
    p.grants = PluginGrants {
        kv: true,
        http: vec!["idp".into()],
        ..PluginGrants::default()
    };
    p.limits.timeout_ms = 2_000;
    p
}

/// Like [`spawn_idp`] (same `/check` answers), but every request stalls while the returned
/// flag is set: an identity provider that stopped answering.
pub async fn spawn_hangable_idp() -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    async fn check(
        State(hang): State<Arc<AtomicBool>>,
        headers: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
    ) -> (StatusCode, String) {
        if hang.load(Ordering::Relaxed) {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("upstream-key") {
            return (StatusCode::UNAUTHORIZED, "no api key".into());
        }
        let token = q.get("token").cloned().unwrap_or_default();
        if token.is_empty() {
            return (StatusCode::UNAUTHORIZED, "no token".into());
        }
        (
            StatusCode::OK,
            serde_json::json!({ "subject": format!("via-http:{token}") }).to_string(),
        )
    }

    let hang = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind idp");
    let addr = listener.local_addr().expect("idp addr");
    let app = axum::Router::new()
        .route("/check", get(check))
        .with_state(hang.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("idp serves");
    });
    (format!("http://{addr}"), hang)
}

/// Status and body of a WHIP/WHEP POST to `path` carrying a minimal offer: enough to reach
/// admission, which runs before any WebRTC work (an admitted request then fails the offer, 400).
pub async fn post_status(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n");
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// What FFmpeg's demuxers and decoders make of a media file (`media_tool.py probe`, PyAV):
/// `{"streams": [{"codec", "packets", "frames", "errors", "duration"}, ...]}`.
pub fn probe_media(path: &std::path::Path) -> Value {
    let tool = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/media_tool.py");
    let out = Command::new("python3")
        .arg(tool)
        .arg("probe")
        .arg(path)
        .output()
        .expect("python3 runs (PyAV: cargo xtask setup installs it)");
    serde_json::from_slice(&out.stdout).expect("probe output")
}
