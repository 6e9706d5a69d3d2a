//! Reload without restart: atomic swap, in-flight calls on the old plugins, failed reloads
//! keep the old plugins, SIGHUP and `POST /admin/reload`.

mod support;

use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use switchboard::admin;
use switchboard::auth::{Action, Gatekeeper};
use switchboard::plugins::{PluginConfig, PluginGate, UpstreamConfig, spawn_sighup_reload};

fn tokens(token: &str) -> PluginConfig {
    plugin(
        "tokens",
        "static-token",
        &["auth"],
        json!({ "token": token }),
    )
}

async fn admits(gate: &PluginGate, token: &str) -> bool {
    gate.admit(&request("r", Action::Play, Some(token)))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_finish_on_the_old_plugins() {
    let idp = spawn_idp().await;
    let gate = Arc::new(
        PluginGate::new(
            vec![probe(
                "remote",
                json!({ "mode": "http", "upstream": "idp" }),
            )],
            idp_upstream(&idp, 2_000),
        )
        .await
        .unwrap(),
    );
    // "slow" keeps the upstream busy for 400 ms: the call is in flight during the reload.
    let in_flight = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.admit(&request("r", Action::Play, Some("slow"))).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    gate.reload_with(vec![tokens("new-token")], BTreeMap::new())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "reload does not wait for calls in flight"
    );
    assert!(!in_flight.is_finished());

    assert_eq!(in_flight.await.unwrap().unwrap().subject, "via-http:slow");
    assert!(admits(&gate, "new-token").await);
    assert!(
        !admits(&gate, "slow").await,
        "new calls use the new plugins"
    );
}

#[tokio::test]
async fn failed_reloads_keep_the_old_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("static-token.wasm");
    std::fs::copy(component("static-token"), &wasm).unwrap();
    let mut p = tokens("old");
    p.path = wasm.clone();
    let gate = PluginGate::new(vec![p.clone()], BTreeMap::new())
        .await
        .unwrap();

    // A config the plugin rejects.
    let mut bad = p.clone();
    bad.config.insert("token".into(), json!(""));
    let err = gate
        .reload_with(vec![bad], BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `tokens`: rejected its config: token: token must not be empty"
    );
    assert!(admits(&gate, "old").await);

    // The .wasm replaced by garbage on disk, then a plain reload (same config).
    std::fs::write(&wasm, b"garbage").unwrap();
    let err = gate.reload().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("is not a valid WebAssembly component"),
        "{err}"
    );
    assert!(admits(&gate, "old").await);
    assert_eq!(gate.plugin_names(), vec!["tokens"]);

    // The file restored: a plain reload succeeds again.
    std::fs::copy(component("static-token"), &wasm).unwrap();
    assert_eq!(gate.reload().await.unwrap().plugins, vec!["tokens"]);
}

#[tokio::test]
async fn reload_refuses_to_drop_authentication() {
    let gate = PluginGate::new(vec![tokens("t")], BTreeMap::new())
        .await
        .unwrap();
    let err = gate.reload_with(vec![], BTreeMap::new()).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("reload refused: the new configuration has no auth plugin"),
        "{err}"
    );
    assert!(!gate.is_open());
    assert!(admits(&gate, "t").await);
}

/// The part of `config.toml` the plugin runtime reads (what the server's reload source parses).
#[derive(Deserialize)]
struct PluginFile {
    #[serde(default)]
    plugins: Vec<PluginConfig>,
    #[serde(default)]
    upstreams: BTreeMap<String, UpstreamConfig>,
}

fn write_config(path: &Path, token: &str) {
    let toml = format!(
        "[[plugins]]\nname = \"tokens\"\npath = \"{}\"\nhooks = [\"auth\"]\n[plugins.config]\ntoken = \"{token}\"\n",
        component("static-token").display()
    );
    std::fs::write(path, toml).unwrap();
}

fn file_source(path: &Path) -> switchboard::plugins::ReloadSource {
    let path = path.to_path_buf();
    Box::new(move || {
        use figment::providers::Format;
        let file: PluginFile = figment::Figment::from(figment::providers::Toml::file(&path))
            .extract()
            .map_err(|e| e.to_string())?;
        Ok((file.plugins, file.upstreams))
    })
}

async fn gate_from_file(path: &Path) -> Arc<PluginGate> {
    let (plugins, upstreams) = (file_source(path))().unwrap();
    Arc::new(
        PluginGate::new(plugins, upstreams)
            .await
            .unwrap()
            .with_reload_source(file_source(path)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    write_config(&config, "before");
    let gate = gate_from_file(&config).await;
    let hup = spawn_sighup_reload(gate.clone()).unwrap();
    assert!(admits(&gate, "before").await);

    write_config(&config, "after");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !admits(&gate, "after").await {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the plugins"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!admits(&gate, "before").await);
    hup.abort();
}

#[tokio::test]
async fn admin_endpoint_reloads_with_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    write_config(&config, "before");
    let gate = gate_from_file(&config).await;

    let serve = |token: Option<&str>| {
        let sfu = switchboard::sfu::Sfu::new(
            &switchboard::config::Config::default(),
            gate.clone(),
            switchboard::events::EventBus::default(),
        );
        let state = admin::AdminState::new(sfu, gate.clone());
        let app = admin::router(state, token.map(String::from));
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/admin/reload", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            url
        }
    };
    let client = reqwest::Client::new();

    // No admin token configured: the endpoint does not exist.
    let disabled = serve(None).await;
    assert_eq!(
        client
            .post(&disabled)
            .bearer_auth("x")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let disabled = serve(Some("")).await;
    assert_eq!(client.post(&disabled).send().await.unwrap().status(), 404);

    let url = serve(Some("admin-secret")).await;
    let resp = client.post(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        client
            .post(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("admin-secret")
            .send()
            .await
            .unwrap()
            .status(),
        405
    );

    write_config(&config, "after");
    let resp = client
        .post(&url)
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["plugins"], json!(["tokens"]));
    assert!(admits(&gate, "after").await);

    // A broken config file: 422 with the reason, and the plugins stay as they were.
    std::fs::write(&config, "[[plugins]]\nname = \"tokens\"\n").unwrap();
    let resp = client
        .post(&url)
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "reload failed, previous plugins kept: cannot read the new configuration:"
        ),
        "{error}"
    );
    assert!(error.contains("missing field"), "{error}");
    assert!(admits(&gate, "after").await);
}
