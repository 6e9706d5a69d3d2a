//! A server without auth cannot be driven by a foreign web page: requests naming another host
//! (DNS rebinding) are refused, CORS answers nothing unless configured, and it refuses to start
//! behind a public URL.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_foreign_origins_are_refused_without_auth() {
    let (server, base) = start("").await;
    let port = server.http_addr().port();
    let http = reqwest::Client::new();

    // A page on rebind.example whose name resolves to this machine.
    let r = http
        .post(format!("{base}/whep/room"))
        .header("host", format!("rebind.example:{port}"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("allowed_hosts"));
    for path in ["/publish", "/whip/room"] {
        let r = http
            .get(format!("{base}{path}"))
            .header("host", "rebind.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    // Probes are answered whatever they name; the real names are answered.
    let r = http
        .get(format!("{base}/healthz"))
        .header("host", "probe.internal")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let r = http
            .get(format!("{base}/publish"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // A foreign origin's preflight gets no CORS grant by default.
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{base}/whep/room"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "no CORS grant: {:?}",
        r.headers()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_hosts_and_origins_are_answered() {
    let mut config = test_config("");
    config.http.allowed_hosts = vec!["*.live.example".into()];
    config.http.cors_origins = vec!["https://app.example".into()];
    let server = switchboard::server::Server::start(config).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{base}/publish"))
        .header("host", "edge.live.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{base}/whep/room"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn no_auth_behind_a_public_url_refuses_to_start() {
    let mut config = test_config("");
    config.http.public_url = "https://live.example.com".into();
    let err = switchboard::server::Server::start(config)
        .await
        .err()
        .expect("refused");
    let message = format!("{err:#}");
    assert!(message.contains("public_url"), "{message}");
    assert!(
        message.contains("allow_unauthenticated_public"),
        "{message}"
    );
}
