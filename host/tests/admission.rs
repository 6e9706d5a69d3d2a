//! Room limits with the real `room-policy` plugin: exact under concurrent joins (places held
//! for sessions being set up, given back when set-up fails) and a reconnecting encoder taking
//! over a room limited to one publisher.

mod common;
mod support;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use switchboard::client::{Publisher, StreamShape, Viewer};

/// `[[plugins]]` for the room-policy component with these limits.
fn room_policy(max_publishers: u32, max_viewers: u32) -> String {
    format!(
        "[[plugins]]\nname = \"rooms\"\npath = \"{}\"\nhooks = [\"room-policy\"]\n[plugins.config]\nmax_publishers = {max_publishers}\nmax_viewers = {max_viewers}\n",
        support::component("room-policy").display()
    )
}

/// A real WHEP offer from a webrtc-rs viewer (joined to another room), to POST by hand.
async fn real_offer(base: &str) -> (Viewer, String) {
    let v = Viewer::connect(base, "offer-source", &opts())
        .await
        .expect("offer source");
    let offer = v.pc.local_description().await.expect("offer").sdp;
    (v, offer)
}

async fn post_offer(http: &reqwest::Client, url: &str, offer: &str) -> (u16, String) {
    let r = http
        .post(url)
        .header("content-type", "application/sdp")
        .body(offer.to_owned())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_cannot_pass_max_viewers_and_failed_set_ups_give_places_back() {
    let (server, base) = start(&room_policy(1, 10)).await;
    let (_source, offer) = real_offer(&base).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/whep/limited");

    // Set-ups that fail after admission (an offer that is SDP only in its first line) give
    // their places back: none of them may count against the limit below.
    for _ in 0..5 {
        let (status, _) = post_offer(&http, &url, "v=0\r\nnot sdp at all\r\n").await;
        assert_eq!(status, 400);
    }
    assert_eq!(
        server.sfu().counts("limited").viewers,
        0,
        "places given back"
    );

    // 50 at once against max_viewers = 10: exactly 10 get in.
    let joins = (0..50).map(|_| post_offer(&http, &url, &offer));
    let results = futures::future::join_all(joins).await;
    let admitted: Vec<&String> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, l)| l)
        .collect();
    let refused = results.iter().filter(|(s, _)| *s == 403).count();
    assert_eq!(
        admitted.len(),
        10,
        "statuses: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert_eq!(refused, 40);
    assert_eq!(server.sfu().counts("limited").viewers, 10);

    // A viewer leaving frees its place for the next one.
    let first = format!("{base}{}", admitted[0]);
    assert_eq!(http.delete(&first).send().await.unwrap().status(), 200);
    assert!(eventually(T, || server.sfu().counts("limited").viewers == 9).await);
    assert_eq!(post_offer(&http, &url, &offer).await.0, 201);
    assert_eq!(post_offer(&http, &url, &offer).await.0, 403);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_encoder_takes_over_a_room_limited_to_one_publisher() {
    // The example of config.toml: max_publishers = 1, on_publisher_conflict = "replace".
    let (server, base) = start(&room_policy(1, 200)).await;
    let first = Arc::new(
        Publisher::connect(&base, "stage", &opts())
            .await
            .expect("first"),
    );
    first.wait_connected(T).await.expect("first connected");
    let viewer = Viewer::connect(&base, "stage", &opts())
        .await
        .expect("viewer");
    viewer.wait_connected(T).await.expect("viewer connected");

    // The encoder reconnects while its old session is still live: it must be let in (it
    // used to be refused with 403 because the old publisher still counted).
    let second = Arc::new(
        Publisher::connect(&base, "stage", &opts())
            .await
            .expect("the reconnecting encoder is admitted"),
    );
    second.wait_connected(T).await.expect("second connected");
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (second.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    viewer
        .wait_media(50, 1, T)
        .await
        .expect("the viewer gets the new publisher's media without reconnecting");
    assert!(
        eventually(T, || server.sfu().session_count() == 2).await,
        "the old publisher session ended (replaced)"
    );
    assert_eq!(server.sfu().counts("stage").publishers, 1);
    stop.store(true, Ordering::Relaxed);
    streaming.await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reject_a_second_publisher_gets_409() {
    let (server, base) = start("[rooms]\non_publisher_conflict = \"reject\"\n").await;
    let first = Publisher::connect(&base, "solo", &opts())
        .await
        .expect("first");
    match Publisher::connect(&base, "solo", &opts()).await {
        Err(switchboard::client::ClientError::Http { status, body }) => {
            assert_eq!(status, 409, "{body}");
            assert!(body.contains("already has a publisher"), "{body}");
        }
        Err(e) => panic!("expected 409, got {e}"),
        Ok(_) => panic!("a second publisher must be refused"),
    }
    drop(first);
    server.shutdown().await;
}

/// `[[plugins]]` for static tokens: `alpha-secret` (subject `token:any`) and a publish-only
/// `beta-secret` (subject `token:any:publish`): two identities allowed to publish.
fn two_publishers() -> String {
    format!(
        "[[plugins]]\nname = \"auth\"\npath = \"{}\"\nhooks = [\"auth\"]\n[plugins.config]\ntoken = \"alpha-secret\"\npublish_token = \"beta-secret\"\n",
        support::component("static-token").display()
    )
}

fn with_token(token: &str) -> switchboard::client::ClientOptions {
    switchboard::client::ClientOptions {
        token: Some(token.into()),
        ..opts()
    }
}

async fn expect_status(r: Result<Publisher, switchboard::client::ClientError>, status: u16) {
    match r {
        Err(switchboard::client::ClientError::Http { status: s, body }) => {
            assert_eq!(s, status, "{body}");
            assert!(body.contains("another identity"), "{body}");
        }
        Err(e) => panic!("expected {status}, got {e}"),
        Ok(p) => {
            p.close().await;
            panic!("expected {status}, got 201");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_same_identity_takes_over_a_live_stream_by_default() {
    let (server, base) = start(&two_publishers()).await;
    let alpha = Publisher::connect(&base, "show", &with_token("alpha-secret"))
        .await
        .expect("alpha publishes");
    alpha.wait_connected(T).await.unwrap();
    // Another identity allowed to publish cannot take the stream over.
    expect_status(
        Publisher::connect(&base, "show", &with_token("beta-secret")).await,
        409,
    )
    .await;
    assert_eq!(server.sfu().counts("show").publishers, 1);
    // The same identity (an encoder reconnecting) can.
    let again = Publisher::connect(&base, "show", &with_token("alpha-secret"))
        .await
        .expect("the same identity takes over");
    again.wait_connected(T).await.unwrap();
    assert!(eventually(T, || server.sfu().session_count() == 1).await);
    server.shutdown().await;

    // `takeover = "anyone"` lets any identity allowed to publish replace the stream.
    let (server, base) = start(&format!(
        "{}[rooms]\ntakeover = \"anyone\"\n",
        two_publishers()
    ))
    .await;
    let alpha = Publisher::connect(&base, "show", &with_token("alpha-secret"))
        .await
        .unwrap();
    alpha.wait_connected(T).await.unwrap();
    let beta = Publisher::connect(&base, "show", &with_token("beta-secret"))
        .await
        .expect("anyone may take over");
    beta.wait_connected(T).await.unwrap();
    assert!(eventually(T, || server.sfu().session_count() == 1).await);
    server.shutdown().await;
}
