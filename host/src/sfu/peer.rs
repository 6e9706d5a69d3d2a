//! Building `PeerConnection`s with the deployment's network settings.
//!
//! Everything about *how* sockets and ICE are set up lives here, so the rest of the SFU core
//! deals only in connected peers and tracks. The shared ports (single-port UDP, ICE-TCP) are
//! handed to connections here too: see [`PeerFactory::start_mux`].

use crate::config::WebrtcConfig;
use crate::ice::MuxBinding;
use crate::ice::mux::{MuxBindError, UdpMux};
use crate::ice::tcp::{TcpMux, TcpMuxBindError};
use rtc::interceptor::{SenderReportBuilder, Slot};
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RtpCodecKind};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};
use webrtc::peer_connection::{
    CipherSuiteId, MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfiguration, RTCConfigurationBuilder, RTCPeerConnection, Registry, SettingEngine,
    SettingEngineBuilder, SrtpProtectionProfile, register_default_interceptors,
};
use webrtc::runtime::AsyncUdpSocket;

/// Which DTLS role the remote offer leaves to us, read from its `a=setup:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsSide {
    /// Offer said `actpass`/`active`: we answer `passive` and run the DTLS server.
    Server,
    /// Offer said `passive`: we are the DTLS client and must accept RSA or ECDSA servers.
    Client,
}

impl DtlsSide {
    pub fn from_offer(sdp: &str) -> DtlsSide {
        if sdp.lines().any(|l| l.trim_end() == "a=setup:passive") {
            DtlsSide::Client
        } else {
            DtlsSide::Server
        }
    }
}

/// What a connection is for; it decides the interceptors the connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// Receives media (WHIP): the full default interceptor set, so the encoder gets
    /// NACKs, receiver reports and transport-wide congestion feedback.
    Publisher,
    /// Only sends media (WHEP): see [`viewer_interceptors`].
    Viewer,
}

/// ICE check (and connection timer) interval while a connection is being established.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Binding requests the server sends to one remote candidate before giving it up: 0.5 s of
/// checks, covering round trips up to that, the same order of magnitude as STUN's 7
/// retransmissions. The client's own checks (triggered checks) revive a pair at any time, so a
/// short budget costs nothing to a real client, and it bounds what a list of someone else's
/// addresses can make the server send (see `candidates`: at most
/// `MAX_PER_SESSION x (ICE_MAX_CHECKS + 1)` datagrams per session).
pub const ICE_MAX_CHECKS: u16 = 25;

/// Packets of history the NACK responder keeps per viewer video stream: about 2 s of 1 Mbit/s
/// video and 0.6 s at 4 Mbit/s, beyond any round trip worth retransmitting into. Each slot
/// costs ~112 bytes per viewer whether used or not, so the crate's default of 1024 alone would
/// be ~112 KiB of every viewer's memory.
const VIEWER_NACK_HISTORY: u16 = 256;

/// The interceptors of a send-only viewer connection.
///
/// Every outgoing packet walks the whole chain, so it holds only what acts on what we send:
/// the NACK responder (retransmits what the viewer reports lost; video advertises `nack` and
/// `nack pli`, so the viewer may ask) behind a guard that bounds how much it may resend
/// ([`nack_guard`](super::nack_guard)), and sender reports (RTT, lip sync). The NACK generator,
/// receiver reports and the TWCC receiver act on media we would receive, and a viewer sends
/// none; their header extensions are not negotiated either.
fn viewer_interceptors(media: &mut MediaEngine) -> Registry {
    for parameter in ["", "pli"] {
        media.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    super::nack_guard::with_guarded_nack_responder(Registry::new(), VIEWER_NACK_HISTORY)
        .with(Slot::SenderReport, SenderReportBuilder::new().build())
}

/// Makes peer connections for publishers and viewers.
pub struct PeerFactory {
    config: WebrtcConfig,
    ice_servers: Arc<crate::ice::IceServers>,
    /// What host candidates are advertised as (`webrtc.public_ips`), per address family.
    public_v4: Option<String>,
    public_v6: Option<String>,
    next_port: AtomicU32,
    /// Every session's sockets on one port (`webrtc.udp_port`), once [`PeerFactory::start_mux`]
    /// bound it.
    mux: std::sync::OnceLock<Arc<UdpMux>>,
    /// ICE-TCP on one port (`webrtc.tcp_port`), once [`PeerFactory::start_mux`] bound it.
    tcp_mux: std::sync::OnceLock<Arc<TcpMux>>,
    /// The DTLS certificate every connection presents (see [`PeerFactory::certificate`]).
    certificate: parking_lot::Mutex<Option<RTCCertificate>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("could not create peer connection: {0}")]
    Build(String),
    /// Every port of `webrtc.udp_port_range` is taken: capacity, not a fault (503).
    #[error("no free UDP port in webrtc.udp_port_range {0}-{1}; try again later")]
    NoPort(u16, u16),
}

