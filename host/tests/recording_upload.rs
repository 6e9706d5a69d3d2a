//! Recording uploads to a real S3-compatible server that checks every request's SigV4
//! signature (s3s-fs, installed by `cargo xtask setup`):
//! - the storage is down while a room is recorded: every file stays on disk and queued, each
//!   failure is a `recording.upload_failed` event with a retry time; the storage comes up and
//!   every file is uploaded (`recording.uploaded`), opens from the bucket with its tracks,
//!   and is deleted locally (`delete_after_upload`); the admin API follows the states;
//! - large files go up in parts, and a wrong secret is refused by the server;
//! - `kill -9` mid-segment: the segment being written is uploaded by the next start and plays.
//!
//! The publisher here is the webrtc-rs test client, whose VP8 payloads are synthetic (keyframe
//! markers, not a picture): FFmpeg demuxes every video packet but cannot decode them, so video
//! is checked packet by packet and audio (real Opus frames) by decoding. A real encoder's
//! stream is recorded, uploaded and decoded from the bucket in `ffmpeg_whip.rs` (H.264 from
//! FFmpeg) and decoded locally in `recording.rs` (VP8 from Chromium).

mod common;
mod support;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::servers::{S3_ACCESS_KEY, S3_SECRET_KEY, free_port, s3s_fs};
use switchboard::client::{ClientOptions, Publisher, StreamShape};
use switchboard::recording::upload::config::StorageConfig;
use switchboard::recording::upload::s3::{self, UploadError};
use switchboard::server::Server;

const ADMIN: &str = "admin-token-for-upload-tests";
const BUCKET: &str = "recordings";

fn storage_toml(port: u16, delete: bool) -> String {
    format!(
        "[[recording.storage]]\nname = \"archive\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
         bucket = \"{BUCKET}\"\nprefix = \"live/\"\npath_style = true\n\
         access_key_id = \"{S3_ACCESS_KEY}\"\nsecret_access_key = \"{S3_SECRET_KEY}\"\n\
         delete_after_upload = {delete}\n"
    )
}

/// A bucket directory for s3s-fs under `dir`; its root.
fn s3_root(dir: &Path) -> PathBuf {
    let root = dir.join("s3");
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    root
}

