//! The `recorder` hook with the bundled `plugins/recorder` component: what it decides for
//! publish sessions from its config alone (rooms, an identity attribute, kinds, container,
//! segment length, key template), swapped by config; a plugin built against 0.1.0 cannot
//! serve the hook; a trigger plugin that traps records nothing and the failure is reported.

mod common;
mod support;

use common::*;
use std::time::Duration;
use switchboard::recording::segment::Layout;
use switchboard::recording::trigger::{PublishInfo, RecordingTrigger};

fn recorder_config(settings: &str) -> String {
    format!(
        "[[plugins]]\nname = \"recorder\"\npath = \"{}\"\nhooks = [\"recorder\"]\n[plugins.config]\n{settings}",
        support::component("recorder").display()
    )
}

fn publish(room: &str, attributes: &[(&str, &str)]) -> PublishInfo {
    PublishInfo {
        room: room.into(),
        session: "sess-1".into(),
        subject: "alice".into(),
        attributes: attributes
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        tracks: vec![(true, "video/VP8".into()), (false, "audio/opus".into())],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_plugin_decides_from_its_config() {
    let (server, _) = start(&recorder_config(
        "rooms = [\"studio-*\"]\nattribute = \"record\"\ncontainer = \"both\"\nsegment_secs = 30\n\
         max_duration_secs = 600\nkey_template = \"{room}/{session}/{segment}.{ext}\"\n",
    ))
    .await;
    let trigger = server.plugins().clone();
    assert!(trigger.active());
    let plan = trigger
        .publish_started(publish("studio-1", &[("record", "true")]))
        .await
        .unwrap()
        .expect("recorded");
    assert!(plan.video && plan.audio);
    assert_eq!(
        plan.layout,
        Layout {
            webm: true,
            per_track: true
        }
    );
    assert_eq!(plan.segment_length, Duration::from_secs(30));
    assert_eq!(plan.max_duration, Some(Duration::from_secs(600)));
    assert_eq!(plan.key_template, "{room}/{session}/{segment}.{ext}");
    assert_eq!(plan.storage, None);
    for (room, attributes) in [("studio-1", vec![]), ("lobby", vec![("record", "true")])] {
        let decided = trigger
            .publish_started(publish(room, &attributes))
            .await
            .unwrap();
        assert_eq!(decided, None, "{room} {attributes:?}: not recorded");
    }
    trigger
        .publish_ended("studio-1".into(), "sess-1".into())
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_recorder_nothing_is_recorded_and_a_trapping_one_is_contained() {
    let (server, _) = start("").await;
    let trigger = server.plugins().clone();
    assert!(!trigger.active());
    assert_eq!(
        trigger.publish_started(publish("any", &[])).await.unwrap(),
        None
    );
    server.shutdown().await;

    // A trap, and plans the host cannot carry out: failures, never recordings.
    for (mode, why) in [
        ("trap", "trap"),
        ("oversized", "key-template"),
        ("empty-subject", "no track kinds"),
    ] {
        let config = format!(
            "[[plugins]]\nname = \"hostile\"\npath = \"{}\"\nhooks = [\"recorder\"]\n[plugins.config]\nmode = \"{mode}\"\n",
            support::component("testing-hostile").display()
        );
        let (server, _) = start(&config).await;
        let trigger = server.plugins().clone();
        let failure = trigger
            .publish_started(publish("any", &[]))
            .await
            .expect_err("a failure, not a decision");
        assert_eq!(failure.who, "hostile");
        assert!(failure.why.contains(why), "{mode}: {failure}");
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_plugin_cannot_serve_the_recorder_hook() {
    let config = format!(
        "[[plugins]]\nname = \"old\"\npath = \"{}\"\nhooks = [\"recorder\"]\n",
        support::component("testing-legacy-v0_1_0").display()
    );
    let err = switchboard::server::Server::start(test_config(&config))
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .expect("refused at start-up");
    assert!(err.contains("recorder") && err.contains("0.2.0"), "{err}");
}
