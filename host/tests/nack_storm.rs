//! One viewer cannot freeze a room with NACKs: a flood of 1,000 NACKs naming the same packets
//! over and over gets each packet resent a bounded number of times, and another viewer of the
//! same room keeps receiving without delay.

mod common;

use common::*;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard::client::{ClientOptions, Publisher, StreamShape, Viewer};
use switchboard::sfu::nack_guard::{RESEND_BURST, RESEND_PER_SEC, RESEND_WINDOW};

fn p99_ms(samples: &mut [u32]) -> f64 {
    assert!(!samples.is_empty(), "no delay samples");
    samples.sort_unstable();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)] as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_flood_is_bounded_and_does_not_delay_other_viewers() {
    let (server, base) = start("").await;
    let publisher = Arc::new(Publisher::connect(&base, "storm", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let traced = ClientOptions {
        trace_video: true,
        ..opts()
    };
    let attacker = Viewer::connect(&base, "storm", &traced).await.unwrap();
    let bystander = Viewer::connect(&base, "storm", &opts()).await.unwrap();
    for v in [&attacker, &bystander] {
        v.wait_connected(T).await.unwrap();
        v.wait_media(100, 1, T).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    bystander.stats.delays_us.lock().clear();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = p99_ms(&mut bystander.stats.delays_us.lock().clone());

    // The flood: 1,000 NACKs, each naming the last 256 packets received (16 pairs of 16+1),
    // so every packet is asked for again in every one of them.
    let media_ssrc = attacker.video_ssrc().await.unwrap();
    let last = attacker
        .stats
        .video_trace
        .lock()
        .as_ref()
        .and_then(|t| t.last().map(|p| p.seq))
        .expect("video received");
    let first = last.wrapping_sub(255);
    let nacks: Vec<NackPair> = (0..16u16)
        .map(|i| NackPair {
            packet_id: first.wrapping_add(i * 17),
            lost_packets: 0xffff,
        })
        .collect();
    let duplicates_before = attacker.stats.out_of_order.load(Ordering::Relaxed);
    bystander.stats.delays_us.lock().clear();
    let started = tokio::time::Instant::now();
    for _ in 0..1000 {
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc,
            nacks: nacks.clone(),
        };
        attacker.send_rtcp(vec![Box::new(nack)]).await.unwrap();
    }
    let storm = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = p99_ms(&mut bystander.stats.delays_us.lock().clone());
    let resent = attacker.stats.out_of_order.load(Ordering::Relaxed) - duplicates_before;

    // Bounded: the burst plus the rate over the storm (and the half second after it), and no
    // packet more than once per window.
    let window = storm + Duration::from_millis(500);
    let bound = RESEND_BURST + RESEND_PER_SEC * window.as_secs_f64();
    let per_packet = (window.as_secs_f64() / RESEND_WINDOW.as_secs_f64()).ceil() + 1.0;
    println!(
        "1000 NACKs x 256 packets in {storm:?}: {resent} packets resent (bound {bound:.0}, \
         at most {per_packet} per packet); bystander one-way delay p99 {before:.1} ms before, \
         {during:.1} ms during; {} suppressed",
        switchboard::sfu::nack_guard::suppressed()
    );
    assert!(resent > 0, "lost packets are still resent");
    assert!(
        (resent as f64) <= bound,
        "{resent} retransmissions, bound {bound:.0}"
    );
    assert!(
        switchboard::sfu::nack_guard::suppressed() > 100 * resent,
        "the flood was refused"
    );
    // Under 20 ms; on a machine so busy that the bystander's p99 was already near that before
    // the flood, no worse than half again what it was.
    let limit = 20.0_f64.max(before * 1.5);
    assert!(
        during < limit,
        "the other viewer was delayed: p99 {during:.1} ms (limit {limit:.1})"
    );
    assert!(
        bystander.stats.lost.load(Ordering::Relaxed) == 0,
        "and lost nothing"
    );

    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();
    server.shutdown().await;
}
