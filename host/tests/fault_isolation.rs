//! A panic inside one session's media core ends that session — with its reason, its resources
//! freed — and nothing else: other viewers keep receiving and the publisher keeps publishing.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use switchboard::client::{Publisher, StreamShape, Viewer};
use switchboard::events::{EndCode, EventData};
use switchboard::sfu::session::Peer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_viewers_driver_ends_only_that_session() {
    let (server, base) = start("").await;
    let mut events = server.sfu().events().subscribe();
    let publisher = Arc::new(Publisher::connect(&base, "fault", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let victim = Viewer::connect(&base, "fault", &opts()).await.unwrap();
    let other = Viewer::connect(&base, "fault", &opts()).await.unwrap();
    for v in [&victim, &other] {
        v.wait_connected(T).await.unwrap();
        v.wait_media(50, 1, T).await.unwrap();
    }
    let id = victim.resource.url.rsplit('/').next().unwrap().to_owned();
    let session = server.sfu().session("fault", &id).unwrap();
    let Peer::Direct(conn) = &session.pc else {
        panic!("viewers run on the direct driver");
    };
    conn.inject_panic();
    drop(session);

    assert!(
        eventually(T, || server.sfu().session_count() == 2).await,
        "the faulty session ended"
    );
    let reason = loop {
        match tokio::time::timeout(T, events.recv()).await {
            Ok(Ok(e)) => match &e.data {
                EventData::SessionEnded {
                    session,
                    reason,
                    detail,
                    ..
                } if *session == id => {
                    assert_eq!(*reason, EndCode::InternalFault);
                    break detail.clone();
                }
                _ => continue,
            },
            other => panic!("no end event for the faulty session: {other:?}"),
        }
    };
    assert!(reason.starts_with("internal fault"), "{reason}");
    assert_eq!(
        server.sfu().counts("fault").viewers,
        1,
        "its place is freed"
    );

    // Everyone else is unaffected.
    let before = other.stats.packets();
    assert!(
        eventually(T, || other.stats.packets() > before + 100).await,
        "the other viewer keeps receiving"
    );
    assert_eq!(server.sfu().counts("fault").publishers, 1);
    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();
    server.shutdown().await;
}
