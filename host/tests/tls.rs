//! HTTPS served directly (`[http.tls]`): clients verify the certificate against their CA,
//! WHIP and WHEP work over it, and SIGHUP picks up a renewed certificate without a restart
//! (a broken renewal keeps the one in use).

mod common;
mod support;

use common::*;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::tls::TestCa;
use switchboard::client::{Publisher, StreamShape, Viewer};

fn tls_config(dir: &std::path::Path) -> String {
    format!(
        "[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_and_whep_over_https_with_a_verified_certificate() {
    let ca = TestCa::new("switchboard test CA");
    let dir = tempfile::tempdir().unwrap();
    ca.write_server_pem(dir.path());
    let (server, _) = start(&tls_config(dir.path())).await;
    let base = format!("https://127.0.0.1:{}", server.http_addr().port());

    let http = ca.client().build().unwrap();
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Someone without our CA refuses the certificate.
    let stranger = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let refused = stranger.get(format!("{base}/healthz")).send().await;
    assert!(
        refused.is_err(),
        "certificate not verifiable without the CA"
    );
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::get(format!(
        "http://127.0.0.1:{}/healthz",
        server.http_addr().port()
    ))
    .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    let publisher = Arc::new(
        Publisher::connect_with(http.clone(), &base, "secure", &opts())
            .await
            .unwrap(),
    );
    assert!(
        publisher
            .resource
            .url
            .starts_with(&format!("{base}/whip/secure/"))
    );
    publisher.wait_connected(T).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let (p, s) = (publisher.clone(), stop.clone());
        tokio::spawn(async move { p.stream(StreamShape::default(), &s).await })
    };
    let viewer = Viewer::connect_with(&http, &base, "secure", &opts())
        .await
        .unwrap();
    viewer.wait_connected(T).await.unwrap();
    viewer
        .wait_media(50, 1, T)
        .await
        .expect("media over an HTTPS-signalled session");
    assert_eq!(viewer.delete().await.unwrap(), 200);
    stop.store(true, Ordering::Relaxed);
    let _ = streaming.await;
    server.shutdown().await;
}

/// The certificate (DER) a fresh HTTPS connection to `port` is shown.
async fn served_certificate(ca: &TestCa, port: u16) -> Option<Vec<u8>> {
    let http = ca
        .client()
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let resp = http
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .ok()?;
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()?
        .peer_certificate()
        .map(<[u8]>::to_vec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_renewed_certificate_and_keeps_it_when_renewal_is_broken() {
    let ca = TestCa::new("switchboard test CA");
    let dir = tempfile::tempdir().unwrap();
    let (_, _, first) = ca.write_server_pem(dir.path());
    let port = support::servers::free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nbind = \"127.0.0.1:{port}\"\n{}[webrtc]\nbind_ips = [\"127.0.0.1\"]\n",
            tls_config(dir.path())
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        seen = served_certificate(&ca, port).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.as_deref(),
        Some(&first[..]),
        "serves the configured certificate"
    );

    let hangup = |pid: u32| unsafe { libc_kill(pid as i32, 1) };
    let (_, _, renewed) = ca.write_server_pem(dir.path());
    hangup(child.id());
    let switched = eventually_async(Duration::from_secs(10), || async {
        served_certificate(&ca, port).await.as_deref() == Some(&renewed[..])
    })
    .await;
    assert!(switched, "SIGHUP picks up the renewed certificate");

    // A renewal that left a broken file: the server keeps the certificate it has.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    hangup(child.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        served_certificate(&ca, port).await.as_deref(),
        Some(&renewed[..]),
        "still serving after a failed reload"
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");
    let _ = child.kill();
    let _ = child.wait();
}

async fn eventually_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
