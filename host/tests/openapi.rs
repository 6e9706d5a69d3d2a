//! The served OpenAPI document against the server it describes: `schemathesis` (PyPI) loads
//! `GET /admin/openapi.json` from a running server with a live room and a plugin, generates
//! requests for every operation (examples, boundary values, fuzzing) and checks every answer:
//! no 5xx, status codes, content types and bodies as documented, 401 without the token,
//! 405 with `Allow` for undocumented methods.

mod common;
mod observe;
mod support;

use common::*;
use observe::*;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use switchboard::client::{ClientOptions, Publisher, StreamShape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    ensure_python_module("schemathesis", "schemathesis");
    let tokens = format!(
        "[[plugins]]\nname = \"tokens\"\npath = \"{}\"\nhooks = [\"auth\"]\n[plugins.config]\ntoken = \"t0ken-for-tests\"\n",
        support::component("static-token").display()
    );
    // A webhook endpoint nobody answers, so the webhook routes have an endpoint to show.
    let store = tempfile::tempdir().unwrap();
    let webhooks = format!(
        "{}[store]\npath = \"{}\"\n",
        support::webhooks::endpoint(
            "audit",
            "http://127.0.0.1:9/hooks",
            &format!("\"{}\"", support::webhooks::SECRET),
            ""
        ),
        store.path().join("store.redb").display()
    );
    let (server, base) = start(&format!(
        "{}{tokens}{webhooks}[public_api]\nenabled = true\n",
        admin_config()
    ))
    .await;
    // Live rooms named like the document's examples, so they reach real data (`closing` is
    // the example of closing a room, so `lobby` stays for the others).
    let with_token = ClientOptions {
        token: Some("t0ken-for-tests".into()),
        ..opts()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut streaming = Vec::new();
    for room in ["lobby", "closing"] {
        let publisher = Arc::new(Publisher::connect(&base, room, &with_token).await.unwrap());
        publisher.wait_connected(T).await.unwrap();
        let s = stop.clone();
        streaming.push(tokio::spawn(async move {
            publisher.stream(StreamShape::default(), &s).await
        }));
    }

    let workdir = tempfile::tempdir().unwrap();
    let schema = format!("{base}/admin/openapi.json");
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .current_dir(workdir.path())
            .args([
                "-m",
                "schemathesis.cli",
                "run",
                &schema,
                "--header",
                &auth,
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "40",
                "--workers",
                "2",
                "--request-timeout",
                "20",
                "--max-time",
                "60",
                "--no-color",
            ])
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}");
    assert!(
        run.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}",
        run.status
    );
    assert!(
        stdout.contains("passed") && !stdout.contains("0 operations"),
        "schemathesis ran nothing?\n{stdout}"
    );
    stop.store(true, Ordering::Relaxed);
    for s in streaming {
        s.await.unwrap();
    }
    server.shutdown().await;
}
