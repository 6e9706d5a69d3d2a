//! A WHIP/WHEP client built on webrtc-rs: real peers for integration tests and the load tool.
//!
//! [`Publisher`] offers sendonly audio+video over WHIP and sends synthetic VP8/Opus RTP with
//! correct keyframe markers (answering PLIs with a keyframe). [`Viewer`] offers recvonly over
//! WHEP and only counts what arrives: packets, bytes, keyframes, loss, reordering, delay.

pub mod media;

use crate::sfu::feedback::{is_keyframe_request, with_keyframe_forwarding};
use crate::sfu::state::PeerStates;
use parking_lot::Mutex;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
    register_default_interceptors,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("request failed: {0}")]
    Transport(String),
    #[error("webrtc: {0}")]
    WebRtc(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

fn rtc_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::WebRtc(e.to_string())
}

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub token: Option<String>,
    /// Local IP for media sockets (loopback in tests).
    pub bind_ip: IpAddr,
    /// Video codec a publisher sends (`video/VP8`, `video/VP9`, `video/H264`, `video/AV1`).
    pub video_codec: String,
    /// Use an RSA certificate for DTLS (PKCS#8 DER private key), as some encoders do.
    pub rsa_key_pkcs8: Option<Vec<u8>>,
    /// Rewrite the offer's `a=setup:actpass` to this (`passive`, `active`), as clients that
    /// insist on a DTLS role do.
    pub dtls_setup: Option<&'static str>,
    /// ICE connectivity-check interval while connecting; `None` keeps webrtc-rs's 200 ms.
    /// The load tool shortens it: a webrtc-rs client only starts DTLS on its next check tick
    /// after the pair is selected, which would add up to one interval to every join it times.
    pub ice_check_interval: Option<Duration>,
    /// Publish video as simulcast with these RIDs, lowest layer first (e.g. `["q", "h", "f"]`):
    /// each layer its own SSRC, a quarter of the next one's bitrate, tagged in its payload
    /// filler byte with its index + 1 so viewers can tell which layer they got.
    pub simulcast: Vec<String>,
    /// Viewers: keep a trace of every video packet received (see [`ViewerStats::video_trace`]).
    pub trace_video: bool,
    /// Ask the endpoint for its ICE servers first (`OPTIONS`, RFC 9725 §4.6) and gather
    /// through them, minted TURN credentials included, as the embedded pages do.
    pub ice_servers_from_options: bool,
    /// ICE servers used in addition to any the endpoint advertises.
    pub ice_servers: Vec<RTCIceServer>,
    /// Gather relay candidates only (`iceTransportPolicy: "relay"`): every packet goes
    /// through the TURN server.
    pub relay_only: bool,
    /// Which transports the client gathers candidates on: UDP (the default), TCP (RFC 6544;
    /// no UDP socket at all, how a client on a network that blocks UDP looks to the server's
    /// ICE-TCP port, `webrtc.tcp_port`), or both, as browsers do.
    pub transports: Transports,
}

/// Transports a client gathers ICE candidates on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transports {
    #[default]
    Udp,
    Tcp,
    Both,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: None,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            video_codec: "video/VP8".into(),
            rsa_key_pkcs8: None,
            dtls_setup: None,
            ice_check_interval: None,
            simulcast: Vec::new(),
            trace_video: false,
            ice_servers_from_options: false,
            ice_servers: Vec::new(),
            relay_only: false,
            transports: Transports::Udp,
        }
    }
}

/// The session resource the server created.
#[derive(Clone, Debug)]
pub struct Resource {
    pub url: String,
    pub etag: String,
}

/// Milestones of a join, measured from the moment the POST was sent.
#[derive(Default, Debug, Clone, Copy)]
pub struct JoinTimes {
    pub created: Option<Duration>,
    pub connected: Option<Duration>,
    pub first_rtp: Option<Duration>,
    pub first_keyframe: Option<Duration>,
}

struct ClientHandler {
    states: Arc<PeerStates>,
    viewer: Option<Arc<ViewerStats>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.states.gathering.send_replace(state);
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected
            && let Some(stats) = &self.viewer
        {
            stats.mark(&stats.connected_us);
        }
        self.states.connection.send_replace(state);
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(stats) = self.viewer.clone() else {
            return;
        };
        tokio::spawn(async move {
            let kind = track.kind().await;
            if kind == RtpCodecKind::Video {
                *stats.video_track.lock() = Some(track.clone());
            }
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    stats.record(kind, &packet);
                }
            }
        });
    }
}

