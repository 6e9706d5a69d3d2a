//! Many sessions come and go (DELETE, vanished clients, replaced publishers): afterwards
//! no session, room, socket or task is left behind.

mod common;

use common::*;
use std::time::Duration;
use switchboard::client::{Publisher, Viewer};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaks_after_session_churn() {
    let (server, base) = start("").await;
    // Warm up once so lazily created process-wide state is not counted as a leak.
    let v = Viewer::connect(&base, "warm", &opts()).await.unwrap();
    v.wait_connected(T).await.unwrap();
    v.delete().await.unwrap();
    v.close().await;
    assert!(eventually(T, || server.sfu().session_count() == 0).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds0, tasks0) = (open_fds(), alive_tasks());

    for round in 0..8 {
        let p = Publisher::connect(&base, "churn", &opts()).await.unwrap();
        let v1 = Viewer::connect(&base, "churn", &opts()).await.unwrap();
        let v2 = Viewer::connect(&base, "churn", &opts()).await.unwrap();
        p.wait_connected(T).await.unwrap();
        v1.wait_connected(T).await.unwrap();
        v2.wait_connected(T).await.unwrap();
        // Replace the publisher, delete one viewer, let the other vanish without a word.
        let p2 = Publisher::connect(&base, "churn", &opts()).await.unwrap();
        p2.wait_connected(T).await.unwrap();
        assert_eq!(v1.delete().await.unwrap(), 200, "round {round}");
        v2.close().await;
        assert_eq!(p2.delete().await.unwrap(), 200);
        for c in [&v1.pc, &p.pc, &p2.pc] {
            let _ = c.close().await;
        }
    }
    assert!(
        eventually(Duration::from_secs(30), || server.sfu().session_count()
            == 0)
        .await,
        "all sessions reaped, {} left",
        server.sfu().session_count()
    );
    assert!(server.sfu().room("churn").is_none(), "room released");
    // Sockets and tasks return to where they were (small slack for in-flight timers).
    let settled = eventually(Duration::from_secs(10), || {
        open_fds() <= fds0 + 2 && alive_tasks() <= tasks0 + 2
    })
    .await;
    assert!(
        settled,
        "leak: fds {} -> {}, tasks {} -> {}",
        fds0,
        open_fds(),
        tasks0,
        alive_tasks()
    );
    server.shutdown().await;
}
