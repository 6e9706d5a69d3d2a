//! A publisher cannot send more than `limits.max_publisher_kbps` to its viewers: what it sends
//! beyond the tolerated rate is dropped (counted) before it is multiplied by the viewers.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{Publisher, StreamShape, Viewer};
use switchboard::sfu::bitrate::{TOLERANCE, over_cap_dropped};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_over_its_cap_is_cut_to_it() {
    let mut config = test_config("");
    config.limits.max_publisher_kbps = 300;
    let server = switchboard::server::Server::start(config).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    let publisher = Arc::new(Publisher::connect(&base, "cap", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let viewer = Viewer::connect(&base, "cap", &opts()).await.unwrap();
    viewer.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        // 2 Mbit/s: well over a 300 kbit/s cap.
        let shape = StreamShape {
            video_bitrate: 2_000_000,
            ..StreamShape::default()
        };
        tokio::spawn(async move { p.stream(shape, &s).await })
    };
    viewer.wait_media(50, 1, T).await.unwrap();
    // Past the bucket's burst, measure what reaches the viewer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (bytes0, dropped0) = (
        viewer.stats.bytes.load(Ordering::Relaxed),
        over_cap_dropped(),
    );
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let bytes = viewer.stats.bytes.load(Ordering::Relaxed) - bytes0;
    let kbps = bytes as f64 * 8.0 / window.as_secs_f64() / 1000.0;
    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();
    println!("viewer received {kbps:.0} kbit/s of payload from a 2 Mbit/s publisher capped at 300");
    assert!(kbps > 100.0, "media still flows: {kbps:.0} kbit/s");
    assert!(
        kbps < 300.0 * TOLERANCE * 1.1,
        "{kbps:.0} kbit/s reached the viewer"
    );
    assert!(
        over_cap_dropped() > dropped0,
        "what was over the cap was dropped and counted"
    );
    server.shutdown().await;
}