impl PeerFactory {
    pub fn new(config: WebrtcConfig) -> Self {
        let ice_servers = Arc::new(crate::ice::IceServers::new(&config));
        // Host names were resolved at start-up (`ice::public`).
        let public_v4 = config
            .public_ips
            .iter()
            .find(|a| a.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4()))
            .cloned();
        let public_v6 = config
            .public_ips
            .iter()
            .find(|a| a.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()))
            .cloned();
        let [min, _] = config.udp_port_range;
        PeerFactory {
            config,
            ice_servers,
            public_v4,
            public_v6,
            mux: std::sync::OnceLock::new(),
            tcp_mux: std::sync::OnceLock::new(),
            next_port: AtomicU32::new(min as u32),
            certificate: parking_lot::Mutex::new(None),
        }
    }

    /// The server's DTLS certificate (ECDSA P-256), made once and shared by every connection.
    ///
    /// Left to itself webrtc-rs generates a fresh key and self-signed certificate for each
    /// connection, on the join path. One identity for the whole server is what SFUs usually
    /// present (the fingerprint travels in each answer, so nothing else changes); a new one is
    /// made if the current one is within a day of expiring.
    fn certificate(&self) -> Result<RTCCertificate, PeerError> {
        let mut slot = self.certificate.lock();
        let fresh = |c: &RTCCertificate| {
            c.expires
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > Duration::from_secs(24 * 3600))
        };
        if let Some(cert) = slot.as_ref().filter(|c| fresh(c)) {
            return Ok(cert.clone());
        }
        let err = |e: &dyn std::fmt::Display| PeerError::Build(format!("DTLS certificate: {e}"));
        let provider = rtc::crypto::default_provider().map_err(|e| err(&e))?;
        let params = CertificateParams::new(vec!["switchboard".to_owned()]).map_err(|e| err(&e))?;
        let cert = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            params,
        )
        .map_err(|e| err(&e))?;
        *slot = Some(cert.clone());
        Ok(cert)
    }

    pub fn config(&self) -> &WebrtcConfig {
        &self.config
    }

    pub fn ice_servers(&self) -> &Arc<crate::ice::IceServers> {
        &self.ice_servers
    }

    /// Bind `webrtc.udp_port` and `webrtc.tcp_port` on every bind address, when configured
    /// (at start-up: a port another process holds stops the server).
    pub fn start_mux(&self) -> Result<(), SharedPortError> {
        let ips = host_ips(&self.config.bind_ips);
        if self.config.udp_port != 0 && self.mux.get().is_none() {
            let runtime = super::runtime::ViewerRuntime::shared(self.config.batch_sends);
            let mux = UdpMux::bind(&ips, self.config.udp_port, &runtime)?;
            tracing::info!(addrs = ?mux.local_addrs(), "every session on one UDP port");
            let _ = self.mux.set(mux);
        }
        if self.config.tcp_port != 0 && self.tcp_mux.get().is_none() {
            let mux = TcpMux::bind(&ips, self.config.tcp_port)?;
            tracing::info!(addrs = ?mux.local_addrs(), "ICE-TCP on one TCP port");
            let _ = self.tcp_mux.set(mux);
        }
        Ok(())
    }

    /// The single-port UDP mux, if bound.
    pub fn mux(&self) -> Option<&Arc<UdpMux>> {
        self.mux.get()
    }

    /// The ICE-TCP listeners, if bound.
    pub fn tcp_mux(&self) -> Option<&Arc<TcpMux>> {
        self.tcp_mux.get()
    }

    /// A new session's place on the shared ports, when any is bound.
    fn bind_session(&self) -> Option<MuxBinding> {
        let udp = self.mux.get().map(|m| m.bind_session());
        let tcp = self.tcp_mux.get().map(|m| m.bind_session());
        (udp.is_some() || tcp.is_some()).then_some(MuxBinding { udp, tcp })
    }

    /// Build every part of a connection once (codecs, interceptors, settings, the DTLS
    /// certificate) without binding sockets: what `switchboard --check` can verify.
    pub fn check(&self) -> Result<(), PeerError> {
        self.parts(DtlsSide::Server, PeerRole::Publisher)?;
        self.parts(DtlsSide::Server, PeerRole::Viewer)?;
        Ok(())
    }

    /// Rewrite our host candidates to what clients must use: the configured public IPs (1:1
    /// NAT), per address family, and the single-port mux's port.
    ///
    /// The webrtc crate stores but does not apply its NAT 1:1 setting, so it is done on the SDP
    /// we hand out: remote checks arrive at the public address, the NAT delivers them to the
    /// local socket, and ICE matches them by socket. The mux is the same kind of translation:
    /// webrtc-rs's driver names its host candidates after the ephemeral socket it bound before
    /// being handed the session's socket on the shared port, and matches what arrives by that
    /// name; clients must reach the shared port. Identical rewritten candidates collapse.
    pub fn advertise(&self, sdp: &str) -> String {
        let mux_port = self
            .mux
            .get()
            .and_then(|m| m.local_addrs().first().map(|a| a.port()));
        let tcp_port = self
            .tcp_mux
            .get()
            .and_then(|m| m.local_addrs().first().map(|a| a.port()));
        if self.public_v4.is_none()
            && self.public_v6.is_none()
            && mux_port.is_none()
            && tcp_port.is_none()
        {
            return sdp.to_owned();
        }
        let (v4, v6) = (self.public_v4.as_ref(), self.public_v6.as_ref());
        let mut out = String::with_capacity(sdp.len());
        let mut seen = std::collections::HashSet::new();
        for line in sdp.split_inclusive('\n') {
            let Some(rest) = line.trim_end().strip_prefix("a=candidate:") else {
                out.push_str(line);
                continue;
            };
            let mut fields: Vec<&str> = rest.split(' ').collect();
            let is_host = fields.windows(2).any(|w| w == ["typ", "host"]);
            let is_udp = fields.get(2).is_some_and(|t| t.eq_ignore_ascii_case("udp"));
            let is_passive_tcp = fields.get(2).is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
                && fields.windows(2).any(|w| w == ["tcptype", "passive"]);
            let public = match fields.get(4).and_then(|a| a.parse::<IpAddr>().ok()) {
                Some(IpAddr::V4(_)) => v4.cloned(),
                Some(IpAddr::V6(_)) => v6.cloned(),
                None => None,
            };
            // webrtc-rs's driver also lists an active TCP candidate (port 9) per listener; it
            // never dials out, and clients are the active side, so it is left out.
            if fields.windows(2).any(|w| w == ["tcptype", "active"]) {
                continue;
            }
            let port = match (is_udp, is_passive_tcp) {
                (true, _) => mux_port,
                (_, true) => tcp_port,
                _ => None,
            }
            .map(|p| p.to_string());
            if !is_host || fields.len() < 6 || (public.is_none() && port.is_none()) {
                out.push_str(line);
                continue;
            }
            if let Some(public) = &public {
                fields[4] = public;
            }
            if let Some(port) = &port {
                fields[5] = port;
            }
            // Component, transport, address and port identify a duplicate.
            let key = (
                fields[1].to_owned(),
                fields[2].to_lowercase(),
                fields[4].to_owned(),
                fields[5].to_owned(),
            );
            if !seen.insert(key) {
                continue;
            }
            out.push_str("a=candidate:");
            out.push_str(&fields.join(" "));
            out.push_str("\r\n");
        }
        out
    }

    /// Build a connection ready for `set_remote_description`, with its place on the
    /// single-port mux when there is one (the session keeps it; see [`MuxBinding`]).
    pub async fn build(
        &self,
        handler: Arc<dyn PeerConnectionEventHandler>,
        dtls: DtlsSide,
        role: PeerRole,
    ) -> Result<(Arc<dyn PeerConnection>, Option<MuxBinding>), PeerError> {
        let binding = self.bind_session();
        if binding.as_ref().is_some_and(|b| b.udp.is_some()) {
            let pc = self
                .build_on_port(handler, dtls, role, 0, binding.as_ref())
                .await?;
            return Ok((pc, binding));
        }
        for port in self.ports_to_try() {
            match self
                .build_on_port(handler.clone(), dtls, role, port, binding.as_ref())
                .await
            {
                Ok(pc) => return Ok((pc, binding)),
                Err(PeerError::Build(e)) if port != 0 => {
                    tracing::debug!(port, error = %e, "UDP port unavailable, trying next");
                }
                Err(e) => return Err(e),
            }
        }
        let [min, max] = self.config.udp_port_range;
        Err(PeerError::NoPort(min, max))
    }

    async fn build_on_port(
        &self,
        handler: Arc<dyn PeerConnectionEventHandler>,
        dtls: DtlsSide,
        role: PeerRole,
        port: u16,
        mux: Option<&MuxBinding>,
    ) -> Result<Arc<dyn PeerConnection>, PeerError> {
        let parts = self.parts(dtls, role)?;
        let ephemeral = || {
            host_ips(&self.config.bind_ips)
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
        };
        // The driver listens on an ephemeral port per address and is handed the session's
        // connections on the shared one.
        let tcp_addrs = match mux.and_then(|m| m.tcp.as_ref()) {
            Some(_) => ephemeral(),
            None => Vec::new(),
        };
        let udp_addrs: Vec<SocketAddr> = match mux.and_then(|m| m.udp.as_ref()) {
            // The driver binds an ephemeral port per address and is handed the shared one.
            Some(_) => host_ips(&self.config.bind_ips)
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect(),
            None => self
                .config
                .bind_ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect(),
        };

        let mut builder = PeerConnectionBuilder::new();
        // Viewer sockets only receive small datagrams: single-datagram buffers, no GRO; what
        // they send goes out in batches.
        let runtime: Option<Arc<dyn webrtc::runtime::Runtime>> = match role {
            PeerRole::Viewer => Some(super::runtime::ViewerRuntime::shared(
                self.config.batch_sends,
            )),
            PeerRole::Publisher => None,
        };
        match (mux, runtime) {
            (Some(binding), runtime) => {
                let inner = runtime.unwrap_or_else(|| Arc::new(webrtc::runtime::TokioRuntime));
                builder = builder.with_runtime(super::runtime::MuxRuntime::new(inner, binding));
            }
            (None, Some(runtime)) => builder = builder.with_runtime(runtime),
            (None, None) => {}
        }
        let pc = builder
            .with_configuration(parts.configuration)
            .with_media_engine(parts.media)
            .with_setting_engine(parts.settings)
            .with_interceptor_registry(parts.registry)
            .with_handler(handler)
            .with_udp_addrs(udp_addrs)
            .with_tcp_addrs(tcp_addrs)
            .build()
            .await
            .map_err(|e| PeerError::Build(e.to_string()))?;
        Ok(Arc::new(pc))
    }

    /// The ports to try for one connection: the OS's choice (0) when no range is configured,
    /// else up to 64 ports of the range, round-robin across connections, so a port another
    /// process holds is skipped and a full range answers instead of spinning.
    fn ports_to_try(&self) -> impl Iterator<Item = u16> + '_ {
        let [min, max] = self.config.udp_port_range;
        let span = if min == 0 { 1 } else { (max - min) as u32 + 1 };
        (0..span.min(64)).map(move |_| {
            if min == 0 {
                return 0;
            }
            let n = self.next_port.fetch_add(1, Ordering::Relaxed);
            (min as u32 + n.wrapping_sub(min as u32) % span) as u16
        })
    }

    /// Whether viewers get the direct driver (`webrtc.direct_viewers`, and no STUN/TURN
    /// gathering asked of the server, which only webrtc-rs's driver does). ICE servers marked
    /// `client_only` are not gathered through, so they keep viewers on the direct driver.
    pub fn direct_viewers(&self) -> bool {
        self.config.direct_viewers && !self.ice_servers.server_gathers()
    }

    /// A sans-IO viewer connection and its host sockets, for [`super::direct`].
    ///
    /// Binds one UDP socket per local address (a wildcard bind IP expands to the machine's
    /// interfaces, as webrtc-rs does), all on one port from `udp_port_range`.
    pub fn build_direct(&self, dtls: DtlsSide) -> Result<DirectParts, PeerError> {
        let parts = self.parts(dtls, PeerRole::Viewer)?;
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(parts.configuration)
            .with_media_engine(parts.media)
            .with_setting_engine(parts.settings)
            .with_interceptor_registry(parts.registry)
            .build(std::time::Instant::now())
            .map_err(|e| PeerError::Build(e.to_string()))?;
        let binding = self.bind_session();
        if let Some(udp) = binding.as_ref().and_then(|b| b.udp.as_ref()) {
            let sockets = udp.sockets();
            return Ok((pc, sockets, binding));
        }
        let runtime = super::runtime::ViewerRuntime::shared(self.config.batch_sends);
        let ips = host_ips(&self.config.bind_ips);
        let bind = |port: u16| -> std::io::Result<Vec<Arc<dyn AsyncUdpSocket>>> {
            ips.iter()
                .map(|ip| {
                    let socket = std::net::UdpSocket::bind(SocketAddr::new(*ip, port))?;
                    runtime.wrap_udp_socket(socket)
                })
                .collect()
        };
        // With several addresses all must bind the same port of the range.
        for port in self.ports_to_try() {
            match bind(port) {
                Ok(sockets) => return Ok((pc, sockets, binding)),
                Err(e) if port != 0 => {
                    tracing::debug!(port, error = %e, "UDP port unavailable, trying next");
                }
                Err(e) => return Err(PeerError::Build(format!("UDP bind: {e}"))),
            }
        }
        let [min, max] = self.config.udp_port_range;
        Err(PeerError::NoPort(min, max))
    }

    /// Everything but the sockets: codecs, interceptors, ICE/DTLS/SRTP settings.
    fn parts(&self, dtls: DtlsSide, role: PeerRole) -> Result<Parts, PeerError> {
        let err = |e: rtc::shared::error::Error| PeerError::Build(e.to_string());
        let mut media = MediaEngine::default();
        media.register_default_codecs().map_err(err)?;
        let registry = match role {
            PeerRole::Publisher => {
                // mid/rid header extensions: how simulcast layers (offered with `a=rid` and
                // no SSRCs, as browsers do) are told apart.
                configure_simulcast_extension_headers(&mut media).map_err(err)?;
                register_default_interceptors(Registry::new(), &mut media).map_err(err)?
            }
            PeerRole::Viewer => viewer_interceptors(&mut media),
        };
        // Viewers' PLI/FIR must reach `TrackLocal::poll` to be relayed upstream.
        let registry = super::feedback::with_keyframe_forwarding(registry);

        let mut settings = SettingEngineBuilder::new()
            .with_include_loopback_candidate(true)
            .with_ice_timeouts(
                Some(Duration::from_secs(
                    self.config.ice_disconnected_timeout_secs,
                )),
                Some(Duration::from_secs(self.config.ice_failed_timeout_secs)),
                Some(Duration::from_secs(2)),
            )
            // Tick every 20 ms rather than 200 ms while ICE is connecting. When the offer says
            // `a=setup:passive` we are the DTLS client, and webrtc-rs only sends the ClientHello
            // on the connection's next timer tick after the candidate pair is selected: with
            // the default that added ~200 ms to every such join. See ICE_MAX_CHECKS for how
            // many checks a silent candidate gets.
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_CHECKS))
            // GCM first: cheaper per packet than AES-CM + HMAC-SHA1, and what browsers prefer.
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
            ]);
        if dtls == DtlsSide::Server {
            // Offer said actpass/active: we take the DTLS server role (answer `passive`), so we
            // pick the SRTP profile (GCM first) and, our certificate being ECDSA, offer only
            // suites it can satisfy. When the offer says passive we are the client and keep
            // the default suites, so servers with RSA certificates work too.
            settings = settings
                .with_answering_dtls_role(RTCDtlsRole::Server)
                .with_dtls_cipher_suites(vec![
                    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256,
                    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_ChaCha20_Poly1305_Sha256,
                    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_256_Cbc_Sha,
                ]);
        }

        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(self.ice_servers.for_server(SystemTime::now()))
            .with_certificates(vec![self.certificate()?])
            .build();
        Ok(Parts {
            configuration,
            media,
            settings: settings.build(),
            registry,
        })
    }
}