/// The ICE servers the endpoint advertises on `OPTIONS`, if asked to look.
async fn ice_servers(
    http: &reqwest::Client,
    endpoint: &str,
    opts: &ClientOptions,
) -> Result<Vec<RTCIceServer>, ClientError> {
    let mut servers = opts.ice_servers.clone();
    if !opts.ice_servers_from_options {
        return Ok(servers);
    }
    let mut req = http.request(reqwest::Method::OPTIONS, endpoint);
    if let Some(token) = &opts.token {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let advertised = resp
        .headers()
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_links)
        .filter_map(ice_server_link);
    servers.splice(0..0, advertised);
    Ok(servers)
}

/// One `Link` header value may carry several comma-separated links (commas inside `<>` or
/// quotes belong to them).
fn split_links(value: &str) -> Vec<&str> {
    let (mut out, mut start, mut in_url, mut in_quotes) = (Vec::new(), 0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quotes => in_url = true,
            '>' if !in_quotes => in_url = false,
            '"' if !in_url => in_quotes = !in_quotes,
            ',' if !in_url && !in_quotes => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out
}

/// `<turn:...>; rel="ice-server"; username="u"; credential="p"` as an ICE server.
fn ice_server_link(link: &str) -> Option<RTCIceServer> {
    let (url, params) = link.strip_prefix('<')?.split_once('>')?;
    let mut server = RTCIceServer {
        urls: vec![url.to_owned()],
        ..Default::default()
    };
    let mut is_ice_server = false;
    for param in params.split(';') {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "rel" => is_ice_server = value == "ice-server",
            "username" => server.username = value,
            "credential" => server.credential = value,
            _ => {}
        }
    }
    is_ice_server.then_some(server)
}

async fn build_pc(
    opts: &ClientOptions,
    ice_servers: Vec<RTCIceServer>,
    handler: Arc<ClientHandler>,
) -> Result<Arc<dyn PeerConnection>, ClientError> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().map_err(rtc_err)?;
    if !opts.simulcast.is_empty() {
        rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers(&mut media)
            .map_err(rtc_err)?;
    }
    let registry = register_default_interceptors(Registry::new(), &mut media).map_err(rtc_err)?;
    // Inbound RTCP ends inside the default chain; without this the publisher never sees PLI/FIR.
    let registry = with_keyframe_forwarding(registry);
    let mut settings = SettingEngineBuilder::new().with_include_loopback_candidate(true);
    if let Some(interval) = opts.ice_check_interval {
        // Keep the default ~1.4 s before a silent candidate pair is given up.
        let attempts = (1400 / interval.as_millis().max(1)).clamp(7, 1000) as u16;
        settings = settings.with_ice_connection_attempts(Some(interval), Some(attempts));
    }
    let settings = settings.build();
    let mut configuration = RTCConfigurationBuilder::new().with_ice_servers(ice_servers);
    if opts.relay_only {
        configuration = configuration.with_ice_transport_policy(RTCIceTransportPolicy::Relay);
    }
    if let Some(der) = &opts.rsa_key_pkcs8 {
        configuration = configuration.with_certificates(vec![rsa_certificate(der)?]);
    }
    let pc = PeerConnectionBuilder::new()
        .with_configuration(configuration.build())
        .with_media_engine(media)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(match opts.transports {
            Transports::Tcp => vec![],
            _ => vec![SocketAddr::new(opts.bind_ip, 0)],
        })
        .with_tcp_addrs(match opts.transports {
            Transports::Udp => vec![],
            _ => vec![SocketAddr::new(opts.bind_ip, 0)],
        })
        .build()
        .await
        .map_err(rtc_err)?;
    Ok(Arc::new(pc))
}

/// A self-signed DTLS certificate around an RSA key (the crypto providers cannot generate one).
fn rsa_certificate(pkcs8: &[u8]) -> Result<RTCCertificate, ClientError> {
    use rtc::crypto::SignatureScheme;
    let provider = rtc::crypto::default_provider().map_err(rtc_err)?;
    let key = provider
        .crypto()
        .import_signing_key(SignatureScheme::RsaPkcs1Sha256, pkcs8)
        .map_err(rtc_err)?;
    let params = CertificateParams::new(vec!["switchboard-client".to_owned()]).map_err(rtc_err)?;
    RTCCertificate::generate_from_signing_key(params, SignatureScheme::RsaPkcs1Sha256, key)
        .map_err(rtc_err)
}

