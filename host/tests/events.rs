//! The events of a room's life, in order, with their fields: room started, publish and play
//! started, tracks published (kind, codec), sessions ended with structured reasons, room
//! finished; and the plugin events of a reload.

mod common;
mod support;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use switchboard::client::{Publisher, StreamShape, Viewer};
use switchboard::events::{EndCode, Event, EventData};
use tokio::sync::broadcast::Receiver;

/// The next event of `room` (skipping others), within the test timeout.
async fn next(rx: &mut Receiver<Arc<Event>>, room: &str) -> Arc<Event> {
    loop {
        let e = tokio::time::timeout(T, rx.recv())
            .await
            .expect("an event in time")
            .expect("no lag");
        if e.room.as_deref() == Some(room) {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_life_in_events() {
    let (server, base) = start("").await;
    let mut rx = server.sfu().events().subscribe();
    let publisher = Arc::new(Publisher::connect(&base, "stage", &opts()).await.unwrap());
    let e = next(&mut rx, "stage").await;
    assert_eq!(e.type_name(), "room.started");
    let e = next(&mut rx, "stage").await;
    let EventData::PublishStarted { session, subject } = &e.data else {
        panic!("expected publish.started, got {e:?}");
    };
    assert_eq!(subject, "anonymous");
    let publisher_session = session.clone();
    let json = e.to_json();
    assert_eq!(json["type"], "publish.started");
    assert_eq!(json["data"]["room"], "stage");
    assert_eq!(json["data"]["session"], publisher_session.as_str());

    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let e = next(&mut rx, "stage").await;
        let EventData::TrackPublished {
            session,
            kind,
            codec,
            ..
        } = &e.data
        else {
            panic!("expected track.published, got {e:?}");
        };
        assert_eq!(*session, publisher_session);
        kinds.push((kind.clone(), codec.to_ascii_lowercase()));
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("audio".to_string(), "audio/opus".to_string()),
            ("video".to_string(), "video/vp8".to_string())
        ]
    );

    let viewer = Viewer::connect(&base, "stage", &opts()).await.unwrap();
    let e = next(&mut rx, "stage").await;
    assert_eq!(e.type_name(), "play.started");
    assert_eq!(viewer.delete().await.unwrap(), 200);
    let e = next(&mut rx, "stage").await;
    assert!(
        matches!(
            &e.data,
            EventData::PlayEnded {
                reason: EndCode::Deleted,
                ..
            }
        ),
        "{e:?}"
    );
    let e = next(&mut rx, "stage").await;
    assert!(
        matches!(
            &e.data,
            EventData::SessionEnded {
                reason: EndCode::Deleted,
                action: switchboard::auth::Action::Play,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.to_json()["data"]["reason"], "deleted");

    // A reconnecting encoder replaces the publisher: the old one ends as `replaced`.
    let again = Publisher::connect(&base, "stage", &opts()).await.unwrap();
    let mut replaced = false;
    for _ in 0..4 {
        let e = next(&mut rx, "stage").await;
        if let EventData::PublishEnded {
            session, reason, ..
        } = &e.data
        {
            assert_eq!(*session, publisher_session);
            assert_eq!(*reason, EndCode::Replaced);
            replaced = true;
            break;
        }
    }
    assert!(replaced, "the replaced publisher's end was announced");
    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();

    // The last session leaves: the room is finished, after that session's own events.
    assert_eq!(again.delete().await.unwrap(), 200);
    let mut last = None;
    while let Ok(Ok(e)) = tokio::time::timeout(std::time::Duration::from_secs(3), rx.recv()).await {
        if e.room.as_deref() == Some("stage") {
            last = Some(e.type_name());
            if e.type_name() == "room.finished" {
                break;
            }
        }
    }
    assert_eq!(last, Some("room.finished"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_announces_the_plugins() {
    let tokens = format!(
        "[[plugins]]\nname = \"auth\"\npath = \"{}\"\nhooks = [\"auth\"]\n[plugins.config]\ntoken = \"some-token-1234\"\n",
        support::component("static-token").display()
    );
    let (server, _base) = start(&tokens).await;
    let mut rx = server.sfu().events().subscribe();
    server.plugins().reload().await.expect("reload");
    let e = rx.recv().await.unwrap();
    assert!(
        matches!(&e.data, EventData::PluginReloaded { plugins } if plugins == &["auth".to_string()]),
        "{e:?}"
    );
    let e = rx.recv().await.unwrap();
    assert!(
        matches!(&e.data, EventData::PluginLoaded { plugin, hooks } if plugin == "auth" && hooks == &["auth".to_string()]),
        "{e:?}"
    );
    assert_eq!(e.to_json()["type"], "plugin.loaded");
    server.shutdown().await;
}
