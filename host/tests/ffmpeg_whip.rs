//! FFmpeg's own WHIP muxer publishes into the real server and a webrtc-rs viewer plays it.
//!
//! FFmpeg is the one bundled in PyAV's wheels (FFmpeg 8, `whip` muxer), driven by
//! `tests/clients/ffmpeg_whip_publish.py`: H.264 (libx264, constrained baseline) and Opus, the
//! way `ffmpeg -f whip` sends them — its own ICE, DTLS (passive role) and SRTP code, so an
//! independent implementation of the publishing side. PyAV's FFmpeg uses GnuTLS, whose
//! self-generated DTLS certificate peers refuse, so the test hands it an EC certificate made
//! by OpenSSL, as docs/clients.md tells users to.
//!
//! The viewer is `switchboard::client::Viewer`, whose keyframe counter understands VP8 only;
//! the test asserts on packets received and on the codec of each received track instead.
//!
//! The `recorder` plugin records the room meanwhile: H.264 does not go in WebM, so the
//! recording falls back to Annex-B `.h264` and Ogg files. Once the publisher is gone they are
//! uploaded to s3s-fs (an S3-compatible server checking SigV4 signatures), and FFmpeg (PyAV)
//! decodes every object from the bucket without an error.

mod common;
mod support;

use common::*;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use switchboard::client::Viewer;

/// The pip requirement; PyAV 18 bundles FFmpeg 8 with the `whip` muxer.
const PYAV: &str = "av>=18";
/// How long the script may publish; it is killed as soon as the test has what it needs.
const PUBLISH_SECONDS: u32 = 60;
/// From spawning the script to FFmpeg having connected (Python start, import of PyAV, the WHIP
/// POST, ICE, DTLS): a couple of seconds here, generous for a loaded CI machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// What the viewer must receive: about two seconds of the 320x240, 30 fps stream and of the
/// 20 ms Opus frames.
const WANT_VIDEO_PACKETS: u64 = 60;
const WANT_AUDIO_PACKETS: u64 = 50;
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
/// Stderr lines of the script kept for failure messages.
const KEPT_LINES: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_whip_muxer_publishes_h264_and_opus_that_a_whep_viewer_receives() {
    ensure_pyav();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = ec_certificate(dir.path());
    let rec_dir = dir.path().join("rec");
    let s3_root = dir.path().join("s3");
    std::fs::create_dir_all(s3_root.join("recordings")).unwrap();
    let s3_port = support::servers::free_port();
    let _s3 = support::servers::s3s_fs(s3_port, &s3_root).await;
    let mut config = test_config(&format!(
        "[store]\npath = \"{}\"\n[recording]\ndir = \"{}\"\n\
         [[recording.storage]]\nname = \"archive\"\nendpoint = \"http://127.0.0.1:{s3_port}\"\n\
         bucket = \"recordings\"\npath_style = true\naccess_key_id = \"{}\"\n\
         secret_access_key = \"{}\"\n",
        dir.path().join("store.redb").display(),
        rec_dir.display(),
        support::servers::S3_ACCESS_KEY,
        support::servers::S3_SECRET_KEY,
    ));
    config.plugins = vec![support::plugin(
        "recorder",
        "recorder",
        &["recorder"],
        serde_json::json!({ "segment_secs": 2 }),
    )];
    let server = switchboard::server::Server::start(config)
        .await
        .expect("server starts");
    let base = format!("http://{}", server.http_addr());
    let mut events = server.sfu().events().subscribe();
    let room = "ffmpeg-whip";

    let mut ffmpeg = FfmpegPublisher::spawn(&format!("{base}/whip/{room}"), &cert, &key);
    ffmpeg.wait_connected(CONNECT_TIMEOUT);

    let viewer = Viewer::connect(&base, room, &opts())
        .await
        .unwrap_or_else(|e| panic!("WHEP viewer could not join room {room}: {e}"));
    viewer
        .wait_connected(T)
        .await
        .unwrap_or_else(|e| panic!("WHEP viewer did not connect: {e}{}", ffmpeg.context()));
    let received = eventually(MEDIA_TIMEOUT, || {
        viewer.stats.video_packets.load(Ordering::Relaxed) >= WANT_VIDEO_PACKETS
            && viewer.stats.audio_packets.load(Ordering::Relaxed) >= WANT_AUDIO_PACKETS
    })
    .await;
    let (video, audio) = (
        viewer.stats.video_packets.load(Ordering::Relaxed),
        viewer.stats.audio_packets.load(Ordering::Relaxed),
    );
    assert!(
        received,
        "within {MEDIA_TIMEOUT:?} the viewer got {video} video packets (want \
         {WANT_VIDEO_PACKETS}) and {audio} audio packets (want {WANT_AUDIO_PACKETS}){}",
        ffmpeg.context()
    );

    // What the viewer's tracks carry: the codecs FFmpeg's muxer sends.
    let codecs = received_codecs(&viewer).await;
    let video_codec = codecs
        .iter()
        .find(|c| c.mime_type.to_lowercase().starts_with("video/"))
        .unwrap_or_else(|| panic!("no video track at the viewer: {codecs:?}"));
    assert!(
        video_codec.mime_type.eq_ignore_ascii_case("video/H264"),
        "video is forwarded as FFmpeg sent it (H.264): {video_codec:?}"
    );
    assert_eq!(video_codec.clock_rate, 90_000, "{video_codec:?}");
    assert!(
        video_codec.sdp_fmtp_line.contains("packetization-mode=1"),
        "H.264 in packetization mode 1 as the muxer offered: {video_codec:?}"
    );
    let audio_codec = codecs
        .iter()
        .find(|c| c.mime_type.to_lowercase().starts_with("audio/"))
        .unwrap_or_else(|| panic!("no audio track at the viewer: {codecs:?}"));
    assert!(
        audio_codec.mime_type.eq_ignore_ascii_case("audio/opus"),
        "{audio_codec:?}"
    );
    assert_eq!(audio_codec.clock_rate, 48_000, "{audio_codec:?}");
    eprintln!(
        "ffmpeg_whip: viewer got {video} H.264 and {audio} Opus packets ({} bytes, {} lost)",
        viewer.stats.bytes.load(Ordering::Relaxed),
        viewer.stats.lost.load(Ordering::Relaxed)
    );

    viewer.delete().await.expect("viewer DELETE");
    viewer.close().await;
    ffmpeg.kill();

    // The publisher is gone: its recording stops, its files are uploaded, and every object
    // decodes from the bucket.
    let mut seen = Vec::new();
    let mut uploaded = Vec::new();
    let mut files = None;
    let mut recorded_ms = 0;
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    let json = e.to_json();
                    match e.type_name() {
                        "recording.stopped" => {
                            files = Some(json["data"]["segments"].as_u64().unwrap() * 2)
                        }
                        "recording.segment_closed" => {
                            recorded_ms += json["data"]["duration_ms"].as_u64().unwrap()
                        }
                        "recording.uploaded" => uploaded.push(json["data"].clone()),
                        _ => {}
                    }
                    seen.push(json);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events: {e}"),
            }
            if files.is_some_and(|n| n > 0 && uploaded.len() as u64 >= n) {
                return;
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "recording.stopped, then every file (.h264 + .ogg per segment) uploaded: {seen:#?}"
    );
    // Durations: Opus pages carry timestamps; raw H.264 does not, so its frames are counted
    // against the publisher's 30 fps. Both within 10 % of what the recording covered.
    let (mut audio_s, mut video_frames) = (0.0, 0);
    for data in &uploaded {
        let key = data["key"].as_str().unwrap();
        let object = s3_root.join("recordings").join(key);
        let probed = support::probe_media(&object);
        let stream = &probed["streams"][0];
        let codec = if key.ends_with(".h264") {
            "h264"
        } else {
            "opus"
        };
        assert_eq!(stream["codec"], codec, "{key}: {probed}");
        let frames = stream["frames"].as_u64().unwrap();
        assert!(frames > 0 && stream["errors"] == 0, "{key}: {probed}");
        if codec == "h264" {
            video_frames += frames;
        } else {
            audio_s += stream["duration"].as_f64().unwrap();
        }
    }
    let recorded_s = recorded_ms as f64 / 1000.0;
    let video_s = video_frames as f64 / 30.0;
    for (what, seconds) in [("audio", audio_s), ("video", video_s)] {
        assert!(
            (seconds - recorded_s).abs() <= recorded_s * 0.1,
            "{what} lasts {seconds:.2} s, the recording {recorded_s:.2} s"
        );
    }
    eprintln!(
        "ffmpeg_whip: recorded {recorded_s:.2} s; audio {audio_s:.2} s, video {video_frames} \
         frames, {} files uploaded",
        uploaded.len()
    );
    server.shutdown().await;
}

