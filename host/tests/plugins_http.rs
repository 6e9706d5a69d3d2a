//! The plugin platform through the real server: WHIP/WHEP status codes, swapping auth by
//! configuration, hostile plugins next to healthy rooms, admin reload, and continuous
//! authorization ending live sessions.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::*;
use switchboard::client::{ClientError, ClientOptions, Publisher, Viewer};
use switchboard::config::Config;
use switchboard::server::Server;

const T: Duration = Duration::from_secs(15);

/// A server on loopback with `plugins_toml` appended to a minimal test config.
async fn start(plugins_toml: &str) -> (Server, String) {
    let toml = format!(
        "[http]\nbind = \"127.0.0.1:0\"\n[webrtc]\nbind_ips = [\"127.0.0.1\"]\nconnect_timeout_secs = 10\n{plugins_toml}"
    );
    let config = Config::from_toml_str(&toml).expect("valid test config");
    let server = Server::start(config).await.expect("server starts");
    let base = format!("http://{}", server.http_addr());
    (server, base)
}

fn toml_plugin(name: &str, file: &str, hooks: &str, config: &str) -> String {
    format!(
        "[[plugins]]\nname = \"{name}\"\npath = \"{}\"\nhooks = {hooks}\n[plugins.config]\n{config}\n",
        component(file).display()
    )
}

fn with_token(token: &str) -> ClientOptions {
    ClientOptions {
        token: Some(token.into()),
        ..ClientOptions::default()
    }
}

