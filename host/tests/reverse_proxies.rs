//! Behind a TLS-terminating reverse proxy (real nginx and Caddy, configured as
//! docs/deploy.md says): signalling goes through the proxy, `Location` uses `http.public_url`,
//! media flows, and the client address is the one the trusted proxy forwarded — while the
//! same header sent straight to us by anyone else is ignored.

mod common;
mod support;

use common::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::servers::{Running, free_port};
use support::tls::TestCa;
use switchboard::client::{Publisher, StreamShape, Viewer};

/// Our test clients come from this loopback address, so the proxy's (127.0.0.1) differs.
const CLIENT_IP: [u8; 4] = [127, 0, 0, 2];

#[derive(Clone, Copy, Debug)]
enum Proxy {
    Nginx,
    Caddy,
}

async fn through(proxy: Proxy) {
    let ca = TestCa::new("switchboard test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = ca.write_server_pem(dir.path());
    let proxy_port = free_port();
    let public_url = format!("https://127.0.0.1:{proxy_port}");
    let mut config = test_config("");
    config.http.public_url = public_url.clone();
    config.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    // No auth plugin here: behind a public URL that takes saying so.
    config.auth.allow_unauthenticated_public = true;
    let server = switchboard::server::Server::start(config).await.unwrap();
    let direct = format!("http://{}", server.http_addr());
    let upstream = server.http_addr().to_string();
    let running: Running = match proxy {
        Proxy::Nginx => support::servers::nginx(proxy_port, &cert, &key, &upstream).await,
        Proxy::Caddy => support::servers::caddy(proxy_port, &cert, &key, &upstream).await,
    };

    // A client that also claims, falsely, to be someone else.
    let http = ca
        .client()
        .local_address(IpAddr::from(CLIENT_IP))
        .default_headers(
            [("x-forwarded-for", "203.0.113.66".parse().unwrap())]
                .into_iter()
                .map(|(k, v)| (reqwest::header::HeaderName::from_static(k), v))
                .collect(),
        )
        .build()
        .unwrap();
    let publisher = Arc::new(
        Publisher::connect_with(http.clone(), &public_url, "proxied", &opts())
            .await
            .unwrap_or_else(|e| panic!("{proxy:?}: publish: {e}; proxy log:\n{}", running.log())),
    );
    assert!(
        publisher
            .resource
            .url
            .starts_with(&format!("{public_url}/whip/proxied/")),
        "Location is under the public URL: {}",
        publisher.resource.url
    );
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let viewer = Viewer::connect_with(&http, &public_url, "proxied", &opts())
        .await
        .unwrap();
    assert!(
        viewer
            .resource
            .url
            .starts_with(&format!("{public_url}/whep/proxied/"))
    );
    viewer.wait_connected(T).await.unwrap();
    viewer.wait_media(50, 1, T).await.expect("media flows");

    // The proxy is trusted: the client is who it saw, not who the client claimed to be.
    let clients: Vec<IpAddr> = server
        .sfu()
        .sessions_in("proxied")
        .iter()
        .map(|s| s.admit.remote_addr.expect("client address").ip())
        .collect();
    assert_eq!(clients, [IpAddr::from(CLIENT_IP); 2], "{proxy:?}");

    // Straight to us, the same claim is ignored: the client is not a trusted proxy.
    let sneaky = Viewer::connect_with(&http, &direct, "proxied", &opts())
        .await
        .unwrap();
    let id = sneaky.resource.url.rsplit('/').next().unwrap().to_owned();
    let session = server
        .sfu()
        .session("proxied", &id)
        .expect("direct session");
    assert_eq!(
        session.admit.remote_addr.map(|a: SocketAddr| a.ip()),
        Some(IpAddr::from(CLIENT_IP))
    );
    sneaky.close().await;

    // DELETE through the proxy at the URL we handed out.
    assert_eq!(viewer.delete().await.unwrap(), 200);
    stop.store(true, Ordering::Relaxed);
    let _ = streaming.await;
    assert_eq!(publisher.delete().await.unwrap(), 200);
    drop(running);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx() {
    through(Proxy::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_caddy() {
    through(Proxy::Caddy).await;
}
