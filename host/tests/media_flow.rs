//! Real webrtc-rs peers publish over WHIP and play over WHEP through the real HTTP server.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{Publisher, StreamShape, Viewer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_reaches_every_viewer_with_keyframes() {
    let (flushed_before, _, _) = switchboard::sfu::egress::counters();
    publisher_reaches_every_viewer("", Driver::Direct).await;
    let (flushed_after, sends, _) = switchboard::sfu::egress::counters();
    assert!(
        flushed_after > flushed_before && sends > 0,
        "viewer packets went out through batched sends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbatched_sends_reach_every_viewer_too() {
    publisher_reaches_every_viewer("batch_sends = false\n", Driver::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_on_webrtc_rs_drivers_get_everything_too() {
    publisher_reaches_every_viewer("direct_viewers = false\n", Driver::Stack).await;
}

/// Which connection driver the viewers are expected to get.
#[derive(PartialEq)]
enum Driver {
    Direct,
    Stack,
}

/// One publisher, three viewers: media and keyframes reach all, keyframe requests flow up,
/// DELETE ends everything. `webrtc_extra` is appended to the `[webrtc]` config section.
async fn publisher_reaches_every_viewer(webrtc_extra: &str, driver: Driver) {
    let (server, base) = start(webrtc_extra).await;
    let publisher = Arc::new(
        Publisher::connect(&base, "main", &opts())
            .await
            .expect("publish"),
    );
    publisher
        .wait_connected(T)
        .await
        .expect("publisher connected");
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };

    let mut viewers = Vec::new();
    for _ in 0..3 {
        let v = Viewer::connect(&base, "main", &opts()).await.expect("play");
        viewers.push(v);
    }
    for v in &viewers {
        let id = v.resource.url.rsplit('/').next().unwrap();
        let session = server.sfu().session("main", id).expect("viewer session");
        let direct = matches!(session.pc, switchboard::sfu::session::Peer::Direct(_));
        assert_eq!(
            direct,
            driver == Driver::Direct,
            "viewer on the expected driver"
        );
        v.wait_connected(T).await.expect("viewer connected");
        v.wait_media(100, 1, T)
            .await
            .expect("media and a keyframe arrive");
        assert!(
            v.stats.audio_packets.load(Ordering::Relaxed) > 0,
            "audio arrives"
        );
        assert!(
            v.stats.video_packets.load(Ordering::Relaxed) > 0,
            "video arrives"
        );
    }
    let room = server.sfu().room("main").expect("room exists");
    assert_eq!(room.counts().viewers, 3);
    assert_eq!(room.counts().publishers, 1);
    assert!(
        room.video.stats.keyframe_requests.load(Ordering::Relaxed) > 0,
        "viewer joins trigger keyframe requests"
    );
    assert!(
        eventually(T, || publisher.keyframe_requests.load(Ordering::Relaxed)
            > 0)
        .await,
        "the publisher receives them"
    );

    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();
    for v in &viewers {
        assert_eq!(v.delete().await.unwrap(), 200);
    }
    assert_eq!(publisher.delete().await.unwrap(), 200);
    assert!(
        eventually(T, || server.sfu().session_count() == 0).await,
        "sessions reaped"
    );
    assert!(server.sfu().room("main").is_none(), "empty room dropped");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_viewer_gets_media_and_survives_publisher_reconnect() {
    let (server, base) = start("").await;
    let viewer = Viewer::connect(&base, "stage", &opts())
        .await
        .expect("play before publisher");
    viewer.wait_connected(T).await.expect("viewer connected");

    let stop = Arc::new(AtomicBool::new(false));
    let first = Arc::new(Publisher::connect(&base, "stage", &opts()).await.unwrap());
    first.wait_connected(T).await.unwrap();
    let task = {
        let (p, s) = (first.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    viewer
        .wait_media(50, 1, T)
        .await
        .expect("early viewer receives media");
    let before = viewer.stats.keyframes.load(Ordering::Relaxed);

    // Publisher reconnects (new session replaces the old); the viewer keeps its session.
    let stop2 = Arc::new(AtomicBool::new(false));
    let second = Arc::new(Publisher::connect(&base, "stage", &opts()).await.unwrap());
    second.wait_connected(T).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let task2 = {
        let (p, s) = (second.clone(), stop2.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let packets = viewer.stats.packets();
    viewer
        .wait_media(packets + 100, before + 1, T)
        .await
        .expect("media from the new publisher");
    assert_eq!(
        viewer.connection_state(),
        webrtc::peer_connection::RTCPeerConnectionState::Connected
    );
    assert!(
        eventually(T, || server
            .sfu()
            .room("stage")
            .map(|r| r.counts().publishers)
            == Some(1))
        .await
    );
    stop2.store(true, Ordering::Relaxed);
    task2.await.unwrap();
    let sfu = server.sfu().clone();
    server.shutdown().await;
    assert_eq!(sfu.session_count(), 0, "shutdown closes every session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_viewer_is_reaped_and_does_not_stall_others() {
    let (server, base) = start("").await;
    let publisher = Arc::new(Publisher::connect(&base, "r", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let dead = Viewer::connect(&base, "r", &opts()).await.unwrap();
    let live = Viewer::connect(&base, "r", &opts()).await.unwrap();
    dead.wait_connected(T).await.unwrap();
    live.wait_media(30, 1, T).await.unwrap();
    // Vanish without DELETE: the server must notice via ICE and reap the session.
    dead.close().await;
    let p0 = live.stats.packets();
    live.wait_media(p0 + 200, 1, T)
        .await
        .expect("others keep receiving");
    assert!(
        eventually(Duration::from_secs(20), || server
            .sfu()
            .room("r")
            .map(|r| r.counts().viewers)
            == Some(1))
        .await,
        "dead viewer reaped"
    );
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_keyframe_requests_reach_the_publisher_throttled() {
    // A long interval makes the throttle observable: a burst of PLIs becomes at most two.
    let (server, base) = start("[rooms]\nkeyframe_request_interval_ms = 1500\n").await;
    let publisher = Arc::new(Publisher::connect(&base, "pli", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let viewer = Viewer::connect(&base, "pli", &opts()).await.unwrap();
    viewer.wait_media(30, 1, T).await.unwrap();
    // Let the join-triggered requests settle, then burst.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let before = publisher.keyframe_requests.load(Ordering::Relaxed);
    for _ in 0..10 {
        viewer.request_keyframe().await.expect("PLI sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        eventually(T, || publisher.keyframe_requests.load(Ordering::Relaxed)
            > before)
        .await,
        "the viewer's PLI is relayed to the publisher"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let relayed = publisher.keyframe_requests.load(Ordering::Relaxed) - before;
    assert!(
        (1..=2).contains(&relayed),
        "10 PLIs in 200 ms are throttled to {relayed}"
    );
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_negotiate_nack_rtx_and_keyframe_feedback() {
    let (server, base) = start("").await;
    let viewer = Viewer::connect(&base, "fb", &opts()).await.unwrap();
    let answer = viewer.pc.remote_description().await.unwrap().sdp;
    let video = &answer[answer.find("m=video").expect("video section")..];
    assert!(video.contains(" nack\r\n"), "NACK negotiated: {video}");
    assert!(video.contains(" nack pli\r\n"), "PLI negotiated");
    assert!(video.to_lowercase().contains("rtx/90000"), "RTX negotiated");
    viewer.close().await;
    server.shutdown().await;
}

/// A media tap (what the recorder will use) gets exactly what viewers get; a tap nobody reads
/// loses its own packets, counted, and viewers lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_taps_get_the_room_and_a_stalled_tap_only_loses_its_own() {
    use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
    use switchboard::sfu::tap::TapPacket;
    let (server, base) = start("").await;
    let publisher = Arc::new(Publisher::connect(&base, "taps", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let viewer = Viewer::connect(&base, "taps", &opts()).await.unwrap();
    viewer.wait_connected(T).await.unwrap();
    let room = server.sfu().room("taps").expect("room");
    let mut reader = room.tap(4096);
    let stalled = room.tap(4);
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let mut got: Vec<TapPacket> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(100), reader.recv()).await {
            got.push(p);
        }
    }
    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();

    let kind = |k| got.iter().filter(|p| p.kind == k).count();
    assert!(kind(RtpCodecKind::Video) > 100, "video reaches the tap");
    assert!(kind(RtpCodecKind::Audio) > 50, "audio reaches the tap");
    let video: Vec<u16> = got
        .iter()
        .filter(|p| p.kind == RtpCodecKind::Video)
        .map(|p| p.packet.header.sequence_number)
        .collect();
    assert!(
        video.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "a read tap loses nothing"
    );
    assert_eq!(reader.dropped(), 0);
    assert!(
        reader
            .codecs(RtpCodecKind::Video)
            .iter()
            .any(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case("video/VP8")),
        "the tap can name the codec of what it gets"
    );
    assert!(
        stalled.dropped() > 100,
        "the stalled tap lost its own packets"
    );
    assert!(viewer.stats.packets() > 150, "the viewer kept receiving");
    assert_eq!(
        viewer.stats.lost.load(Ordering::Relaxed),
        0,
        "and lost nothing"
    );
    drop(stalled);
    server.shutdown().await;
}
