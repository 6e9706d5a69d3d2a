//! A recording running on a live room: a webrtc-rs publisher streams (VP8 with real keyframe
//! markers and picture sizes, and Opus), a recording drains the room's tap on its own thread
//! into segments on disk, cut at keyframes, and stops cleanly; every closed segment's WebM
//! opens in FFmpeg (PyAV) with both tracks. A recording whose directory cannot be written
//! ends with the OS's error while viewers keep their media.

mod common;
mod support;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{Publisher, StreamShape, Viewer};
use switchboard::recording::segment::Layout;
use switchboard::recording::sink::{Ended, Plan, Recording, TAP_QUEUE};

fn plan(dir: &std::path::Path) -> Plan {
    Plan {
        layout: Layout {
            webm: true,
            per_track: true,
        },
        segment_length: Duration::from_secs(2),
        max_duration: None,
        video: true,
        audio: true,
        dir: dir.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_room_is_recorded_into_segments_cut_at_keyframes() {
    let (server, base) = start("").await;
    let publisher = Arc::new(Publisher::connect(&base, "rec", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let room = server.sfu().room("rec").expect("room");
    let dir = tempfile::tempdir().unwrap();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let recording = Recording::start(
        room.tap(TAP_QUEUE),
        plan(dir.path()),
        Box::new(|_, _| {}),
        move |c| {
            let _ = closed_tx.send(c);
        },
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        // A keyframe every second: segments of 2 s close at 2 s, 4 s, ...
        let shape = StreamShape {
            keyframe_every: 30,
            ..StreamShape::default()
        };
        tokio::spawn(async move { p.stream(shape, &s).await })
    };
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let closed_live: Vec<_> = closed_rx.try_iter().collect();
    assert!(
        closed_live.len() >= 2,
        "segments close while recording: {closed_live:?}"
    );
    let summary = recording.stop().await;
    stop.store(true, Ordering::Relaxed);
    let _ = streaming.await;

    assert_eq!(summary.ended, Ended::Stopped);
    assert!(summary.segments.len() >= 3, "{summary:?}");
    assert_eq!(summary.tap_dropped, 0);
    for (i, s) in summary.segments.iter().enumerate() {
        assert_eq!(s.index, i as u32 + 1);
        assert_eq!(
            s.files,
            [
                format!("seg-{:05}.webm", i + 1),
                format!("seg-{:05}.ivf", i + 1),
                format!("seg-{:05}.ogg", i + 1)
            ]
        );
        if i + 1 < summary.segments.len() {
            let ms = s.duration.as_millis();
            assert!(
                (1_800..=2_300).contains(&ms),
                "segment {} lasts {ms} ms",
                i + 1
            );
        }
        // The container is valid and carries both tracks (the synthetic VP8 does not decode:
        // the content tests use real encoders, see recording_writers.rs).
        let path = dir.path().join(&s.files[0]);
        let probe = support::probe_media(&path);
        let codecs: Vec<&str> = probe["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["codec"].as_str().unwrap())
            .collect();
        assert_eq!(codecs, ["vp8", "opus"], "{probe}");
        let packets = |n: usize| probe["streams"][n]["packets"].as_u64().unwrap();
        assert!(packets(0) > 20 && packets(1) > 50, "{probe}");
    }
    publisher.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_cannot_write_ends_and_viewers_keep_their_media() {
    let (server, base) = start("").await;
    let publisher = Arc::new(Publisher::connect(&base, "full", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let viewer = Viewer::connect(&base, "full", &opts()).await.unwrap();
    viewer.wait_connected(T).await.unwrap();
    let room = server.sfu().room("full").expect("room");
    // /dev/full: every write fails with ENOSPC, as on a full disk.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("seg-00001.webm")).unwrap();
    let recording = Recording::start(
        room.tap(TAP_QUEUE),
        plan(dir.path()),
        Box::new(|_, _| {}),
        |_| {},
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    assert!(
        eventually(T, || recording.is_finished()).await,
        "the recording ends by itself"
    );
    let before = viewer.stats.video_packets.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        viewer.stats.video_packets.load(Ordering::Relaxed) > before,
        "the viewer keeps its media"
    );
    let summary = recording.stop().await;
    match &summary.ended {
        Ended::WriteFailed(e) => assert!(e.contains("No space left on device"), "{e}"),
        other => panic!("expected a write failure, got {other:?}"),
    }
    stop.store(true, Ordering::Relaxed);
    let _ = streaming.await;
    viewer.close().await;
    publisher.close().await;
    server.shutdown().await;
}
