//! Shared set-up for integration tests: a real server on loopback.
#![allow(dead_code)]

use std::time::Duration;
use switchboard::client::ClientOptions;
use switchboard::config::Config;
use switchboard::server::Server;

pub const T: Duration = Duration::from_secs(15);

/// Config for tests: loopback HTTP on a free port, loopback media, short timeouts, and
/// per-address limits (request rate, sessions) high enough for tests whose clients all share
/// one address (the limits tests set their own).
pub fn test_config(extra: &str) -> Config {
    let toml = format!(
        "[http]\nbind = \"127.0.0.1:0\"\n[limits]\nrequests_per_sec_per_ip = 1000\nrequest_burst_per_ip = 1000\nmax_sessions_per_ip = 1000\n[webrtc]\nbind_ips = [\"127.0.0.1\"]\nconnect_timeout_secs = 10\nice_disconnected_timeout_secs = 2\nice_failed_timeout_secs = 3\n{extra}"
    );
    Config::from_toml_str(&toml).expect("test config")
}

pub async fn start(extra: &str) -> (Server, String) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "switchboard=info,warn".into()),
        )
        .with_test_writer()
        .try_init();
    let server = Server::start(test_config(extra))
        .await
        .expect("server starts");
    let base = format!("http://{}", server.http_addr());
    (server, base)
}

pub fn opts() -> ClientOptions {
    ClientOptions::default()
}

/// Poll `cond` until true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cond()
}

/// A STUN Binding request with no attribute but USERNAME (RFC 8489 §5, §14.3): what an ICE
/// check looks like to a port that routes by username fragment, without the integrity.
pub fn stun_request(username: &str) -> Vec<u8> {
    // Binding request, no attributes but USERNAME (RFC 8489 §5, §14.3).
    let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&[7u8; 12]);
    let value = username.as_bytes();
    m.extend_from_slice(&0x0006u16.to_be_bytes());
    m.extend_from_slice(&(value.len() as u16).to_be_bytes());
    m.extend_from_slice(value);
    while m.len() % 4 != 0 {
        m.push(0);
    }
    let len = (m.len() - 20) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}
