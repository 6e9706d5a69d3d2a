//! ICE servers: which STUN/TURN servers clients are told about (`Link: <...>;
//! rel="ice-server"`, RFC 9725 §4.6) and which the server gathers its own candidates through.
//!
//! - `webrtc.ice_servers`: static entries, the same for everyone.
//! - `[webrtc.turn]`: a TURN server sharing a secret with us; each request is answered with
//!   credentials minted for the identity it authenticated as ([`turn_rest`]).
//! - [`public`]: the public addresses advertised in our candidates, settled at start-up
//!   (host names resolved, or asked of a STUN server: [`stun`]).
//!
//! - [`mux`]: every session on one UDP port (`webrtc.udp_port`); [`tcp`]: ICE-TCP on one
//!   TCP port (`webrtc.tcp_port`). A session's place on both is one [`MuxBinding`].
//!
//! The provider is asked per request, so minted credentials are always fresh.

pub mod config;
pub mod mux;
pub mod public;
pub mod stun;
pub mod tcp;
pub mod turn_rest;

use crate::config::WebrtcConfig;
use http::HeaderValue;
use std::time::{Duration, SystemTime};
use turn_rest::TurnRest;
use webrtc::peer_connection::RTCIceServer;

/// A session's place on the shared ports: the single UDP port, the ICE-TCP port, or both.
/// Dropping it removes every route to the session.
pub struct MuxBinding {
    pub udp: Option<mux::UdpBinding>,
    pub tcp: Option<tcp::TcpBinding>,
}

impl MuxBinding {
    /// Route checks naming the `a=ice-ufrag` of our answer `sdp` (first or ICE restart) to
    /// this session, on every shared port.
    pub fn register_answer(&self, sdp: &str) {
        for line in sdp.lines() {
            if let Some(ufrag) = line.trim_end().strip_prefix("a=ice-ufrag:") {
                if let Some(udp) = &self.udp {
                    udp.register_ufrag(ufrag);
                }
                if let Some(tcp) = &self.tcp {
                    tcp.register_ufrag(ufrag);
                }
            }
        }
    }
}

/// Subject of the credentials the server mints for its own relay candidates.
const SERVER_SUBJECT: &str = "switchboard";

/// The ICE servers of one configuration.
pub struct IceServers {
    /// `Link` values of the static entries.
    static_links: Vec<HeaderValue>,
    /// Static entries the server gathers through (not `client_only`).
    static_for_server: Vec<RTCIceServer>,
    turn: Option<Turn>,
}

struct Turn {
    urls: Vec<String>,
    rest: TurnRest,
    on_options: bool,
    server_relay: bool,
}

impl IceServers {
    pub fn new(webrtc: &WebrtcConfig) -> Self {
        let mut static_links = Vec::new();
        for server in &webrtc.ice_servers {
            for url in &server.urls {
                let credential = (!server.username.is_empty())
                    .then_some((server.username.as_str(), server.credential.as_str()));
                static_links.extend(link(url, credential));
            }
        }
        IceServers {
            static_links,
            static_for_server: webrtc
                .ice_servers
                .iter()
                .filter(|s| !s.client_only)
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone(),
                    credential: s.credential.clone(),
                })
                .collect(),
            turn: webrtc.turn.as_ref().map(|t| Turn {
                urls: t.urls.clone(),
                rest: TurnRest::new(&t.secret, Duration::from_secs(t.ttl_secs)),
                on_options: t.on_options,
                server_relay: t.server_relay,
            }),
        }
    }

    /// The `Link` values for a client that authenticated as `subject` (a session's answer).
    pub fn links_for(&self, subject: &str, now: SystemTime) -> Vec<HeaderValue> {
        let mut links = self.static_links.clone();
        if let Some(turn) = &self.turn {
            let c = turn.rest.mint(subject, now);
            for url in &turn.urls {
                links.extend(link(url, Some((&c.username, &c.password))));
            }
        }
        links
    }

    /// The `Link` values for an `OPTIONS` request: `subject` is who its bearer token
    /// authenticated as, if anyone; TURN credentials only go to them, and only when
    /// `webrtc.turn.on_options` allows.
    pub fn links_for_options(&self, subject: Option<&str>, now: SystemTime) -> Vec<HeaderValue> {
        match subject {
            Some(subject) if self.mints_on_options() => self.links_for(subject, now),
            _ => self.static_links.clone(),
        }
    }

    /// Whether `OPTIONS` requests get TURN credentials (so they must be authenticated).
    pub fn mints_on_options(&self) -> bool {
        self.turn.as_ref().is_some_and(|t| t.on_options)
    }

    /// The servers the server gathers its own candidates through, with fresh credentials.
    pub fn for_server(&self, now: SystemTime) -> Vec<RTCIceServer> {
        let mut servers = self.static_for_server.clone();
        if let Some(turn) = self.turn.as_ref().filter(|t| t.server_relay) {
            let c = turn.rest.mint(SERVER_SUBJECT, now);
            servers.push(RTCIceServer {
                urls: turn.urls.clone(),
                username: c.username,
                credential: c.password,
            });
        }
        servers
    }

    /// Whether the server gathers through any STUN/TURN server (or only host candidates).
    pub fn server_gathers(&self) -> bool {
        !self.static_for_server.is_empty() || self.turn.as_ref().is_some_and(|t| t.server_relay)
    }
}

