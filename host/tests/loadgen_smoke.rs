//! A small run of the load tool's library against an in-process server: media must reach
//! every viewer and every join must succeed. Never a timing assertion; the figures themselves
//! belong in docs/benchmarks.md, measured with the release binary.

mod common;

use common::*;
use std::time::Duration;
use switchboard::client::StreamShape;
use switchboard::loadgen::{self, LoadOptions, Summary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_drives_five_viewers_through_the_server() {
    let (server, base) = start("").await;
    let opts = LoadOptions {
        url: base.clone(),
        label: "switchboard".into(),
        viewers: 5,
        rooms: 2,
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(500),
        shape: StreamShape {
            video_bitrate: 300_000,
            ..StreamShape::default()
        },
        join_timeout: T,
        ..LoadOptions::default()
    };
    let report = loadgen::run(&opts).await.expect("load run completes");

    assert_eq!(report.joins.attempted, 5);
    assert_eq!(
        report.joins.failed, 0,
        "no failed joins: {:?}",
        report.joins.failures
    );
    assert_eq!(report.scenario.rooms, 2);
    assert_eq!(
        report.quality.starved_viewers, 0,
        "every viewer receives media during the window"
    );
    assert_eq!(
        report.joins.post_to_first_rtp_ms.samples, 5,
        "every viewer saw its first RTP packet"
    );
    assert!(report.throughput.published_packets_per_sec > 0.0);
    assert!(report.throughput.forwarded_packets_per_sec > 0.0);
    assert!(report.throughput.forwarded_bytes_per_sec > 0.0);
    assert!(
        report.quality.one_way_delay_ms.samples > 0,
        "viewers read the publisher's send stamps"
    );
    assert!(
        report.server.is_none(),
        "no server pid given, so no server figures"
    );

    // The report renders and serialises for the command-line tool.
    let summary = Summary::new("test".into(), vec![report], "switchboard", "reference");
    assert!(summary.table().contains("forwarded pkt/s"));
    let json = serde_json::to_value(&summary).expect("summary serialises");
    assert_eq!(json["runs"][0]["scenario"]["viewers"], 5);

    // Every session the tool opened was deleted again.
    assert!(
        eventually(T, || server.sfu().session_count() == 0).await,
        "the load tool cleans up its sessions"
    );
    server.shutdown().await;
}