/// Offer, POST it, apply the answer. `on_post` runs just before the POST goes out (join
/// timings start there, not at offer creation).
async fn signal(
    http: &reqwest::Client,
    endpoint: &str,
    opts: &ClientOptions,
    pc: &Arc<dyn PeerConnection>,
    states: &PeerStates,
    on_post: impl FnOnce(),
) -> Result<Resource, ClientError> {
    let mut gathering = states.gathering.subscribe();
    let offer = pc.create_offer(None).await.map_err(rtc_err)?;
    pc.set_local_description(offer).await.map_err(rtc_err)?;
    tokio::time::timeout(
        Duration::from_secs(5),
        gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await
    .map_err(|_| ClientError::Timeout("ICE gathering"))?
    .map_err(rtc_err)?;
    let offer = pc
        .local_description()
        .await
        .ok_or_else(|| ClientError::WebRtc("no local description".into()))?;

    let sdp = match opts.dtls_setup {
        Some(role) => offer
            .sdp
            .replace("a=setup:actpass", &format!("a=setup:{role}")),
        None => offer.sdp,
    };
    let mut req = http
        .post(endpoint)
        .header("content-type", "application/sdp")
        .body(sdp);
    if let Some(token) = &opts.token {
        req = req.bearer_auth(token);
    }
    on_post();
    let resp = req
        .send()
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    let location = header(&resp, "location");
    let etag = header(&resp, "etag");
    let body = resp
        .text()
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    if status != 201 {
        return Err(ClientError::Http { status, body });
    }
    let url = resolve(endpoint, &location);
    let answer = RTCSessionDescription::answer(body.clone()).map_err(rtc_err)?;
    pc.set_remote_description(answer).await.map_err(rtc_err)?;
    if opts.transports != Transports::Udp {
        connect_tcp_candidates(pc, &body).await?;
    }
    Ok(Resource { url, etag })
}

/// webrtc-rs opens TCP connections (as the active side, RFC 6544) only to passive candidates
/// added with `add_ice_candidate`, not to those of a remote description: hand it the answer's.
async fn connect_tcp_candidates(
    pc: &Arc<dyn PeerConnection>,
    answer: &str,
) -> Result<(), ClientError> {
    let mut mid = None;
    for line in answer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("a=mid:") {
            // Bundled: the first section's candidates are everyone's.
            if mid.is_some() {
                break;
            }
            mid = Some(m.to_owned());
        }
        let Some(candidate) = line.strip_prefix("a=") else {
            continue;
        };
        let fields: Vec<&str> = candidate.split(' ').collect();
        let passive_tcp = fields.get(2).is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
            && fields.windows(2).any(|w| w == ["tcptype", "passive"]);
        // One connection carries every component (rtcp-mux): the first section's will do.
        if !candidate.starts_with("candidate:") || !passive_tcp || fields[1] != "1" {
            continue;
        }
        let init = webrtc::peer_connection::RTCIceCandidateInit {
            candidate: candidate.to_owned(),
            sdp_mid: mid.clone(),
            sdp_mline_index: Some(0),
            ..Default::default()
        };
        pc.add_ice_candidate(init).await.map_err(rtc_err)?;
    }
    Ok(())
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Resolve a possibly relative `Location` against the endpoint URL.
fn resolve(endpoint: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let origin_end = endpoint
        .find("://")
        .and_then(|i| endpoint[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(endpoint.len());
    format!("{}{}", &endpoint[..origin_end], location)
}

async fn wait_state(
    states: &PeerStates,
    want: RTCPeerConnectionState,
    timeout: Duration,
) -> Result<(), ClientError> {
    let mut rx = states.connection.subscribe();
    tokio::time::timeout(timeout, rx.wait_for(|s| *s == want))
        .await
        .map_err(|_| ClientError::Timeout("peer connection state"))?
        .map(|_| ())
        .map_err(rtc_err)
}

async fn delete(http: &reqwest::Client, resource: &Resource) -> Result<u16, ClientError> {
    http.delete(&resource.url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| ClientError::Transport(e.to_string()))
}

/// A WHIP publisher sending synthetic VP8 + Opus.
pub struct Publisher {
    pub pc: Arc<dyn PeerConnection>,
    pub resource: Resource,
    states: Arc<PeerStates>,
    http: reqwest::Client,
    video: Arc<TrackLocalStaticRTP>,
    audio: Arc<TrackLocalStaticRTP>,
    /// One per simulcast layer, lowest first; one in all without simulcast.
    layers: Arc<Vec<VideoLayer>>,
    audio_ssrc: u32,
    video_pt: u8,
    audio_pt: u8,
    /// Simulcast: the negotiated ids of the mid and rid header extensions, and our mid.
    stream_ids: Option<(u8, u8, bytes::Bytes)>,
    pub keyframe_requests: Arc<AtomicU64>,
    pub sent_packets: AtomicU64,
}

/// One video stream a publisher sends: the only one, or a simulcast layer.
struct VideoLayer {
    rid: Option<String>,
    ssrc: u32,
    /// Share of the configured video bitrate.
    share: f64,
    /// Filler byte of its payloads.
    tag: u8,
    active: AtomicBool,
    /// Set when the server asked for a keyframe (PLI/FIR) on it.
    keyframe_wanted: AtomicBool,
}

/// The shape of the synthetic stream.
#[derive(Clone, Copy, Debug)]
pub struct StreamShape {
    pub fps: u32,
    pub video_bitrate: u32,
    /// Keyframe every this many frames even without a PLI.
    pub keyframe_every: u32,
}

impl Default for StreamShape {
    fn default() -> Self {
        StreamShape {
            fps: 30,
            video_bitrate: 1_000_000,
            keyframe_every: 60,
        }
    }
}

impl Publisher {
    /// `base` is e.g. `http://127.0.0.1:8080`.
    pub async fn connect(
        base: &str,
        room: &str,
        opts: &ClientOptions,
    ) -> Result<Publisher, ClientError> {
        Self::connect_with(reqwest::Client::new(), base, room, opts).await
    }

    /// Like [`Publisher::connect`] with an HTTP client of the caller's (its own CA, source
    /// address, proxy).
    pub async fn connect_with(
        http: reqwest::Client,
        base: &str,
        room: &str,
        opts: &ClientOptions,
    ) -> Result<Publisher, ClientError> {
        let states = Arc::new(PeerStates::default());
        let handler = Arc::new(ClientHandler {
            states: states.clone(),
            viewer: None,
        });
        let endpoint = format!("{base}/whip/{room}");
        let servers = ice_servers(&http, &endpoint, opts).await?;
        let pc = build_pc(opts, servers, handler).await?;
        let layers = video_layers(&opts.simulcast);
        let (video, video_tr) =
            local_track(&pc, RtpCodecKind::Video, &opts.video_codec, &layers).await?;
        let audio_ssrc = rand::random::<u32>();
        let audio_layer = [(None, audio_ssrc)];
        let (audio, audio_tr) =
            local_track(&pc, RtpCodecKind::Audio, "audio/opus", &audio_layer).await?;
        let resource = match signal(&http, &endpoint, opts, &pc, &states, || ()).await {
            Ok(r) => r,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        let video_pt = negotiated_pt(&video_tr, &opts.video_codec).await?;
        let audio_pt = negotiated_pt(&audio_tr, "audio/opus").await?;
        let stream_ids = match opts.simulcast.is_empty() {
            true => None,
            false => Some(stream_id_extensions(&video_tr).await?),
        };
        let count = layers.len();
        let layers: Arc<Vec<VideoLayer>> = Arc::new(
            layers
                .into_iter()
                .enumerate()
                .map(|(i, (rid, ssrc))| VideoLayer {
                    tag: if rid.is_some() { i as u8 + 1 } else { 0xa5 },
                    rid,
                    ssrc,
                    share: 4f64.powi(i as i32 + 1 - count as i32),
                    active: AtomicBool::new(true),
                    keyframe_wanted: AtomicBool::new(true),
                })
                .collect(),
        );
        let keyframe_requests = Arc::new(AtomicU64::new(0));
        {
            let (video, layers, count) = (video.clone(), layers.clone(), keyframe_requests.clone());
            let mut connection = states.connection.subscribe();
            tokio::spawn(async move {
                // Wait for the connection, then read the keyframe requests the SFU relays. They
                // reach `poll` only because `build_pc` adds the keyframe-request forwarder.
                if connection
                    .wait_for(|s| *s == RTCPeerConnectionState::Connected)
                    .await
                    .is_err()
                {
                    return;
                }
                while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = video.poll().await {
                    for p in packets.iter().filter(|p| is_keyframe_request(p.as_ref())) {
                        count.fetch_add(1, Ordering::Relaxed);
                        let asked = p.destination_ssrc();
                        let named: Vec<_> =
                            layers.iter().filter(|l| asked.contains(&l.ssrc)).collect();
                        // A request naming none of our SSRCs is for the whole track.
                        for layer in if named.is_empty() {
                            layers.iter().collect()
                        } else {
                            named
                        } {
                            layer.keyframe_wanted.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        Ok(Publisher {
            pc,
            resource,
            states,
            http,
            video,
            audio,
            layers,
            audio_ssrc,
            video_pt,
            audio_pt,
            stream_ids,
            keyframe_requests,
            sent_packets: AtomicU64::new(0),
        })
    }

    /// Simulcast: start or stop sending the layer `rid`, as an encoder dropping a layer for
    /// bandwidth (or a browser told `active: false`) does. Returns whether the layer exists.
    pub fn set_layer_active(&self, rid: &str, active: bool) -> bool {
        self.layers
            .iter()
            .find(|l| l.rid.as_deref() == Some(rid))
            .map(|l| l.active.store(active, Ordering::Relaxed))
            .is_some()
    }

    /// The SSRC of simulcast layer `rid`.
    pub fn layer_ssrc(&self, rid: &str) -> Option<u32> {
        self.layers
            .iter()
            .find(|l| l.rid.as_deref() == Some(rid))
            .map(|l| l.ssrc)
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        wait_state(&self.states, RTCPeerConnectionState::Connected, timeout).await
    }

    /// Send media until `stop` is set. Paced by the tokio clock, each stream on its own
    /// cadence as an encoder sends it: a video frame every `1/fps` s (split into packets, sent
    /// back to back) and an Opus packet every 20 ms. A late wake-up catches up (burst).
    pub async fn stream(&self, shape: StreamShape, stop: &AtomicBool) {
        const AUDIO_PTIME: Duration = Duration::from_millis(20);
        let frame_interval = Duration::from_secs(1) / shape.fps.max(1);
        let frame_bytes = (shape.video_bitrate / 8 / shape.fps.max(1)) as usize;
        let epoch = tokio::time::Instant::now();
        let (mut next_frame, mut next_audio) = (epoch, epoch);
        let mut vseqs: Vec<u16> = self.layers.iter().map(|_| rand::random()).collect();
        let mut aseq = rand::random::<u16>();
        let (vts0, ats0) = (rand::random::<u32>(), rand::random::<u32>());
        let mut frame: u64 = 0;
        let mut audio_due = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep_until(next_frame.min(next_audio)).await;
            let wall = tokio::time::Instant::now();
            let now = wall - epoch;
            let stamp = unix_micros();
            if next_frame <= wall {
                next_frame += frame_interval;
                let periodic = frame.is_multiple_of(shape.keyframe_every.max(1) as u64);
                frame += 1;
                let vts = vts0.wrapping_add((now.as_micros() as u64 * 90 / 1000) as u32);
                for (layer, vseq) in self.layers.iter().zip(vseqs.iter_mut()) {
                    if !layer.active.load(Ordering::Relaxed) {
                        continue;
                    }
                    let keyframe = layer.keyframe_wanted.swap(false, Ordering::Relaxed) || periodic;
                    let bytes = (frame_bytes as f64 * layer.share) as usize;
                    let chunks = bytes.div_ceil(1100).max(1);
                    for c in 0..chunks {
                        let size = (bytes / chunks).clamp(24, 1200);
                        let mut packet = rtp::Packet {
                            header: rtp::header::Header {
                                version: 2,
                                marker: c + 1 == chunks,
                                payload_type: self.video_pt,
                                sequence_number: *vseq,
                                timestamp: vts,
                                ssrc: layer.ssrc,
                                ..Default::default()
                            },
                            payload: media::vp8_payload_tagged(
                                c == 0,
                                keyframe,
                                stamp,
                                size,
                                layer.tag,
                            ),
                        };
                        if let (Some((mid_id, rid_id, mid)), Some(rid)) =
                            (&self.stream_ids, &layer.rid)
                        {
                            // How the receiver tells simulcast layers apart (RFC 8852).
                            let _ = packet.header.set_extension(*mid_id, mid.clone());
                            let _ = packet.header.set_extension(
                                *rid_id,
                                bytes::Bytes::from(rid.clone().into_bytes()),
                            );
                        }
                        *vseq = vseq.wrapping_add(1);
                        self.send(&self.video, packet).await;
                    }
                }
            }
            while next_audio <= wall {
                next_audio += AUDIO_PTIME;
                let ats = ats0.wrapping_add((audio_due.as_micros() as u64 * 48 / 1000) as u32);
                let packet = rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        payload_type: self.audio_pt,
                        sequence_number: aseq,
                        timestamp: ats,
                        ssrc: self.audio_ssrc,
                        ..Default::default()
                    },
                    payload: media::opus_payload(stamp),
                };
                aseq = aseq.wrapping_add(1);
                self.send(&self.audio, packet).await;
                audio_due += AUDIO_PTIME;
            }
        }
    }

    async fn send(&self, track: &Arc<TrackLocalStaticRTP>, packet: rtp::Packet) {
        if track.write_rtp(packet).await.is_ok() {
            self.sent_packets.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub async fn delete(&self) -> Result<u16, ClientError> {
        delete(&self.http, &self.resource).await
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// What was negotiated for `transceiver`'s sender.
async fn sender_parameters(
    transceiver: &Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
) -> Result<rtc::rtp_transceiver::rtp_sender::RTCRtpSendParameters, ClientError> {
    let sender = transceiver
        .sender()
        .await
        .map_err(rtc_err)?
        .ok_or_else(|| ClientError::WebRtc("transceiver has no sender".into()))?;
    sender.get_parameters().await.map_err(rtc_err)
}

/// The payload type negotiated for `mime` on `transceiver`'s sender.
async fn negotiated_pt(
    transceiver: &Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
    mime: &str,
) -> Result<u8, ClientError> {
    let params = sender_parameters(transceiver).await?;
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
        .ok_or_else(|| ClientError::WebRtc(format!("server did not accept {mime}")))
}

/// A sending track of `kind` with one encoding per `(rid, ssrc)` (several: simulcast).
async fn local_track(
    pc: &Arc<dyn PeerConnection>,
    kind: RtpCodecKind,
    mime: &str,
    encodings: &[(Option<String>, u32)],
) -> Result<
    (
        Arc<TrackLocalStaticRTP>,
        Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
    ),
    ClientError,
> {
    let mime = if kind == RtpCodecKind::Audio {
        "audio/opus"
    } else {
        mime
    };
    let (first_rid, first_ssrc) = encodings
        .first()
        .cloned()
        .ok_or_else(|| ClientError::WebRtc("a track needs an encoding".into()))?;
    let mut track = crate::sfu::peer::media_track(
        "publisher".into(),
        format!("{kind}"),
        kind,
        mime,
        first_ssrc,
    );
    if let Some(rid) = first_rid {
        // Simulcast: every encoding carries its RID; the first one was built without.
        let mut codings = track.codings().to_vec();
        for c in codings.iter_mut() {
            c.rtp_coding_parameters.rid = rid.clone();
        }
        for (rid, ssrc) in &encodings[1..] {
            let mut extra = codings[0].clone();
            extra.rtp_coding_parameters.rid = rid.clone().unwrap_or_default();
            extra.rtp_coding_parameters.ssrc = Some(*ssrc);
            codings.push(extra);
        }
        track = rtc::media_stream::MediaStreamTrack::new(
            "publisher".into(),
            format!("{kind}"),
            format!("{kind}"),
            kind,
            codings,
        );
    }
    let track = Arc::new(TrackLocalStaticRTP::new(track));
    let transceiver = pc
        .add_transceiver_from_track(
            track.clone() as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                ..Default::default()
            }),
        )
        .await
        .map_err(rtc_err)?;
    Ok((track, transceiver))
}

/// `(rid, ssrc)` per video stream: one without simulcast, else one per RID.
fn video_layers(simulcast: &[String]) -> Vec<(Option<String>, u32)> {
    if simulcast.is_empty() {
        return vec![(None, rand::random())];
    }
    simulcast
        .iter()
        .map(|rid| (Some(rid.clone()), rand::random()))
        .collect()
}

/// The negotiated ids of the mid and rid header extensions on `transceiver`, and its mid.
async fn stream_id_extensions(
    transceiver: &Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
) -> Result<(u8, u8, bytes::Bytes), ClientError> {
    let params = sender_parameters(transceiver).await?;
    let id = |uri: &str| {
        params
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|e| e.uri == uri)
            .map(|e| e.id as u8)
            .ok_or_else(|| ClientError::WebRtc(format!("server did not accept {uri}")))
    };
    let mid = transceiver
        .mid()
        .await
        .map_err(rtc_err)?
        .ok_or_else(|| ClientError::WebRtc("video transceiver has no mid".into()))?;
    Ok((
        id("urn:ietf:params:rtp-hdrext:sdes:mid")?,
        id("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id")?,
        bytes::Bytes::from(mid.into_bytes()),
    ))
}

/// What a viewer has received so far.
#[derive(Default)]
pub struct ViewerStats {
    start: Mutex<Option<Instant>>,
    /// The received video track, for sending keyframe requests upstream.
    video_track: Mutex<Option<Arc<dyn TrackRemote>>>,
    pub video_packets: AtomicU64,
    pub audio_packets: AtomicU64,
    pub bytes: AtomicU64,
    pub keyframes: AtomicU64,
    pub lost: AtomicU64,
    pub out_of_order: AtomicU64,
    created_us: AtomicU64,
    connected_us: AtomicU64,
    first_rtp_us: AtomicU64,
    first_keyframe_us: AtomicU64,
    /// Highest sequence number seen per SSRC, for loss and reordering.
    seqs: Mutex<Vec<(u32, u16)>>,
    /// One-way delay samples in µs (sender stamp to arrival).
    pub delays_us: Mutex<Vec<u32>>,
    /// Every video packet received, when the viewer was built with `trace_video`.
    pub video_trace: Mutex<Option<Vec<VideoPacketSeen>>>,
}

/// One received video packet, as traced for tests.
#[derive(Debug, Clone, Copy)]
pub struct VideoPacketSeen {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    /// The payload's filler byte (see [`media::vp8_payload_tagged`]): which layer sent it.
    pub tag: Option<u8>,
    /// First packet of a keyframe.
    pub keyframe: bool,
}

impl ViewerStats {
    fn mark(&self, slot: &AtomicU64) {
        if let Some(start) = *self.start.lock() {
            let us = start.elapsed().as_micros().max(1) as u64;
            let _ = slot.compare_exchange(0, us, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn record(&self, kind: RtpCodecKind, packet: &rtp::Packet) {
        self.mark(&self.first_rtp_us);
        self.bytes
            .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
        let stamp = match kind {
            RtpCodecKind::Audio => {
                self.audio_packets.fetch_add(1, Ordering::Relaxed);
                packet
                    .payload
                    .get(1..9)
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
            }
            _ => {
                self.video_packets.fetch_add(1, Ordering::Relaxed);
                let keyframe = media::vp8_is_keyframe(&packet.payload);
                if keyframe {
                    self.keyframes.fetch_add(1, Ordering::Relaxed);
                    self.mark(&self.first_keyframe_us);
                }
                if let Some(trace) = self.video_trace.lock().as_mut() {
                    trace.push(VideoPacketSeen {
                        ssrc: packet.header.ssrc,
                        seq: packet.header.sequence_number,
                        timestamp: packet.header.timestamp,
                        tag: media::vp8_fill(&packet.payload),
                        keyframe,
                    });
                }
                media::vp8_stamp(&packet.payload)
            }
        };
        if let Some(stamp) = stamp {
            let delay = unix_micros().saturating_sub(stamp);
            if delay < 10_000_000 {
                let mut d = self.delays_us.lock();
                if d.len() < 100_000 {
                    d.push(delay as u32);
                }
            }
        }
        let mut seqs = self.seqs.lock();
        let seq = packet.header.sequence_number;
        match seqs.iter_mut().find(|(s, _)| *s == packet.header.ssrc) {
            None => seqs.push((packet.header.ssrc, seq)),
            Some((_, last)) => {
                let delta = seq.wrapping_sub(*last);
                if delta == 0 || delta > 0x8000 {
                    self.out_of_order.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.lost.fetch_add(delta as u64 - 1, Ordering::Relaxed);
                    *last = seq;
                }
            }
        }
    }

    pub fn packets(&self) -> u64 {
        self.video_packets.load(Ordering::Relaxed) + self.audio_packets.load(Ordering::Relaxed)
    }

    pub fn join_times(&self) -> JoinTimes {
        let get = |a: &AtomicU64| match a.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        };
        JoinTimes {
            created: get(&self.created_us),
            connected: get(&self.connected_us),
            first_rtp: get(&self.first_rtp_us),
            first_keyframe: get(&self.first_keyframe_us),
        }
    }
}

/// A WHEP viewer that counts what it receives.
pub struct Viewer {
    pub pc: Arc<dyn PeerConnection>,
    pub resource: Resource,
    pub stats: Arc<ViewerStats>,
    states: Arc<PeerStates>,
    http: reqwest::Client,
}

impl Viewer {
    pub async fn connect(
        base: &str,
        room: &str,
        opts: &ClientOptions,
    ) -> Result<Viewer, ClientError> {
        Self::connect_with(&reqwest::Client::new(), base, room, opts).await
    }

    /// Like [`Viewer::connect`], sharing an HTTP client (the load tool opens hundreds).
    pub async fn connect_with(
        http: &reqwest::Client,
        base: &str,
        room: &str,
        opts: &ClientOptions,
    ) -> Result<Viewer, ClientError> {
        let stats = Arc::new(ViewerStats::default());
        if opts.trace_video {
            *stats.video_trace.lock() = Some(Vec::new());
        }
        let states = Arc::new(PeerStates::default());
        let handler = Arc::new(ClientHandler {
            states: states.clone(),
            viewer: Some(stats.clone()),
        });
        let endpoint = format!("{base}/whep/{room}");
        let servers = ice_servers(http, &endpoint, opts).await?;
        let pc = build_pc(opts, servers, handler).await?;
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await
            .map_err(rtc_err)?;
        }
        let posted = || *stats.start.lock() = Some(Instant::now());
        let resource = match signal(http, &endpoint, opts, &pc, &states, posted).await {
            Ok(r) => r,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        stats.mark(&stats.created_us);
        Ok(Viewer {
            pc,
            resource,
            stats,
            states,
            http: http.clone(),
        })
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        wait_state(&self.states, RTCPeerConnectionState::Connected, timeout).await
    }

    /// Wait until at least `packets` RTP packets and `keyframes` keyframes arrived.
    pub async fn wait_media(
        &self,
        packets: u64,
        keyframes: u64,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        while self.stats.packets() < packets
            || self.stats.keyframes.load(Ordering::Relaxed) < keyframes
        {
            if Instant::now() > deadline {
                return Err(ClientError::Timeout("media"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Ask for a keyframe (PLI), as a decoder that lost its reference would.
    pub async fn request_keyframe(&self) -> Result<(), ClientError> {
        let media_ssrc = self.video_ssrc().await?;
        let pli = rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        self.send_rtcp(vec![Box::new(pli)]).await
    }

    /// The SSRC of the video this viewer receives.
    pub async fn video_ssrc(&self) -> Result<u32, ClientError> {
        let track = self.video_track()?;
        track
            .ssrcs()
            .await
            .first()
            .copied()
            .ok_or_else(|| ClientError::WebRtc("video track has no SSRC".into()))
    }

    /// Send RTCP about the received video (feedback such as PLI or NACK) to the server.
    pub async fn send_rtcp(
        &self,
        packets: Vec<Box<dyn rtc::rtcp::Packet>>,
    ) -> Result<(), ClientError> {
        self.video_track()?
            .write_rtcp(packets)
            .await
            .map_err(rtc_err)
    }

    fn video_track(&self) -> Result<Arc<dyn TrackRemote>, ClientError> {
        self.stats
            .video_track
            .lock()
            .clone()
            .ok_or_else(|| ClientError::WebRtc("no video track received yet".into()))
    }

    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.states.connection.borrow()
    }

    pub async fn delete(&self) -> Result<u16, ClientError> {
        delete(&self.http, &self.resource).await
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_server_links_are_parsed_with_their_credentials() {
        let value = "<stun:s.example.com:3478>; rel=\"ice-server\", \
                     <turn:t.example.com?transport=udp>; rel=\"ice-server\"; \
                     username=\"1700:token:any\"; credential=\"a,b=\"; credential-type=\"password\", \
                     </whep/r/s/sse>; rel=\"urn:ietf:params:whep:ext:core:server-sent-events\"";
        let servers: Vec<RTCIceServer> = split_links(value)
            .into_iter()
            .filter_map(ice_server_link)
            .collect();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:s.example.com:3478"]);
        assert!(servers[0].username.is_empty());
        assert_eq!(servers[1].urls, ["turn:t.example.com?transport=udp"]);
        assert_eq!(servers[1].username, "1700:token:any");
        assert_eq!(servers[1].credential, "a,b=");
    }
}
