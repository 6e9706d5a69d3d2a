//! WHIP/WHEP HTTP semantics through the real server: session resources, trickle, ICE
//! restart, ETags, CORS, and every bad-input case answered with the right 4xx.

mod common;

use common::*;
use std::time::Duration;
use switchboard::client::{Publisher, Viewer};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(
    base: &str,
    path: &str,
    ctype: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let r = http()
        .post(format!("{base}{path}"))
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn patch(url: &str, ctype: &str, tag: Option<(&str, &str)>, body: &str) -> reqwest::Response {
    let mut req = http()
        .patch(url)
        .header("content-type", ctype)
        .body(body.to_owned());
    if let Some((name, value)) = tag {
        req = req.header(name, value);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx() {
    let (server, base) = start("").await;

    let (s, m) = post(&base, "/whip/room", "text/plain", "v=0\r\n").await;
    assert_eq!(s, 415, "{m}");
    assert!(m.contains("application/sdp"));

    let (s, m) = post(&base, "/whep/room", "application/sdp", "hello").await;
    assert_eq!(s, 400, "{m}");

    let (s, m) = post(
        &base,
        "/whip/room",
        "application/sdp",
        "v=0\r\no=broken\r\nm=nonsense\r\n",
    )
    .await;
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("invalid SDP"), "{m}");

    let (s, _) = post(
        &base,
        "/whip/room",
        "application/sdp",
        vec![0xffu8, 0xfe, 0x00],
    )
    .await;
    assert_eq!(s, 400);

    let big = format!("v=0\r\n{}", "a=x\r\n".repeat(40_000));
    let (s, _) = post(&base, "/whip/room", "application/sdp", big).await;
    assert_eq!(s, 413, "oversized SDP");

    let (s, m) = post(&base, "/whip/bad%20room", "application/sdp", "v=0\r\n").await;
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("room name"));

    // Nothing was left behind by the failed attempts.
    assert_eq!(server.sfu().session_count(), 0);
    assert!(server.sfu().room("room").is_none());

    let r = patch(
        &format!("{base}/whip/nosuchroom/abc"),
        "application/trickle-ice-sdpfrag",
        None,
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("room not found"));
    let r = http()
        .delete(format!("{base}/whep/nosuchroom/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A live room, but an unknown session.
    let v = Viewer::connect(&base, "live", &opts()).await.unwrap();
    let r = http()
        .delete(format!("{base}/whep/live/nosuchsession"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("session not found"));

    // Wrong content type and garbage fragments on a real session.
    let r = patch(
        &v.resource.url,
        "application/sdp",
        None,
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status(), 415);
    let r = patch(
        &v.resource.url,
        "application/trickle-ice-sdpfrag",
        None,
        "not a fragment",
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = patch(
        &v.resource.url,
        "application/trickle-ice-sdpfrag",
        None,
        "a=candidate:1 1 udp\r\n",
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = patch(
        &v.resource.url,
        "application/trickle-ice-sdpfrag",
        Some(("if-match", "\"stale\"")),
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status(), 412, "stale ETag");

    let r = http().get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    v.delete().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resource_semantics() {
    let (server, base) = start("").await;
    let v = Viewer::connect(&base, "sem", &opts()).await.unwrap();
    assert!(
        v.resource.url.starts_with(&format!("{base}/whep/sem/")),
        "{}",
        v.resource.url
    );
    assert!(
        v.resource.etag.starts_with('"') && v.resource.etag.ends_with('"'),
        "quoted ETag"
    );

    // Trickle with If-Match, and with the tag echoed back in an `ETag` header instead.
    let frag = "a=ice-ufrag:{U}\r\na=ice-pwd:{P}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n";
    let remote = v.pc.local_description().await.unwrap().sdp;
    let ufrag = line_value(&remote, "a=ice-ufrag:");
    let pwd = line_value(&remote, "a=ice-pwd:");
    let same_creds = frag.replace("{U}", &ufrag).replace("{P}", &pwd);
    let r = patch(
        &v.resource.url,
        "application/trickle-ice-sdpfrag",
        Some(("if-match", &v.resource.etag)),
        &same_creds,
    )
    .await;
    assert_eq!(r.status(), 204, "trickle answered 204");
    let r = patch(
        &v.resource.url,
        "application/trickle-ice-sdpfrag",
        Some(("etag", &v.resource.etag)),
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status(), 204, "ETag header accepted in place of If-Match");
    let r = patch(
        &v.resource.url,
        "application/trickle-ice-sdpfrag",
        None,
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status(), 204, "no precondition is fine");

    // ICE restart: new credentials -> 200 with our new credentials and a new ETag.
    let restart = frag
        .replace("{U}", "newufrag1")
        .replace("{P}", "newpasswordnewpasswordxx");
    let r = patch(
        &v.resource.url,
        "application/trickle-ice-sdpfrag",
        Some(("if-match", &v.resource.etag)),
        &restart,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/trickle-ice-sdpfrag"
    );
    let new_etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, v.resource.etag);
    let body = r.text().await.unwrap();
    let server_answer = v.pc.remote_description().await.unwrap().sdp;
    let old_server_ufrag = line_value(&server_answer, "a=ice-ufrag:");
    let new_server_ufrag = line_value(&body, "a=ice-ufrag:");
    assert!(
        !new_server_ufrag.is_empty(),
        "fragment has credentials: {body}"
    );
    assert_ne!(
        new_server_ufrag, old_server_ufrag,
        "restart yields new server credentials"
    );
    assert!(
        body.contains("a=candidate:"),
        "fragment lists candidates: {body}"
    );

    // The old ETag is now stale.
    let r = patch(
        &v.resource.url,
        "application/trickle-ice-sdpfrag",
        Some(("if-match", &v.resource.etag)),
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status(), 412);

    // DELETE ends it; a second DELETE finds nothing.
    assert_eq!(v.delete().await.unwrap(), 200);
    assert!(eventually(T, || server.sfu().session_count() == 0).await);
    assert_eq!(v.delete().await.unwrap(), 404);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_cors_and_health() {
    let mut config = test_config("");
    config.http.cors_origins = vec!["*".into()];
    let server = switchboard::server::Server::start(config).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    let r = http()
        .request(reqwest::Method::OPTIONS, format!("{base}/whip/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("PATCH"), "{methods}");
    assert_eq!(r.headers()["accept-post"], "application/sdp");

    let r = http()
        .request(reqwest::Method::OPTIONS, format!("{base}/whep/x"))
        .header("origin", "https://example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PATCH")
    );

    // Exposed headers let browser clients read Location and ETag.
    let p = Publisher::connect(&base, "x", &opts()).await.unwrap();
    assert!(p.resource.url.contains("/whip/x/"));
    p.delete().await.unwrap();

    assert_eq!(
        http()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http()
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconnected_sessions_are_reaped() {
    let (server, base) = start("").await;
    // A client that POSTs an offer and then never does ICE: answer is sent, session reaped later.
    let v = Viewer::connect(&base, "ghost", &opts()).await.unwrap();
    v.close().await;
    assert!(
        eventually(Duration::from_secs(20), || server.sfu().session_count()
            == 0)
        .await,
        "session reaped after ICE failure or connect timeout"
    );
    // The room goes with its last session (just after it: teardown finishes off the reaper).
    assert!(
        eventually(Duration::from_secs(5), || server
            .sfu()
            .room("ghost")
            .is_none())
        .await,
        "the empty room is removed"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions() {
    let (server, base) = start("").await;
    let v = Viewer::connect(&base, "bye", &opts()).await.unwrap();
    v.wait_connected(T).await.unwrap();
    assert_eq!(server.sfu().session_count(), 1);
    let sfu = server.sfu().clone();
    server.shutdown().await;
    assert_eq!(sfu.session_count(), 0);
    assert!(
        http().get(format!("{base}/healthz")).send().await.is_err(),
        "HTTP stopped"
    );
}

fn line_value(sdp: &str, prefix: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix(prefix))
        .unwrap_or_default()
        .to_owned()
}