/// The codec of every track the viewer receives, per SSRC (as negotiated and seen on the wire).
async fn received_codecs(viewer: &Viewer) -> Vec<RTCRtpCodec> {
    let mut codecs = Vec::new();
    for receiver in viewer.pc.get_receivers().await {
        let track = receiver.track();
        for ssrc in track.ssrcs().await {
            if let Some(codec) = track.codec(ssrc).await {
                codecs.push(codec);
            }
        }
    }
    codecs
}

/// The publisher script, killed when dropped whatever happens to the test.
struct FfmpegPublisher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl FfmpegPublisher {
    fn spawn(url: &str, cert: &Path, key: &Path) -> FfmpegPublisher {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ffmpeg_whip_publish.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--url", url, "--seconds", &PUBLISH_SECONDS.to_string()])
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut kept = kept.lock().expect("lines lock");
                if kept.len() == KEPT_LINES {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        FfmpegPublisher { child, lines }
    }

    /// Waits for the script's "connected" line; panics with its output if it exits or stalls.
    fn wait_connected(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.lines().iter().any(|l| l.contains("connected")) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "the FFmpeg WHIP publisher exited ({status}) before connecting{}",
                    self.context()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the FFmpeg WHIP publisher did not connect within {timeout:?}{}",
                    self.context()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// The script's recent output, for failure messages.
    fn context(&self) -> String {
        let lines = self.lines();
        if lines.is_empty() {
            return "; the publisher printed nothing".into();
        }
        format!("; publisher output:\n    {}", lines.join("\n    "))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FfmpegPublisher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An EC (P-256) self-signed certificate and its key, made by the OpenSSL CLI.
fn ec_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=ffmpeg-whip-test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (install the `openssl` package): {e}"));
    assert!(
        out.status.success(),
        "openssl could not make an EC certificate: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    (cert, key)
}

/// Makes sure PyAV with the `whip` muxer is importable, installing it with pip once if needed
/// (`cargo xtask test` installs it up front).
fn ensure_pyav() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let usable = || {
            Command::new("python3")
                .args([
                    "-c",
                    "import av, sys; sys.exit(0 if 'whip' in av.formats_available else 3)",
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if usable() {
            return;
        }
        eprintln!("ffmpeg_whip: installing PyAV ({PYAV}) with pip");
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", PYAV])
            .status()
            .expect("python3 is needed for the FFmpeg WHIP test");
        assert!(
            status.success() && usable(),
            "PyAV with FFmpeg's `whip` muxer is not available: run `python3 -m pip install '{PYAV}'`"
        );
    });
}