/// A direct viewer's connection, its UDP sockets and, on the shared ports, its place there.
pub type DirectParts = (
    RTCPeerConnection,
    Vec<Arc<dyn AsyncUdpSocket>>,
    Option<MuxBinding>,
);

/// What a connection is made of, apart from its sockets and driver.
struct Parts {
    configuration: RTCConfiguration,
    media: MediaEngine,
    settings: SettingEngine,
    registry: Registry,
}

/// A shared port could not be bound at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SharedPortError {
    #[error(transparent)]
    Udp(#[from] MuxBindError),
    #[error(transparent)]
    Tcp(#[from] TcpMuxBindError),
}

/// The addresses to bind: configured IPs, with a wildcard expanded to every non-loopback,
/// non-link-local interface address of its family (the wildcard itself if there is none).
fn host_ips(bind_ips: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let interfaces = rtc::shared::ifaces::ifaces().unwrap_or_default();
    for ip in bind_ips {
        if !ip.is_unspecified() {
            if !out.contains(ip) {
                out.push(*ip);
            }
            continue;
        }
        let mut usable = 0;
        for addr in interfaces.iter().filter_map(|i| i.addr) {
            let a = addr.ip();
            let link_local = match a {
                IpAddr::V4(v4) => v4.is_link_local(),
                IpAddr::V6(v6) => v6.is_unicast_link_local(),
            };
            if a.is_ipv4() != ip.is_ipv4() || a.is_loopback() || a.is_unspecified() || link_local {
                continue;
            }
            usable += 1;
            if !out.contains(&a) {
                out.push(a);
            }
        }
        if usable == 0 && !out.contains(ip) {
            out.push(*ip);
        }
    }
    out
}

/// An outgoing track with one encoding: `mime` at its usual clock rate, our chosen SSRC.
///
/// The codec only seeds negotiation and interceptor binding; forwarded packets carry whatever
/// payload type the remote negotiated for the codec actually sent.
pub fn media_track(
    stream_id: String,
    track_id: String,
    kind: rtc::rtp_transceiver::rtp_sender::RtpCodecKind,
    mime: &str,
    ssrc: u32,
) -> rtc::media_stream::MediaStreamTrack {
    use rtc::rtp_transceiver::rtp_sender::{
        RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
    };
    let codec = match kind {
        RtpCodecKind::Audio => RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate: 48000,
            channels: 2,
            ..Default::default()
        },
        _ => RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate: 90000,
            ..Default::default()
        },
    };
    let label = track_id.clone();
    rtc::media_stream::MediaStreamTrack::new(
        stream_id,
        track_id,
        label,
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

/// [`media_track`] as a webrtc-rs track that takes RTP packets.
pub fn rtp_track(
    stream_id: String,
    track_id: String,
    kind: rtc::rtp_transceiver::rtp_sender::RtpCodecKind,
    mime: &str,
    ssrc: u32,
) -> Arc<webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP> {
    Arc::new(
        webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP::new(media_track(
            stream_id, track_id, kind, mime, ssrc,
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_shares_one_certificate() {
        let f = PeerFactory::new(crate::config::Config::default().webrtc);
        let a = f.certificate().expect("certificate");
        let b = f.certificate().expect("certificate");
        assert!(
            a == b,
            "the second connection reuses the first one's certificate"
        );
        assert!(a.expires > SystemTime::now() + Duration::from_secs(24 * 3600));
    }

    #[test]
    fn direct_viewers_only_without_stun_or_turn_gathering() {
        let mut config = crate::config::Config::default().webrtc;
        assert!(PeerFactory::new(config.clone()).direct_viewers());
        config.ice_servers = vec![crate::config::IceServerConfig {
            urls: vec!["stun:127.0.0.1:3478".into()],
            username: String::new(),
            credential: String::new(),
            client_only: false,
        }];
        assert!(!PeerFactory::new(config.clone()).direct_viewers());
        // Handed to clients only: the server gathers nothing through it.
        config.ice_servers[0].client_only = true;
        let factory = PeerFactory::new(config.clone());
        assert!(factory.direct_viewers());
        assert!(!factory.ice_servers.server_gathers());
        config.ice_servers.clear();
        config.direct_viewers = false;
        assert!(!PeerFactory::new(config).direct_viewers());
    }

    #[test]
    fn wildcard_bind_expands_to_interface_addresses() {
        let ips = host_ips(&["0.0.0.0".parse().unwrap(), "127.0.0.1".parse().unwrap()]);
        assert!(ips.contains(&"127.0.0.1".parse().unwrap()));
        let loopbacks = ips.iter().filter(|ip| ip.is_loopback()).count();
        assert_eq!(loopbacks, 1, "loopback only as configured: {ips:?}");
        let wildcard_kept = ips.iter().any(|ip| ip.is_unspecified());
        assert!(
            !wildcard_kept || ips.len() == 2,
            "the wildcard stays only when no interface qualifies: {ips:?}"
        );
        assert_eq!(
            host_ips(&["127.0.0.1".parse().unwrap()]),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn advertise_rewrites_host_candidates_per_family() {
        let mut config = crate::config::Config::default().webrtc;
        config.public_ips = vec!["203.0.113.7".into(), "2001:db8::7".into()];
        let f = PeerFactory::new(config);
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.5 5000 typ host\r\na=candidate:2 1 udp 2130706431 192.168.1.2 5000 typ host\r\na=candidate:3 1 udp 2130706431 fd00::1 5002 typ host\r\na=candidate:4 1 udp 1694498815 198.51.100.1 6000 typ srflx raddr 0.0.0.0 rport 0\r\nm=audio\r\n";
        let out = f.advertise(sdp);
        assert!(out.contains("a=candidate:1 1 udp 2130706431 203.0.113.7 5000 typ host\r\n"));
        assert!(
            !out.contains("a=candidate:2 "),
            "duplicate after rewrite collapses: {out}"
        );
        assert!(out.contains("2001:db8::7 5002 typ host"));
        assert!(
            out.contains("198.51.100.1 6000 typ srflx"),
            "non-host candidates untouched"
        );
        assert!(out.ends_with("m=audio\r\n"));
    }

    #[tokio::test]
    async fn advertise_points_tcp_candidates_at_the_ice_tcp_port() {
        let mut config = crate::config::Config::default().webrtc;
        config.bind_ips = vec!["127.0.0.1".parse().unwrap()];
        config.tcp_port = 0;
        let f = PeerFactory::new(config);
        let mux = TcpMux::bind(&["127.0.0.1".parse().unwrap()], 0).unwrap();
        let port = mux.local_addrs()[0].port();
        let _ = f.tcp_mux.set(mux);
        let sdp = "v=0\r\na=candidate:1 1 tcp 2124414975 127.0.0.1 42671 typ host tcptype passive\r\na=candidate:1 1 tcp 2128609279 127.0.0.1 9 typ host tcptype active\r\na=candidate:2 1 udp 2130706431 127.0.0.1 5000 typ host\r\n";
        let out = f.advertise(sdp);
        assert!(
            out.contains(&format!("127.0.0.1 {port} typ host tcptype passive\r\n")),
            "{out}"
        );
        assert!(
            out.contains("127.0.0.1 5000 typ host\r\n"),
            "UDP untouched: {out}"
        );
        assert!(!out.contains("tcptype active"), "we never dial out: {out}");
    }
}