/// `<url>; rel="ice-server"` with the credential if any; `None` if it cannot be a header.
fn link(url: &str, credential: Option<(&str, &str)>) -> Option<HeaderValue> {
    let mut link = format!("<{url}>; rel=\"ice-server\"");
    if let Some((username, credential)) = credential {
        link.push_str(&format!(
            "; username=\"{username}\"; credential=\"{credential}\"; credential-type=\"password\""
        ));
    }
    HeaderValue::from_str(&link).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IceServerConfig, WebrtcConfig};
    use std::time::UNIX_EPOCH;

    fn webrtc(turn: Option<config::TurnConfig>) -> WebrtcConfig {
        let mut w = crate::config::Config::default().webrtc;
        w.ice_servers = vec![IceServerConfig {
            urls: vec!["stun:stun.example.com:3478".into()],
            username: String::new(),
            credential: String::new(),
            client_only: true,
        }];
        w.turn = turn;
        w
    }

    fn turn(on_options: bool, server_relay: bool) -> config::TurnConfig {
        config::TurnConfig {
            urls: vec![
                "turn:turn.example.com:3478?transport=udp".into(),
                "turns:turn.example.com:443?transport=tcp".into(),
            ],
            secret: "0123456789abcdef".into(),
            ttl_secs: 600,
            on_options,
            server_relay,
        }
    }

    fn text(links: &[HeaderValue]) -> Vec<&str> {
        links.iter().map(|l| l.to_str().unwrap()).collect()
    }

    #[test]
    fn sessions_get_static_servers_and_minted_turn_credentials() {
        let ice = IceServers::new(&webrtc(Some(turn(true, false))));
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let links = ice.links_for("alice", now);
        let links = text(&links);
        assert_eq!(links.len(), 3);
        assert_eq!(links[0], "<stun:stun.example.com:3478>; rel=\"ice-server\"");
        let password = TurnRest::new("0123456789abcdef", Duration::from_secs(600))
            .mint("alice", now)
            .password;
        assert_eq!(
            links[1],
            format!(
                "<turn:turn.example.com:3478?transport=udp>; rel=\"ice-server\"; \
                 username=\"1600:alice\"; credential=\"{password}\"; credential-type=\"password\""
            )
        );
        assert!(links[2].starts_with("<turns:turn.example.com:443?transport=tcp>"));
        assert!(ice.for_server(now).is_empty(), "stun entry is client_only");
        assert!(!ice.server_gathers());
    }

    #[test]
    fn options_mint_only_for_an_authenticated_caller_when_allowed() {
        let now = UNIX_EPOCH;
        let on = IceServers::new(&webrtc(Some(turn(true, false))));
        assert_eq!(on.links_for_options(None, now).len(), 1);
        assert_eq!(on.links_for_options(Some("bob"), now).len(), 3);
        let off = IceServers::new(&webrtc(Some(turn(false, false))));
        assert!(!off.mints_on_options());
        assert_eq!(off.links_for_options(Some("bob"), now).len(), 1);
        let none = IceServers::new(&webrtc(None));
        assert_eq!(none.links_for("bob", now).len(), 1);
    }

    #[test]
    fn server_relay_gathers_through_turn_with_its_own_credentials() {
        let ice = IceServers::new(&webrtc(Some(turn(true, true))));
        let servers = ice.for_server(UNIX_EPOCH);
        assert!(ice.server_gathers());
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].username, "600:switchboard");
        assert_eq!(servers[0].urls.len(), 2);
    }
}
