//! Plugins cannot hurt media or live sessions: looping plugin calls (more than there are
//! worker threads) leave forwarding and `/healthz` on time, because calls yield at every epoch
//! tick; re-checks of live sessions have their own budget and a grace period; and revoking a
//! credential by reload ends every session it admitted, re-checked or not.

mod common;
mod support;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard::client::{ClientOptions, Publisher, StreamShape, Viewer};
use switchboard::events::{EndCode, EventData};

fn hostile_loop_plugin() -> String {
    format!(
        "[[plugins]]\nname = \"hostile\"\npath = \"{}\"\nhooks = [\"auth\"]\nlimits = {{ timeout_ms = 1000 }}\n[plugins.config]\nmode = \"loop\"\nonly_room = \"spin-*\"\n",
        support::component("testing-hostile").display()
    )
}

fn p99(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    xs[(xs.len() * 99 / 100).min(xs.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_plugins_do_not_delay_forwarding_or_health() {
    let (server, base) = start(&hostile_loop_plugin()).await;
    let publisher = Arc::new(Publisher::connect(&base, "live", &opts()).await.unwrap());
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let mut viewers = Vec::new();
    for _ in 0..5 {
        let v = Viewer::connect(&base, "live", &opts()).await.unwrap();
        v.wait_connected(T).await.unwrap();
        v.wait_media(50, 1, T).await.unwrap();
        viewers.push(v);
    }
    for v in &viewers {
        v.stats.delays_us.lock().clear();
    }

    // Workers + 1 callers, each calling the looping plugin again as soon as it gives up.
    let hammer = Arc::new(AtomicBool::new(true));
    let mut loops = Vec::new();
    for i in 0..3 {
        let (base, hammer) = (base.clone(), hammer.clone());
        loops.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut answers = Vec::new();
            while hammer.load(Ordering::Relaxed) {
                let r = http
                    .post(format!("{base}/whep/spin-{i}"))
                    .header("content-type", "application/sdp")
                    .body("v=0\r\n")
                    .send()
                    .await
                    .unwrap();
                answers.push(r.status().as_u16());
            }
            answers
        }));
    }
    // Health, asked from inside the same runtime, while the plugins spin.
    let http = reqwest::Client::new();
    let mut health = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let started = Instant::now();
        let r = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        health.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hammer.store(false, Ordering::Relaxed);
    let mut answers = Vec::new();
    for l in loops {
        answers.extend(l.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();

    assert!(
        !answers.is_empty() && answers.iter().all(|s| *s == 503),
        "{answers:?}"
    );
    let health_p99 = p99(health);
    let mut delays: Vec<Duration> = Vec::new();
    for v in &viewers {
        delays.extend(
            v.stats
                .delays_us
                .lock()
                .iter()
                .map(|us| Duration::from_micros(*us as u64)),
        );
    }
    let worst = *delays.iter().max().expect("media kept flowing");
    println!(
        "{} looping calls: healthz p99 {health_p99:?}; forwarding delay p99 {:?}, worst {worst:?}",
        answers.len(),
        p99(delays.clone())
    );
    assert!(
        health_p99 < Duration::from_millis(50),
        "healthz p99 {health_p99:?}"
    );
    assert!(
        worst < Duration::from_millis(50),
        "a forwarding gap of {worst:?}"
    );
    server.shutdown().await;
}

/// `[[plugins]]` for the probe plugin asking the identity provider at `url` (over the
/// `idp` upstream), re-checking live sessions every second.
fn probe_via_idp(url: &str) -> String {
    format!(
        "[[plugins]]\nname = \"probe\"\npath = \"{}\"\nhooks = [\"auth\"]\nlimits = {{ timeout_ms = 500 }}\ngrants = {{ kv = true, http = [\"idp\"] }}\n[plugins.config]\nmode = \"http\"\nupstream = \"idp\"\nrecheck_every_secs = 1\n[upstreams.idp]\nurl = \"{url}\"\ntimeout_ms = 2000\nheaders = {{ \"x-api-key\" = \"upstream-key\" }}\n",
        support::component("testing-probe").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rechecks_survive_a_hung_idp_and_a_flood_within_the_grace_period() {
    let (idp, hang) = support::spawn_hangable_idp().await;
    let (server, base) = start(&format!(
        "[auth]\nrecheck_grace_secs = 30\n{}",
        probe_via_idp(&idp)
    ))
    .await;
    let mut viewers = Vec::new();
    for i in 0..20 {
        let opts = ClientOptions {
            token: Some(format!("user{i}")),
            ..opts()
        };
        viewers.push(
            Viewer::connect(&base, "paid", &opts)
                .await
                .expect("admitted"),
        );
    }
    assert_eq!(server.sfu().session_count(), 20);
    // The identity provider stops answering; 600 unauthenticated requests pile up on it.
    hang.store(true, Ordering::Relaxed);
    let flood: Vec<_> = (0..600)
        .map(|_| {
            let url = format!("{base}/whep/paid");
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/sdp")
                    .body("v=0\r\n")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Several re-check rounds fail to run meanwhile; none of the 20 sessions may end.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        server.sfu().session_count(),
        20,
        "a session ended within the grace period"
    );
    for f in flood {
        let status = f.await.unwrap().unwrap();
        assert!(status == 503 || status == 429, "flood answered {status}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_token_by_reload_ends_the_sessions_it_admitted() {
    let static_tokens = |tokens: &str| {
        format!(
            "[[plugins]]\nname = \"auth\"\npath = \"{}\"\nhooks = [\"auth\"]\n[plugins.config]\n{tokens}\n",
            support::component("static-token").display()
        )
    };
    let (server, base) = start(&static_tokens(
        "token = \"kept-token-0001\"\n[plugins.config.rooms]\nlobby = \"leaked-token-01\"",
    ))
    .await;
    let with = |t: &str| ClientOptions {
        token: Some(t.into()),
        ..opts()
    };
    let leaked = Viewer::connect(&base, "lobby", &with("leaked-token-01"))
        .await
        .unwrap();
    let kept = Viewer::connect(&base, "lobby", &with("kept-token-0001"))
        .await
        .unwrap();
    leaked.wait_connected(T).await.unwrap();
    kept.wait_connected(T).await.unwrap();
    let mut events = server.sfu().events().subscribe();

    // The operator removes the leaked token and reloads (static tokens are never re-checked
    // periodically: the reload itself must reach the session).
    let config =
        switchboard::config::Config::from_toml_str(&static_tokens("token = \"kept-token-0001\""))
            .unwrap();
    server
        .plugins()
        .reload_with(config.plugins, config.upstreams)
        .await
        .expect("reload");
    let leaked_id = leaked.resource.url.rsplit('/').next().unwrap().to_owned();
    let reason = loop {
        match tokio::time::timeout(T, events.recv()).await {
            Ok(Ok(e)) => match &e.data {
                EventData::SessionEnded {
                    session,
                    reason,
                    detail,
                    ..
                } if *session == leaked_id => {
                    assert_eq!(*reason, EndCode::RevokedOnRecheck);
                    break detail.clone();
                }
                _ => continue,
            },
            other => panic!("the leaked token's session did not end: {other:?}"),
        }
    };
    assert!(reason.contains("after the plugin reload"), "{reason}");
    assert_eq!(
        server.sfu().session_count(),
        1,
        "the session of the kept token stays"
    );
    server.shutdown().await;
}
