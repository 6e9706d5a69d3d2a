//! Deployment settings show up where clients see them: UDP port range and NAT 1:1 public
//! IPs in the answer's candidates, the public URL in `Location`, ICE servers in `Link`.

mod common;

use common::*;
use switchboard::client::Viewer;

/// The `Link` header values of a response.
fn links(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn candidates(sdp: &str) -> Vec<(String, u16)> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            Some((f.get(4)?.to_string(), f.get(5)?.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_range_is_honoured() {
    let (server, base) = start("udp_port_range = [41000, 41009]\n").await;
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let v = Viewer::connect(&base, "ports", &opts()).await.unwrap();
        v.wait_connected(T)
            .await
            .expect("connects on a port from the range");
        let answer = v.pc.remote_description().await.unwrap().sdp;
        let c = candidates(&answer);
        assert!(!c.is_empty(), "answer has candidates");
        for (_, port) in &c {
            assert!((41000..=41009).contains(port), "port {port} outside range");
        }
        viewers.push(v);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_ip_url_and_ice_servers_are_advertised() {
    let mut config = test_config(
        "public_ips = [\"203.0.113.7\"]\nice_servers = [{ urls = [\"stun:stun.example.net:3478\"] }, { urls = [\"turn:turn.example.net:3478\"], username = \"u\", credential = \"p\" }]\n",
    );
    config.http.public_url = "https://live.example.net/sb/".into();
    // No auth plugin here: behind a public URL that takes saying so.
    config.auth.allow_unauthenticated_public = true;
    let server = switchboard::server::Server::start(config).await.unwrap();
    let base = format!("http://{}", server.http_addr());

    // A real offer, sent by hand so we can read every header of the 201.
    let offerer = Viewer::connect(&base, "warm", &opts()).await.unwrap();
    let offer = offerer.pc.local_description().await.unwrap().sdp;
    let r = reqwest::Client::new()
        .post(format!("{base}/whep/nat"))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://live.example.net/sb/whep/nat/"),
        "Location uses the public URL: {location}"
    );
    let links = links(&r);
    assert!(
        links
            .iter()
            .any(|l| l == "<stun:stun.example.net:3478>; rel=\"ice-server\""),
        "{links:?}"
    );
    assert!(
        links.iter().any(
            |l| l.starts_with("<turn:turn.example.net:3478>; rel=\"ice-server\"")
                && l.contains("username=\"u\"")
                && l.contains("credential=\"p\"")
        ),
        "{links:?}"
    );
    let answer = r.text().await.unwrap();
    let c = candidates(&answer);
    assert!(!c.is_empty());
    assert!(
        c.iter().all(|(ip, _)| ip == "203.0.113.7"),
        "only the public IP is advertised: {c:?}"
    );
    offerer.close().await;
    server.shutdown().await;
}

/// A host name in `public_ips` (a DNS name for a NAT's public side) is resolved at start-up
/// and its address advertised (clients reject names in candidates); one that does not resolve
/// stops start-up naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_host_names_are_resolved_at_start_up() {
    let (server, base) = start("public_ips = [\"localhost\"]\n").await;
    let offerer = Viewer::connect(&base, "warm", &opts()).await.unwrap();
    offerer
        .wait_connected(T)
        .await
        .expect("a webrtc-rs client accepts the answer");
    let offer = offerer.pc.local_description().await.unwrap().sdp;
    let r = reqwest::Client::new()
        .post(format!("{base}/whep/named"))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let c = candidates(&r.text().await.unwrap());
    assert!(!c.is_empty());
    assert!(
        c.iter().all(|(ip, _)| ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())),
        "localhost's address is advertised: {c:?}"
    );
    offerer.close().await;
    server.shutdown().await;

    let unresolvable = test_config("public_ips = [\"no-such-host.invalid\"]\n");
    let err = switchboard::server::Server::start(unresolvable)
        .await
        .err()
        .expect("an unresolvable public host name stops start-up")
        .to_string();
    assert!(err.contains("webrtc.public_ips"), "{err}");
}

/// A full UDP port range is capacity, not a server fault: 503 with a reason, never 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_port_range_answers_503() {
    // Hold both ports of the range ourselves, as other processes (or sessions) would.
    let held: Vec<std::net::UdpSocket> = (41100..=41101)
        .map(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).expect("test owns the range"))
        .collect();
    let (server, base) = start("udp_port_range = [41100, 41101]\n").await;
    let refused = |r: Result<(), switchboard::client::ClientError>, what: &str| match r {
        Err(switchboard::client::ClientError::Http { status, body }) => {
            assert_eq!(status, 503, "{what}: {body}");
            assert!(body.contains("no free UDP port"), "{what}: {body}");
        }
        other => panic!("{what}: expected 503, got {:?}", other.err()),
    };
    let viewer = Viewer::connect(&base, "full", &opts()).await.map(|_| ());
    refused(viewer, "WHEP");
    let publisher = switchboard::client::Publisher::connect(&base, "full", &opts())
        .await
        .map(|_| ());
    refused(publisher, "WHIP");
    assert_eq!(server.sfu().session_count(), 0);
    assert!(server.sfu().room("full").is_none(), "nothing left behind");
    drop(held);
    server.shutdown().await;
}

/// ICE servers marked `client_only` are handed to clients but not gathered through, so
/// viewers stay on the direct driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_only_ice_servers_reach_clients_and_keep_the_direct_driver() {
    let (server, base) = start(
        "ice_servers = [{ urls = [\"turn:turn.example.net:3478\"], username = \"u\", credential = \"p\", client_only = true }]\n",
    )
    .await;
    let v = Viewer::connect(&base, "relay", &opts()).await.unwrap();
    v.wait_connected(T).await.expect("viewer connects");
    let id = v.resource.url.rsplit('/').next().unwrap();
    let session = server.sfu().session("relay", id).unwrap();
    assert!(
        matches!(session.pc, switchboard::sfu::session::Peer::Direct(_)),
        "viewer stays on the direct driver"
    );
    let r = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{base}/whep/relay"))
        .send()
        .await
        .unwrap();
    let links = links(&r);
    assert!(
        links
            .iter()
            .any(|l| l.starts_with("<turn:turn.example.net:3478>; rel=\"ice-server\"")),
        "{links:?}"
    );
    server.shutdown().await;
}