async fn publish(base: &str, room: &str) -> (Arc<Publisher>, Arc<AtomicBool>) {
    let publisher = Arc::new(
        Publisher::connect(base, room, &ClientOptions::default())
            .await
            .unwrap(),
    );
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

async fn admin_recordings(base: &str) -> Value {
    let body = reqwest::Client::new()
        .get(format!("{base}/admin/recordings"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).expect("JSON")
}

/// Events of `type_name` seen so far, reading more until there are `n` or `timeout` passes.
async fn events_of(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<switchboard::events::Event>>,
    seen: &mut Vec<Value>,
    type_name: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
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

/// Streams of a media file: (codec, packets, decoded frames, decode errors, duration in s).
fn probe(path: &Path) -> Vec<(String, u64, u64, u64, f64)> {
    let probed = support::probe_media(path);
    probed["streams"]
        .as_array()
        .unwrap_or_else(|| panic!("{} does not open: {probed}", path.display()))
        .iter()
        .map(|s| {
            (
                s["codec"].as_str().unwrap().to_owned(),
                s["packets"].as_u64().unwrap(),
                s["frames"].as_u64().unwrap(),
                s["errors"].as_u64().unwrap(),
                s["duration"].as_f64().unwrap_or(0.0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_down_then_back_every_file_is_uploaded_and_plays_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let root = s3_root(dir.path());
    let port = free_port();
    let rec_dir = dir.path().join("rec");
    let mut config = test_config(&format!(
        "[admin]\ntoken = \"{ADMIN}\"\n[store]\npath = \"{}\"\n[recording]\ndir = \"{}\"\n{}",
        dir.path().join("store.redb").display(),
        rec_dir.display(),
        storage_toml(port, true),
    ));
    config.plugins = vec![support::plugin(
        "recorder",
        "recorder",
        &["recorder"],
        json!({ "container": "both", "segment_secs": 2 }),
    )];
    let server = Server::start(config).await.expect("server starts");
    let base = format!("http://{}", server.http_addr());
    let mut rx = server.sfu().events().subscribe();
    let mut seen = Vec::new();

    // Recorded while the storage is down.
    let (publisher, stop) = publish(&base, "studio").await;
    let started = events_of(&mut rx, &mut seen, "recording.started", 1, T).await;
    assert_eq!(started.len(), 1, "{seen:?}");
    let recording = started[0]["data"]["recording"].as_str().unwrap().to_owned();
    events_of(&mut rx, &mut seen, "recording.segment_closed", 2, T).await;
    // Well into the third segment, so it has audio too.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(publisher.delete().await.unwrap(), 200);
    stop.store(true, Ordering::Relaxed);
    let stopped = events_of(&mut rx, &mut seen, "recording.stopped", 1, T).await;
    assert_eq!(stopped.len(), 1, "{seen:?}");
    let segments = stopped[0]["data"]["segments"].as_u64().unwrap();
    assert!(segments >= 2, "{seen:?}");
    let files: Vec<String> = seen
        .iter()
        .filter(|e| e["type"] == "recording.segment_closed")
        .flat_map(|e| e["data"]["files"].as_array().unwrap().clone())
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files.len() as u64, segments * 3, "webm + ivf + ogg each");

    let failed = events_of(&mut rx, &mut seen, "recording.upload_failed", 1, T).await;
    assert!(!failed.is_empty(), "the storage is down: {seen:?}");
    let data = &failed[0]["data"];
    assert_eq!(data["recording"], recording.as_str());
    assert_eq!(data["storage"], "archive");
    assert!(data["retry_in_ms"].as_u64().unwrap() > 0, "{data}");
    let listed = admin_recordings(&base).await;
    let entry = &listed["recordings"][0];
    assert_eq!(entry["state"], "pending_upload", "{listed}");
    assert_eq!(entry["storage"], "archive");
    assert_eq!(entry["files"].as_array().unwrap().len(), files.len());
    for file in entry["files"].as_array().unwrap() {
        assert_eq!(file["state"], "pending_upload", "{file}");
        assert!(
            Path::new(file["path"].as_str().unwrap()).is_file(),
            "{file}"
        );
        assert!(file["key"].as_str().unwrap().starts_with("live/studio/"));
    }

    // The storage comes up: everything queued goes up, nothing is lost.
    let s3 = s3s_fs(port, &root).await;
    let uploaded = events_of(
        &mut rx,
        &mut seen,
        "recording.uploaded",
        files.len(),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        uploaded.len(),
        files.len(),
        "every file uploaded once the storage is back; s3s-fs log:\n{}\nevents: {seen:?}",
        s3.log()
    );
    let mut names: Vec<String> = uploaded
        .iter()
        .map(|e| e["data"]["file"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    let mut expected = files.clone();
    expected.sort();
    assert_eq!(names, expected);
    for event in &uploaded {
        let data = &event["data"];
        let key = data["key"].as_str().unwrap();
        let object = root.join(BUCKET).join(key);
        let size = std::fs::metadata(&object)
            .unwrap_or_else(|e| panic!("{}: {e}", object.display()))
            .len();
        assert_eq!(size, data["size_bytes"].as_u64().unwrap(), "{key}");
        let streams = probe(&object);
        let codecs: Vec<&str> = streams.iter().map(|s| s.0.as_str()).collect();
        match key.rsplit('.').next().unwrap() {
            "webm" => assert_eq!(codecs, ["vp8", "opus"], "{key}"),
            "ivf" => assert_eq!(codecs, ["vp8"], "{key}"),
            "ogg" => assert_eq!(codecs, ["opus"], "{key}"),
            other => panic!("unexpected file type {other}"),
        }
        for (codec, packets, frames, errors, _) in &streams {
            assert!(*packets > 0, "{key} {codec}: {streams:?}");
            if codec == "opus" {
                assert!(*frames > 0 && *errors == 0, "{key} {codec}: {streams:?}");
            }
        }
    }
    // Deleted locally once uploaded, directory included.
    assert!(
        !rec_dir.join(&recording).exists(),
        "delete_after_upload leaves nothing behind"
    );
    let listed = admin_recordings(&base).await;
    let entry = &listed["recordings"][0];
    assert_eq!(entry["state"], "uploaded", "{listed}");
    for file in entry["files"].as_array().unwrap() {
        assert_eq!(file["state"], "uploaded", "{file}");
        assert!(file["size_bytes"].as_u64().unwrap() > 0, "{file}");
    }
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchboard_recording_uploads_total{outcome=\"uploaded\"}")),
        "{metrics}"
    );
    server.shutdown().await;
}

fn storage(port: u16, secret: &str, part_size_mib: u64) -> StorageConfig {
    StorageConfig {
        name: "archive".into(),
        endpoint: format!("http://127.0.0.1:{port}"),
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        prefix: String::new(),
        path_style: true,
        access_key_id: S3_ACCESS_KEY.into(),
        secret_access_key: secret.into(),
        delete_after_upload: false,
        part_size_mib,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_go_up_in_parts_and_a_wrong_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = s3_root(dir.path());
    let port = free_port();
    let _s3 = s3s_fs(port, &root).await;
    // 12 MiB of varied bytes: three 5 MiB parts (the last one short).
    let local = dir.path().join("big.webm");
    let bytes: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&local, &bytes).unwrap();

    let good = storage(port, S3_SECRET_KEY, 5);
    let client = s3::client(&good).await;
    let size = s3::upload(&client, &good, &local, "a/big.webm")
        .await
        .expect("multipart upload");
    assert_eq!(size, bytes.len() as u64);
    assert!(
        std::fs::read(root.join(BUCKET).join("a/big.webm")).unwrap() == bytes,
        "the object is the file, byte for byte"
    );

    let wrong = storage(port, "not-the-secret", 5);
    let client = s3::client(&wrong).await;
    let small = dir.path().join("small.ogg");
    std::fs::write(&small, b"OggS").unwrap();
    match s3::upload(&client, &wrong, &small, "a/small.ogg").await {
        Err(UploadError::Storage(reason)) => assert!(
            reason.contains("Signature") || reason.contains("403"),
            "refused for its signature: {reason}"
        ),
        other => panic!("a wrong secret must be refused, got {other:?}"),
    }
    assert!(!root.join(BUCKET).join("a/small.ogg").exists());
    // A file that is gone cannot be retried into existence.
    match s3::upload(&client, &good, &dir.path().join("missing.webm"), "x").await {
        Err(UploadError::Local { .. }) => {}
        other => panic!("a missing file is a local error, got {other:?}"),
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// The server binary, killed when dropped (so a failing test leaves no server behind).
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(config: &Path, log: &Path) -> ServerProcess {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    ServerProcess(
        Command::new(BIN)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn healthy(base: &str) {
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never became healthy");
}

/// Files under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_cut_by_kill_9_is_uploaded_by_the_next_start_and_plays() {
    let dir = tempfile::tempdir().unwrap();
    let root = s3_root(dir.path());
    let s3_port = free_port();
    let _s3 = s3s_fs(s3_port, &root).await;
    let http = free_port();
    let rec_dir = dir.path().join("rec");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nbind = \"127.0.0.1:{http}\"\n[webrtc]\nbind_ips = [\"127.0.0.1\"]\n\
             [admin]\ntoken = \"{ADMIN}\"\n[store]\npath = \"{}\"\n\
             [recording]\ndir = \"{}\"\n{}\
             [[plugins]]\nname = \"recorder\"\npath = \"{}\"\nhooks = [\"recorder\"]\n\
             [plugins.config]\nsegment_secs = 600\n",
            dir.path().join("store.redb").display(),
            rec_dir.display(),
            storage_toml(s3_port, false),
            support::component("recorder").display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let base = format!("http://127.0.0.1:{http}");
    let server_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut server = spawn_server(&config, &log);
    healthy(&base).await;
    let (publisher, stop) = publish(&base, "studio").await;
    // A few seconds into a 10-minute segment: written to disk, not closed, not uploaded.
    let webm = loop {
        let found = files_under(&rec_dir)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "webm"));
        if let Some(path) = found.filter(|p| p.metadata().is_ok_and(|m| m.len() > 100_000)) {
            break path;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "server exited: {}",
            server_log()
        );
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.0.kill().unwrap(); // SIGKILL: nothing is closed or flushed
    server.0.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    publisher.close().await;
    assert!(
        files_under(&root.join(BUCKET)).is_empty(),
        "an open segment is not uploaded"
    );
    let local_size = webm.metadata().unwrap().len();

    // The next start finds the segment in the queue and uploads it as it was left.
    let server = spawn_server(&config, &log);
    healthy(&base).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let object = loop {
        let found = files_under(&root.join(BUCKET))
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "webm"));
        if let Some(path) = found.filter(|p| p.metadata().is_ok_and(|m| m.len() == local_size)) {
            break path;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cut segment was not uploaded after the restart: {}",
            server_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let key = object.strip_prefix(root.join(BUCKET)).unwrap();
    assert!(key.starts_with("live/studio"), "{}", key.display());
    let streams = probe(&object);
    let video = streams.iter().find(|s| s.0 == "vp8").expect("video");
    let audio = streams.iter().find(|s| s.0 == "opus").expect("audio");
    assert!(
        video.1 >= 30 && video.4 >= 1.0 && audio.2 >= 50 && audio.3 == 0,
        "the cut segment opens and plays up to where it was cut: {streams:?}"
    );
    // The admin API lists the recording from before the restart, uploaded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = admin_recordings(&base).await;
        if listed["recordings"][0]["state"] == "uploaded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
}
