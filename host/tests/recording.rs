//! Recording end to end on a live server: `auth-jwt` turns a token's `record` claim into an
//! identity attribute, the `recorder` plugin records only identities that have it, and the
//! recording service follows the publish sessions — `recording.started`, segments closed as
//! they go (`recording.segment_closed`), `recording.stopped` when the publisher leaves or the
//! server shuts down — with every closed WebM opening in FFmpeg with both tracks. Chromium
//! publishes from the publish page; its recording is uploaded to s3s-fs, downloaded back
//! through the S3 API, probed by FFmpeg and played to its end by a second Chromium.

mod common;
mod support;

use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{ClientOptions, Publisher, StreamShape};
use switchboard::events::Event;
use switchboard::recording::upload::config::StorageConfig;
use switchboard::server::Server;
use tokio::sync::broadcast;

async fn start_recording_server(minted: &Value, dir: &std::path::Path) -> (Server, String) {
    let mut jwt = support::jwt_config(minted);
    jwt["attribute_claims"] = json!(["record"]);
    let mut config = test_config(&format!(
        "[recording]\ndir = \"{}\"\n[admin]\ntoken = \"{ADMIN}\"\n",
        dir.display()
    ));
    config.plugins = vec![
        support::plugin("jwt", "auth-jwt", &["auth"], jwt),
        support::plugin(
            "recorder",
            "recorder",
            &["recorder"],
            json!({ "attribute": "record", "container": "both", "segment_secs": 2 }),
        ),
    ];
    let server = Server::start(config).await.expect("server starts");
    let base = format!("http://{}", server.http_addr());
    (server, base)
}

const ADMIN: &str = "admin-token-for-recording-tests";

async fn admin_recordings(base: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/admin/recordings"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|body| serde_json::from_str(&body).expect("JSON"))
        .unwrap()
}

fn tokens() -> Value {
    let mut recorded = support::claims(json!("studio"), json!(["publish"]));
    recorded["record"] = json!(true);
    let plain = support::claims(json!("lobby"), json!(["publish"]));
    support::mint(json!({
        "recorded": { "alg": "ES256", "claims": recorded },
        "plain": { "alg": "ES256", "claims": plain },
    }))
}

async fn publish(base: &str, room: &str, token: &str) -> (Arc<Publisher>, Arc<AtomicBool>) {
    let opts = ClientOptions {
        token: Some(token.into()),
        ..opts()
    };
    let publisher = Arc::new(Publisher::connect(base, room, &opts).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s) = (publisher.clone(), stop.clone());
    let shape = StreamShape {
        keyframe_every: 30,
        ..StreamShape::default()
    };
    tokio::spawn(async move { p.stream(shape, &s).await });
    (publisher, stop)
}

/// Events of `type_name` received so far (and until `timeout` for the first `n`).
async fn events_of(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    seen: &mut Vec<Value>,
    type_name: &str,
    n: usize,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let found: Vec<Value> = seen
            .iter()
            .filter(|e| e["type"] == type_name)
            .cloned()
            .collect();
        if found.len() >= n || tokio::time::Instant::now() > deadline {
            return found;
        }
        if let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            seen.push(event.to_json());
        }
    }
}

