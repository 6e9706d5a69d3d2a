//! A simulcast publisher (three RIDs, as Chromium's `sendEncodings` and the webrtc crate's
//! `simulcast` example send) through the real server: each viewer gets one coherent stream —
//! the highest layer flowing, down when it stops, back up when it returns — switched only on
//! keyframes, with continuous sequence numbers and timestamps.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{ClientOptions, Publisher, StreamShape, VideoPacketSeen, Viewer};

/// Layer tags the client puts in its payloads: index + 1, lowest first.
const LOW: u8 = 1;
const MID: u8 = 2;
const TOP: u8 = 3;

fn simulcast() -> ClientOptions {
    ClientOptions {
        simulcast: vec!["q".into(), "h".into(), "f".into()],
        ..opts()
    }
}

fn tracing_viewer() -> ClientOptions {
    ClientOptions {
        trace_video: true,
        ..opts()
    }
}

fn trace(v: &Viewer) -> Vec<VideoPacketSeen> {
    v.stats.video_trace.lock().clone().unwrap_or_default()
}

/// Wait until the last packets `v` received all come from the layer tagged `tag`.
async fn wait_for_layer(v: &Viewer, tag: u8, what: &str) {
    let ok = eventually(Duration::from_secs(20), || {
        let t = trace(v);
        t.len() > 30 && t[t.len() - 30..].iter().all(|p| p.tag == Some(tag))
    })
    .await;
    let tags: Vec<_> = trace(v).iter().rev().take(40).map(|p| p.tag).collect();
    assert!(ok, "{what}: last tags received (newest first): {tags:?}");
}

/// What a decoder needs: one SSRC, sequence numbers with no jump at a layer change, each
/// change on a keyframe, timestamps moving forward, and no interleaving of layers.
fn assert_coherent(t: &[VideoPacketSeen]) -> usize {
    assert!(!t.is_empty());
    assert!(
        t.iter().all(|p| p.ssrc == t[0].ssrc),
        "one SSRC for the viewer"
    );
    let mut changes = 0;
    for pair in t.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.tag != b.tag {
            changes += 1;
            assert!(
                b.keyframe,
                "layer change {a:?} -> {b:?} is not on a keyframe"
            );
            assert_eq!(
                b.seq,
                a.seq.wrapping_add(1),
                "sequence numbers continue across a layer change"
            );
            let forward = b.timestamp.wrapping_sub(a.timestamp);
            assert!(
                forward > 0 && forward < 90_000 * 5,
                "timestamps move forward across a layer change: {a:?} -> {b:?}"
            );
        }
    }
    assert!(changes <= 6, "layers interleaved: {changes} changes");
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_follow_the_highest_flowing_layer_on_keyframes() {
    let (server, base) = start("").await;
    let publisher = Arc::new(
        Publisher::connect(&base, "sim", &simulcast())
            .await
            .expect("simulcast publish"),
    );
    publisher
        .wait_connected(T)
        .await
        .expect("publisher connected");
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        let shape = StreamShape {
            // Keyframes only when asked: every switch must wait for one the SFU requested.
            keyframe_every: 100_000,
            ..StreamShape::default()
        };
        tokio::spawn(async move { p.stream(shape, &s).await })
    };
    let mut viewers = Vec::new();
    for _ in 0..2 {
        let v = Viewer::connect(&base, "sim", &tracing_viewer())
            .await
            .expect("play");
        v.wait_connected(T).await.expect("viewer connected");
        viewers.push(v);
    }

    for v in &viewers {
        wait_for_layer(v, TOP, "viewers move up to the top layer").await;
    }
    let room = server.sfu().room("sim").expect("room");
    let current = room.video.current_stream().expect("a current stream");
    assert_eq!(current.rid.as_deref(), Some("f"));
    assert_eq!(Some(current.ssrc), publisher.layer_ssrc("f"));

    // The top layer stops (an encoder short of bandwidth drops it): down to the middle one.
    assert!(publisher.set_layer_active("f", false));
    for v in &viewers {
        wait_for_layer(v, MID, "viewers move down when the top layer stops").await;
    }
    // And the middle one too: down to the lowest.
    assert!(publisher.set_layer_active("h", false));
    for v in &viewers {
        wait_for_layer(v, LOW, "viewers move down again").await;
    }
    // Both come back: up to the top.
    publisher.set_layer_active("h", true);
    publisher.set_layer_active("f", true);
    for v in &viewers {
        wait_for_layer(v, TOP, "viewers move back up when the layer returns").await;
    }

    for v in &viewers {
        let t = trace(v);
        let changes = assert_coherent(&t);
        assert!(changes >= 3, "down twice and up again: {changes} changes");
        assert_eq!(
            v.stats.out_of_order.load(Ordering::Relaxed),
            0,
            "no sequence number ever goes back"
        );
    }
    assert!(room.video.stats.stream_switches.load(Ordering::Relaxed) >= 3);
    assert!(
        room.video.stats.unselected_packets.load(Ordering::Relaxed) > 0,
        "the other layers were received and not forwarded"
    );

    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();
    server.shutdown().await;
}
