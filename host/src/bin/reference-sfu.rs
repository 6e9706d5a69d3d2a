//! `reference-sfu`: the webrtc crate's own `examples/broadcast` pattern behind WHIP/WHEP.
//!
//! This is the yardstick `switchboard-load` compares Switchboard against. It is deliberately
//! the pattern the webrtc crate teaches (webrtc-0.21.1 `examples/broadcast/broadcast.rs`),
//! with only what WHIP/WHEP and several rooms require added around it:
//!
//! - every peer connection is built with the defaults: `register_default_codecs`,
//!   `register_default_interceptors`, a default `SettingEngine` (plus the loopback candidate,
//!   without which nothing connects on 127.0.0.1);
//! - the publisher's reader task sends every RTP packet into a `broadcast_channel(256)` per
//!   room and kind, and asks for a keyframe (PLI) every 3 s;
//! - every viewer gets its own `TrackLocalStaticRTP` and **one task per viewer track** that
//!   receives from the channel, rewrites the SSRC and awaits `write_rtp`.
//!
//! One honest deviation from the example: a viewer task that lags behind the channel skips
//! the lost packets and carries on (the example's `Err(_) => break` would stop sending to that
//! viewer for good, which would make the reference look worse than the pattern deserves).
//!
//! It is a yardstick, not a server to deploy: no auth, no trickle, and rooms (two channels
//! each) live as long as the process.
//!
//! HTTP: `POST /whip/{room}` and `POST /whep/{room}` take an `application/sdp` offer and answer
//! `201 Created` with the SDP answer (all candidates included) and a `Location`;
//! `DELETE /{whip,whep}/{room}/{id}` ends a session; `GET /healthz` answers `ok`.

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use clap::Parser;
use parking_lot::Mutex;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};
use webrtc::runtime::{BroadcastRecvError, BroadcastSender, broadcast_channel};

/// Capacity of each room's broadcast channel, as in the example.
const CHANNEL_CAPACITY: usize = 256;
/// How often the publisher is asked for a keyframe, as in the example.
const PLI_INTERVAL: Duration = Duration::from_secs(3);

#[derive(Parser)]
#[command(
    name = "reference-sfu",
    about = "The webrtc crate's broadcast-example SFU pattern behind WHIP/WHEP, for comparison"
)]
struct Cli {
    /// HTTP address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    bind: SocketAddr,
    /// IP to bind media (UDP) sockets on.
    #[arg(long, default_value = "127.0.0.1")]
    udp_ip: IpAddr,
}

/// One room: a broadcast channel per media kind.
struct Room {
    audio: BroadcastSender<rtp::Packet>,
    video: BroadcastSender<rtp::Packet>,
}

impl Room {
    fn new() -> Room {
        Room {
            audio: broadcast_channel(CHANNEL_CAPACITY),
            video: broadcast_channel(CHANNEL_CAPACITY),
        }
    }

    fn channel(&self, kind: RtpCodecKind) -> &BroadcastSender<rtp::Packet> {
        match kind {
            RtpCodecKind::Audio => &self.audio,
            _ => &self.video,
        }
    }
}

struct App {
    udp_ip: IpAddr,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    sessions: Mutex<HashMap<String, Arc<dyn PeerConnection>>>,
    next_id: AtomicU64,
}

impl App {
    fn room(&self, name: &str) -> Arc<Room> {
        self.rooms
            .lock()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Room::new()))
            .clone()
    }
}

/// Peer connection callbacks, for publishers (`room` set) and viewers alike.
struct Handler {
    gathered: watch::Sender<bool>,
    connection: watch::Sender<RTCPeerConnectionState>,
    room: Option<Arc<Room>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.connection.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(room) = self.room.clone() else {
            return;
        };
        let Some(media_ssrc) = track.ssrcs().await.first().copied() else {
            return;
        };
        let kind = track.kind().await;
        if kind == RtpCodecKind::Video {
            // Ask for a keyframe periodically so viewers can start decoding.
            let pli_track = track.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PLI_INTERVAL).await;
                    let pli = PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    };
                    if pli_track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
                        break;
                    }
                }
            });
        }
        // Forward every RTP packet to all subscribers via the broadcast channel.
        let tx = room.channel(kind).clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    let _ = tx.send(packet);
                }
            }
        });
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Runtime::new()
        .context("cannot start runtime")?
        .block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let app = Arc::new(App {
        udp_ip: cli.udp_ip,
        rooms: Mutex::new(HashMap::new()),
        sessions: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    });
    let router = Router::new()
        .route("/whip/{room}", post(whip))
        .route("/whep/{room}", post(whep))
        .route("/whip/{room}/{id}", delete(end_session))
        .route("/whep/{room}/{id}", delete(end_session))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(cli.bind)
        .await
        .with_context(|| format!("cannot listen on {}", cli.bind))?;
    eprintln!(
        "reference-sfu listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
        })
        .await?;
    Ok(())
}

type HttpResult = Result<Response, (StatusCode, String)>;

fn bad(status: StatusCode, e: impl std::fmt::Display) -> (StatusCode, String) {
    (status, format!("{e}\n"))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/sdp"));
    if ok {
        Ok(())
    } else {
        Err(bad(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/sdp",
        ))
    }
}

/// A peer connection with the example's defaults (plus the loopback candidate).
async fn build_pc(
    app: &App,
    handler: Arc<Handler>,
) -> Result<Arc<dyn PeerConnection>, webrtc::error::Error> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let settings = SettingEngineBuilder::new()
        .with_include_loopback_candidate(true)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![SocketAddr::new(app.udp_ip, 0)])
        .build()
        .await?;
    Ok(Arc::new(pc))
}