fn http_status(result: Result<Publisher, ClientError>) -> u16 {
    match result {
        Err(ClientError::Http { status, .. }) => status,
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a session"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_auth_in_config_changes_behaviour() {
    let minted = mint(
        json!({ "jwt": { "alg": "RS256", "claims": claims(json!("main"), json!(["publish", "play"])) } }),
    );
    let jwt = token(&minted, "jwt");

    let (static_server, base) = start(&toml_plugin(
        "auth",
        "static-token",
        "[\"auth\"]",
        "token = \"s3cret-token\"",
    ))
    .await;
    let publisher = Publisher::connect(&base, "main", &with_token("s3cret-token"))
        .await
        .expect("static token publishes");
    publisher.wait_connected(T).await.expect("connected");
    assert_eq!(
        http_status(Publisher::connect(&base, "main", &with_token(jwt)).await),
        401
    );
    publisher.close().await;
    static_server.shutdown().await;

    // Same binary, different config: now JWTs work and the static token does not.
    let jwt_toml = format!(
        "{}keys = [{{ alg = \"RS256\", pem = '''{}''' }}]\naudience = \"switchboard\"\nissuer = \"https://idp.test\"\n",
        toml_plugin("auth", "auth-jwt", "[\"auth\"]", ""),
        minted["pem"]["RS256"].as_str().unwrap()
    );
    let (jwt_server, base) = start(&jwt_toml).await;
    let publisher = Publisher::connect(&base, "main", &with_token(jwt))
        .await
        .expect("JWT publishes");
    publisher.wait_connected(T).await.expect("connected");
    let viewer = Viewer::connect(&base, "main", &with_token(jwt))
        .await
        .expect("JWT plays");
    viewer.wait_connected(T).await.expect("viewer connected");
    assert_eq!(
        http_status(Publisher::connect(&base, "main", &with_token("s3cret-token")).await),
        401
    );
    viewer.close().await;
    publisher.close().await;
    jwt_server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_or_403_over_http() {
    let ok = claims(json!("main"), json!("play"));
    let mut wrong_aud = ok.clone();
    wrong_aud["aud"] = json!("elsewhere");
    let mut expired = ok.clone();
    expired["exp"] = json!("$now-3600");
    let minted = mint(json!({
        "good": { "alg": "ES256", "claims": ok.clone() },
        "tampered": { "alg": "ES256", "claims": ok.clone(), "tamper": "role=publish" },
        "expired": { "alg": "EdDSA", "claims": expired },
        "wrong_aud": { "alg": "RS256", "claims": wrong_aud },
        "confusion": { "alg": "RS256", "forge": "hs256-with-public-pem", "claims": ok.clone() },
        "none": { "alg": "RS256", "forge": "none", "claims": ok.clone() },
    }));
    let toml = format!(
        "{}issuer = \"https://idp.test\"\naudience = \"switchboard\"\nkeys = [\n  {{ alg = \"RS256\", pem = '''{}''' }},\n  {{ alg = \"ES256\", pem = '''{}''' }},\n  {{ alg = \"EdDSA\", pem = '''{}''' }},\n]\n",
        toml_plugin("jwt", "auth-jwt", "[\"auth\"]", ""),
        minted["pem"]["RS256"].as_str().unwrap(),
        minted["pem"]["ES256"].as_str().unwrap(),
        minted["pem"]["EdDSA"].as_str().unwrap(),
    );
    let (server, base) = start(&toml).await;
    for (name, path, status, message) in [
        ("tampered", "/whep/main", 401, "invalid token signature"),
        ("expired", "/whep/main", 401, "token expired"),
        ("wrong_aud", "/whep/main", 401, "wrong token audience"),
        (
            "confusion",
            "/whep/main",
            401,
            "no HS256 key is configured for this token",
        ),
        (
            "none",
            "/whep/main",
            401,
            "token algorithm `none` is not accepted",
        ),
        (
            "good",
            "/whep/other-room",
            403,
            "token is not valid for room `other-room`",
        ),
        ("good", "/whip/main", 403, "token does not allow publish"),
    ] {
        let (got, body) = post_status(&base, path, Some(token(&minted, name))).await;
        assert_eq!(got, status, "{name} on {path}: {body}");
        assert!(body.contains(message), "{name} on {path}: {body}");
    }
    assert_eq!(post_status(&base, "/whep/main", None).await.0, 401);
    // The good token is admitted (then the stub offer is refused as SDP, not as auth).
    let (got, body) = post_status(&base, "/whep/main", Some(token(&minted, "good"))).await;
    assert!(got != 401 && got != 403, "{got}: {body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_plugins_get_503_while_other_rooms_stream() {
    let mut toml = toml_plugin(
        "auth",
        "static-token",
        "[\"auth\"]",
        "token = \"t0ken-for-tests\"",
    );
    for (name, mode) in [
        ("looping", "loop"),
        ("bomb", "memory"),
        ("crash", "trap"),
        ("big", "oversized"),
    ] {
        toml += &toml_plugin(
            name,
            "testing-hostile",
            "[\"room-policy\"]",
            &format!(
                "mode = \"{mode}\"\nonly_room = \"{name}\"\n[plugins.limits]\ntimeout_ms = 50\nmemory_mib = 16"
            ),
        );
    }
    let (server, base) = start(&toml).await;
    let auth = with_token("t0ken-for-tests");

    let mut attacks = Vec::new();
    for room in ["looping", "bomb", "crash", "big", "looping", "bomb"] {
        let base = base.clone();
        attacks.push(tokio::spawn(async move {
            let started = Instant::now();
            let (status, body) =
                post_status(&base, &format!("/whip/{room}"), Some("t0ken-for-tests")).await;
            (room, status, body, started.elapsed())
        }));
    }
    let publisher = Publisher::connect(&base, "main", &auth)
        .await
        .expect("healthy room publishes");
    let viewer = Viewer::connect(&base, "main", &auth)
        .await
        .expect("healthy room plays");
    for attack in attacks {
        let (room, status, body, took) = attack.await.unwrap();
        assert_eq!(status, 503, "{room}: {body}");
        assert!(
            body.contains(&format!("room-policy plugin `{room}` failed")),
            "{room}: {body}"
        );
        assert!(
            took < Duration::from_millis(50 + 1000),
            "{room}: took {took:?}"
        );
    }
    publisher
        .wait_connected(T)
        .await
        .expect("publisher connected");
    viewer.wait_connected(T).await.expect("viewer connected");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    viewer.close().await;
    publisher.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn admin_reload_endpoint() {
    let tokens = toml_plugin(
        "auth",
        "static-token",
        "[\"auth\"]",
        "token = \"t0ken-for-tests\"",
    );
    let (server, base) = start(&format!(
        "[admin]\ntoken = \"adm1n-t0ken-for-tests\"\n{tokens}"
    ))
    .await;
    let client = reqwest::Client::new();
    let url = format!("{base}/admin/reload");
    assert_eq!(client.post(&url).send().await.unwrap().status(), 401);
    let resp = client
        .post(&url)
        .bearer_auth("adm1n-t0ken-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let report: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(report["plugins"], json!(["auth"]));
    server.shutdown().await;

    let (server, base) = start(&tokens).await;
    let resp = client
        .post(format!("{base}/admin/reload"))
        .bearer_auth("adm1n-t0ken-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "no admin token configured: no endpoint");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_the_token_expires_or_is_revoked() {
    let jwt = |recheck: &str| {
        toml_plugin(
            "jwt",
            "auth-jwt",
            "[\"auth\"]",
            &format!("secret = \"{SECRET}\"\nleeway_secs = 0\nrequire_exp = true\n{recheck}"),
        )
    };
    let (server, base) = start(&jwt("recheck_every_secs = 1")).await;
    // Minted after start-up, so the short token's few seconds are all spent streaming.
    let minted = mint(json!({
        "short": { "alg": "HS256", "claims": { "sub": "shortlived", "exp": "$now+4", "room": "*", "role": ["publish"] } },
        "long": { "alg": "HS256", "claims": { "sub": "revoked-later", "exp": "$now+600", "room": "*", "role": ["publish"] } },
    }));

    // Expiry: the host ends the session at the token's `exp`.
    let short = Publisher::connect(&base, "a", &with_token(token(&minted, "short")))
        .await
        .expect("publishes");
    short.wait_connected(T).await.expect("connected");
    // Revocation: a recheck against new keys ends the session.
    let long = Publisher::connect(&base, "b", &with_token(token(&minted, "long")))
        .await
        .expect("publishes");
    long.wait_connected(T).await.expect("connected");
    assert_eq!(server.sfu().session_count(), 2);

    let deadline = Instant::now() + Duration::from_secs(8);
    while server.sfu().counts("a").publishers > 0 {
        assert!(Instant::now() < deadline, "expired session still live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.sfu().counts("b").publishers,
        1,
        "the long-lived token keeps streaming"
    );

    let rotated = plugin(
        "jwt",
        "auth-jwt",
        &["auth"],
        json!({ "secret": "rotated-secret-rotated-secret-rotated!", "recheck_every_secs": 1 }),
    );
    server
        .plugins()
        .reload_with(vec![rotated], no_upstreams())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.sfu().counts("b").publishers > 0 {
        assert!(Instant::now() < deadline, "revoked session still live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    short.close().await;
    long.close().await;
    server.shutdown().await;
}
