//! HTTPS upstreams: a plugin calls a named upstream served over TLS with a certificate from a
//! CA made in the test. With that CA in the upstream's `ca_file` the call succeeds; without
//! it, or with another CA, it fails with a `transport` error about the certificate. Redirects
//! are not followed; a bad `ca_file` fails the load naming `upstreams.<name>.ca_file`.

mod support;

use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use support::tls::{TestCa, serve_https};
use support::*;
use switchboard::auth::{Action, Denied, Gatekeeper};
use switchboard::plugins::{PluginConfig, PluginGate, UpstreamConfig};

/// `[upstreams.idp]` at `url`, trusting `ca_file` in addition to the system's roots.
fn upstreams(url: &str, ca_file: Option<PathBuf>) -> BTreeMap<String, UpstreamConfig> {
    let mut upstreams = idp_upstream(url, 2_000);
    upstreams.get_mut("idp").expect("idp").ca_file = ca_file;
    upstreams
}

/// The probe asking the `idp` upstream about each credential.
fn remote() -> PluginConfig {
    probe("remote", json!({ "mode": "http", "upstream": "idp" }))
}

#[tokio::test]
async fn https_upstream_trusted_through_ca_file() {
    let ca = TestCa::new("Switchboard test CA");
    let url = serve_https(idp_router(), ca.server_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path(), "ca.pem");

    let gate = PluginGate::new(vec![remote()], upstreams(&url, Some(ca_file)))
        .await
        .unwrap();
    // The upstream answers only with the API key the host injects, so this is the full
    // exchange over TLS.
    let id = gate
        .admit(&request("r", Action::Play, Some("alice")))
        .await
        .unwrap();
    assert_eq!(id.subject, "via-http:alice");

    // A redirect is handed to the plugin as it is, never followed.
    assert_eq!(
        gate.admit(&request("r", Action::Play, Some("redirect")))
            .await,
        Err(Denied::Forbidden("upstream said 302".into()))
    );
}

#[tokio::test]
async fn https_upstream_with_an_unknown_ca_fails_on_the_certificate() {
    let ca = TestCa::new("Switchboard test CA");
    let url = serve_https(idp_router(), ca.server_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let other = TestCa::new("Some other CA").write_pem(dir.path(), "other.pem");

    for ca_file in [None, Some(other)] {
        let what = format!("ca_file = {ca_file:?}");
        let gate = PluginGate::new(vec![remote()], upstreams(&url, ca_file))
            .await
            .unwrap();
        match gate.admit(&request("r", Action::Play, Some("alice"))).await {
            // The probe turns the host's `http-error` into its denial reason.
            Err(Denied::Unauthorized(reason)) => {
                assert!(
                    reason.starts_with("http: ") && reason.contains("Transport"),
                    "{what}: {reason}"
                );
                assert!(
                    reason.contains("certificate") && reason.contains("UnknownIssuer"),
                    "{what}: {reason}"
                );
            }
            other => panic!("{what}: expected a transport failure, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_bad_ca_file_fails_the_load_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for (ca_file, why) in [
        (not_pem, "holds no PEM certificate"),
        (missing, "cannot read"),
    ] {
        let err = PluginGate::new(
            vec![remote()],
            upstreams("https://127.0.0.1:9", Some(ca_file)),
        )
        .await
        .err()
        .expect("the load must fail")
        .to_string();
        assert!(
            err.starts_with("invalid config: upstreams.idp.ca_file: ") && err.contains(why),
            "{err}"
        );
    }
}