/// Apply the offer, answer it once every candidate is gathered.
async fn answer(
    pc: &Arc<dyn PeerConnection>,
    mut gathered: watch::Receiver<bool>,
    offer: String,
) -> Result<String, (StatusCode, String)> {
    let offer = RTCSessionDescription::offer(offer).map_err(|e| bad(StatusCode::BAD_REQUEST, e))?;
    pc.set_remote_description(offer)
        .await
        .map_err(|e| bad(StatusCode::BAD_REQUEST, e))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|e| bad(StatusCode::BAD_REQUEST, e))?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|g| *g)).await;
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| bad(StatusCode::INTERNAL_SERVER_ERROR, "no local description"))
}

/// Remember the session, drop it when its connection ends, and answer 201.
fn created(
    app: &Arc<App>,
    kind: &str,
    room: &str,
    pc: Arc<dyn PeerConnection>,
    mut connection: watch::Receiver<RTCPeerConnectionState>,
    sdp: String,
) -> Response {
    let id = app.next_id.fetch_add(1, Ordering::Relaxed).to_string();
    app.sessions.lock().insert(id.clone(), pc);
    let (app2, id2) = (app.clone(), id.clone());
    tokio::spawn(async move {
        let _ = connection
            .wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                )
            })
            .await;
        let pc = app2.sessions.lock().remove(&id2);
        if let Some(pc) = pc {
            let _ = pc.close().await;
        }
    });
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, format!("/{kind}/{room}/{id}")),
        ],
        sdp,
    )
        .into_response()
}

/// A peer connection with the watch channels its handler fills: ICE gathering done, and the
/// connection state. `publish_to` is the room a publisher's tracks feed (none for a viewer).
async fn new_session(
    app: &App,
    publish_to: Option<Arc<Room>>,
) -> Result<
    (
        Arc<dyn PeerConnection>,
        watch::Receiver<bool>,
        watch::Receiver<RTCPeerConnectionState>,
    ),
    (StatusCode, String),
> {
    let (gathered, gathered_rx) = watch::channel(false);
    let (connection, connection_rx) = watch::channel(RTCPeerConnectionState::New);
    let handler = Arc::new(Handler {
        gathered,
        connection,
        room: publish_to,
    });
    let pc = build_pc(app, handler)
        .await
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok((pc, gathered_rx, connection_rx))
}

async fn whip(
    State(app): State<Arc<App>>,
    Path(room_name): Path<String>,
    headers: HeaderMap,
    offer: String,
) -> HttpResult {
    check_content_type(&headers)?;
    let room = app.room(&room_name);
    let (pc, gathered_rx, connection_rx) = new_session(&app, Some(room)).await?;
    match answer(&pc, gathered_rx, offer).await {
        Ok(sdp) => Ok(created(&app, "whip", &room_name, pc, connection_rx, sdp)),
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

async fn whep(
    State(app): State<Arc<App>>,
    Path(room_name): Path<String>,
    headers: HeaderMap,
    offer: String,
) -> HttpResult {
    check_content_type(&headers)?;
    let room = app.room(&room_name);
    let (pc, gathered_rx, connection_rx) = new_session(&app, None).await?;
    let mut tracks = Vec::with_capacity(2);
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        match add_viewer_track(&pc, kind).await {
            Ok(track) => tracks.push(track),
            Err(e) => {
                let _ = pc.close().await;
                return Err(bad(StatusCode::INTERNAL_SERVER_ERROR, e));
            }
        }
    }
    let sdp = match answer(&pc, gathered_rx, offer).await {
        Ok(sdp) => sdp,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e);
        }
    };
    // Each viewer track subscribes to the room's channel; one task per viewer track.
    for (kind, ssrc, track) in tracks {
        let mut rx = room.channel(kind).subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(mut packet) => {
                        packet.header.ssrc = ssrc;
                        if track.write_rtp(packet).await.is_err() {
                            break; // the connection is gone
                        }
                    }
                    Err(BroadcastRecvError::Lagged(_)) => continue,
                    Err(BroadcastRecvError::Closed) => break,
                }
            }
        });
    }
    Ok(created(&app, "whep", &room_name, pc, connection_rx, sdp))
}

async fn add_viewer_track(
    pc: &Arc<dyn PeerConnection>,
    kind: RtpCodecKind,
) -> Result<(RtpCodecKind, u32, Arc<TrackLocalStaticRTP>), webrtc::error::Error> {
    let ssrc = rand::random::<u32>();
    let mime = match kind {
        RtpCodecKind::Audio => "audio/opus",
        _ => "video/VP8",
    };
    let track = switchboard::sfu::peer::rtp_track(
        format!("reference-{ssrc}"),
        format!("reference-{kind}-{ssrc}"),
        kind,
        mime,
        ssrc,
    );
    pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
    Ok((kind, ssrc, track))
}

async fn end_session(
    State(app): State<Arc<App>>,
    Path((_room, id)): Path<(String, String)>,
) -> Response {
    let pc = app.sessions.lock().remove(&id);
    match pc {
        Some(pc) => {
            let _ = pc.close().await;
            (StatusCode::OK, "session ended\n").into_response()
        }
        None => (StatusCode::NOT_FOUND, "session not found\n").into_response(),
    }
}