fn probe_codecs(path: &std::path::Path) -> Vec<String> {
    support::probe_media(path)["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_identities_with_the_attribute_are_recorded_until_they_leave() {
    let minted = tokens();
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = start_recording_server(&minted, dir.path()).await;
    let mut rx = server.sfu().events().subscribe();
    let mut seen = Vec::new();

    let (recorded, stop_recorded) =
        publish(&base, "studio", support::token(&minted, "recorded")).await;
    let (plain, stop_plain) = publish(&base, "lobby", support::token(&minted, "plain")).await;
    let started = events_of(&mut rx, &mut seen, "recording.started", 1).await;
    assert_eq!(started.len(), 1, "{seen:?}");
    let data = &started[0]["data"];
    assert_eq!(data["room"], "studio");
    assert_eq!(data["subject"], "alice");
    assert_eq!(data["kinds"], json!(["video", "audio"]));
    let recording = data["recording"].as_str().unwrap().to_owned();
    let rec_dir = std::path::PathBuf::from(data["dir"].as_str().unwrap());
    assert!(rec_dir.starts_with(dir.path()));

    let closed = events_of(&mut rx, &mut seen, "recording.segment_closed", 2).await;
    assert!(
        closed.len() >= 2,
        "segments close while recording: {seen:?}"
    );
    assert_eq!(closed[0]["data"]["segment"], 1);
    assert_eq!(closed[0]["data"]["recording"], recording.as_str());

    // The publisher leaves: the recording stops and closes its last segment.
    assert_eq!(recorded.delete().await.unwrap(), 200);
    stop_recorded.store(true, Ordering::Relaxed);
    let stopped = events_of(&mut rx, &mut seen, "recording.stopped", 1).await;
    assert_eq!(stopped.len(), 1, "{seen:?}");
    let data = &stopped[0]["data"];
    assert_eq!(data["reason"], "stopped");
    assert_eq!(data["recording"], recording.as_str());
    assert_eq!(data["dropped_packets"], 0);
    let segments = data["segments"].as_u64().unwrap();
    assert!(segments >= 3, "{data}");
    for i in 1..=segments {
        for ext in ["webm", "ivf", "ogg"] {
            let file = rec_dir.join(format!("seg-{i:05}.{ext}"));
            assert!(
                file.metadata().is_ok_and(|m| m.len() > 0),
                "{}",
                file.display()
            );
        }
        let webm = rec_dir.join(format!("seg-{i:05}.webm"));
        assert_eq!(probe_codecs(&webm), ["vp8", "opus"], "{}", webm.display());
    }
    // Counted in /metrics (other tests' recordings may run in this process too: at least).
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    assert!(value("switchboard_recording_segments_total") >= segments as f64);
    assert_eq!(value("switchboard_recording_dropped_packets_total"), 0.0);
    let listed = admin_recordings(&base).await;
    assert_eq!(listed["recordings"][0]["state"], "stopped");
    assert_eq!(listed["recordings"][0]["reason"], "stopped");
    // The lobby publisher (no `record` claim) was never recorded.
    assert!(
        !seen
            .iter()
            .any(|e| e["type"] == "recording.started" && e["data"]["room"] == "lobby")
    );
    stop_plain.store(true, Ordering::Relaxed);
    plain.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_recordings_in_progress() {
    let minted = tokens();
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = start_recording_server(&minted, dir.path()).await;
    let mut rx = server.sfu().events().subscribe();
    let mut seen = Vec::new();
    let (_publisher, stop) = publish(&base, "studio", support::token(&minted, "recorded")).await;
    let started = events_of(&mut rx, &mut seen, "recording.started", 1).await;
    let rec_dir = std::path::PathBuf::from(started[0]["data"]["dir"].as_str().unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.shutdown().await;
    stop.store(true, Ordering::Relaxed);
    let stopped = events_of(&mut rx, &mut seen, "recording.stopped", 1).await;
    assert_eq!(
        stopped.len(),
        1,
        "stopped before shutdown returned: {seen:?}"
    );
    assert_eq!(stopped[0]["data"]["reason"], "stopped");
    let webm = rec_dir.join("seg-00001.webm");
    assert_eq!(probe_codecs(&webm), ["vp8", "opus"]);
}

/// A directory served over HTTP by Python's `http.server` (stopped when dropped).
struct Served(std::process::Child, u16);

impl Served {
    async fn dir(dir: &std::path::Path) -> Served {
        let port = support::servers::free_port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Served(child, port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_the_recording_uploads_decodes_and_plays_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    // Uploaded to s3s-fs, which checks every request's SigV4 signature.
    let s3_root = dir.path().join("s3");
    std::fs::create_dir_all(s3_root.join("recordings")).unwrap();
    let s3_port = support::servers::free_port();
    let _s3 = support::servers::s3s_fs(s3_port, &s3_root).await;
    let storage = StorageConfig {
        name: "archive".into(),
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        region: "us-east-1".into(),
        bucket: "recordings".into(),
        prefix: "chromium/".into(),
        path_style: true,
        access_key_id: support::servers::S3_ACCESS_KEY.into(),
        secret_access_key: support::servers::S3_SECRET_KEY.into(),
        delete_after_upload: false,
        part_size_mib: 5,
    };
    let mut config = test_config(&format!(
        "[store]\npath = \"{}\"\n[recording]\ndir = \"{}\"\n",
        dir.path().join("store.redb").display(),
        dir.path().join("rec").display()
    ));
    config.recording.storage = vec![storage.clone()];
    config.plugins = vec![support::plugin(
        "recorder",
        "recorder",
        &["recorder"],
        json!({ "container": "both", "segment_secs": 600 }),
    )];
    let server = Server::start(config).await.expect("server starts");
    let base = format!("http://{}", server.http_addr());
    let mut rx = server.sfu().events().subscribe();
    let mut seen = Vec::new();
    // The publish page (camera: Chromium's fake device) publishes, the play page plays,
    // both end with DELETE.
    support::browser::run(
        tokio::process::Command::new("node"),
        &[&base, "--hold-ms", "6000", "--timeout-ms", "60000"],
    )
    .await;
    let started = events_of(&mut rx, &mut seen, "recording.started", 1).await;
    let stopped = events_of(&mut rx, &mut seen, "recording.stopped", 1).await;
    assert_eq!(stopped.len(), 1, "{seen:?}");
    assert_eq!(stopped[0]["data"]["reason"], "stopped");
    let rec_dir = std::path::PathBuf::from(started[0]["data"]["dir"].as_str().unwrap());
    let closed = events_of(&mut rx, &mut seen, "recording.segment_closed", 1).await;
    let recorded_ms = closed[0]["data"]["duration_ms"].as_u64().unwrap() as f64;
    assert!(recorded_ms > 6_000.0, "{closed:?}");

    // Uploaded: every file, the WebM downloaded back through the S3 API as it was written.
    let uploaded = events_of(&mut rx, &mut seen, "recording.uploaded", 3).await;
    assert_eq!(uploaded.len(), 3, "WebM, IVF and Ogg uploaded: {seen:?}");
    let key = uploaded
        .iter()
        .map(|e| e["data"]["key"].as_str().unwrap())
        .find(|k| k.ends_with(".webm"))
        .expect("the WebM's key")
        .to_owned();
    assert!(key.starts_with("chromium/"), "{key}");
    let client = switchboard::recording::upload::s3::client(&storage).await;
    let object = client
        .get_object()
        .bucket("recordings")
        .key(&key)
        .send()
        .await
        .expect("GetObject");
    assert_eq!(object.content_type(), Some("video/webm"));
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert!(
        bytes.as_ref() == std::fs::read(rec_dir.join("seg-00001.webm")).unwrap(),
        "the object is the recorded file"
    );
    let downloaded = dir.path().join("downloaded");
    std::fs::create_dir_all(&downloaded).unwrap();
    std::fs::write(downloaded.join("seg-00001.webm"), &bytes).unwrap();

    // FFmpeg: the codecs, and the duration the recording says it covers (±10 %).
    let webm = downloaded.join("seg-00001.webm");
    let probed = support::probe_media(&webm);
    let streams = probed["streams"].as_array().unwrap();
    let codecs: Vec<&str> = streams
        .iter()
        .map(|s| s["codec"].as_str().unwrap())
        .collect();
    assert_eq!(codecs, ["vp8", "opus"], "{probed}");
    for s in streams {
        assert_eq!(s["errors"], 0, "{s}");
        let seconds = s["duration"].as_f64().unwrap();
        assert!(
            (seconds * 1000.0 - recorded_ms).abs() <= recorded_ms * 0.1,
            "{} lasts {seconds} s, the recording {recorded_ms} ms",
            s["codec"]
        );
    }
    assert!(streams[0]["frames"].as_u64().unwrap() > 30, "{probed}");

    // Chromium plays the downloaded file to the end.
    let served = Served::dir(&downloaded).await;
    let url = format!("http://127.0.0.1:{}/seg-00001.webm", served.1);
    let result = support::browser::run(
        tokio::process::Command::new("node"),
        &[&url, "--play-file", &url, "--timeout-ms", "60000"],
    )
    .await;
    let file = &result["file"];
    assert_eq!(file["ended"], true, "{result}");
    assert!(file["totalVideoFrames"].as_u64().unwrap() > 30, "{result}");
    assert!(file["width"].as_u64().unwrap() > 0, "{result}");
    server.shutdown().await;
}
