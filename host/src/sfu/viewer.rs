//! Viewer start (WHEP): the viewer's connection on either driver, its answer, and the sinks
//! that attach it to the room's hubs once it is connected.
//!
//! Viewers run on the direct driver ([`direct`](super::direct)) unless it is switched off or
//! the server must gather STUN/TURN candidates itself; then on webrtc-rs's driver. Both end in
//! the same place: one [`ViewerSink`] per media kind the offer asked for.

use super::admission::Reservation;
use super::context::Context;
use super::direct::DirectViewer;
use super::error::SfuError;
use super::feedback::is_keyframe_request;
use super::forward::{Output, ViewerSink};
use super::negotiate::negotiate;
use super::peer::{self, DtlsSide, PeerRole};
use super::room::Room;
use super::session::NewSession;
use super::session::{Created, Peer, Session};
use super::state::{PeerStates, StateHandler};
use super::supervise;
use crate::auth::{Action, AdmitRequest, Identity};
use crate::ice::MuxBinding;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::Arc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState, RTCSessionDescription};

/// A viewer sink, its kind, and (on webrtc-rs's driver) the track its keyframe requests
/// arrive on.
type ViewerSinkOf = (RtpCodecKind, ViewerSink, Option<Arc<TrackLocalStaticRTP>>);

/// What setting up a viewer yields: its connection, our answer, its sinks, and its place on
/// the single-port mux, if any.
type ViewerSetUp = (Peer, String, Vec<ViewerSinkOf>, Option<MuxBinding>);

/// WHEP: start a viewer session in the reserved room. The room need not have a publisher.
pub async fn start_viewer(
    ctx: &Arc<Context>,
    reservation: Reservation,
    identity: Identity,
    admit: AdmitRequest,
    offer: String,
) -> Result<Created, SfuError> {
    let (offer, remote_candidates) = ctx.candidates.filter_offer(&offer)?;
    let room = reservation.room().clone();
    let states = Arc::new(PeerStates::default());
    let key = ctx.next_key();
    let (peer, answer, sinks, mux) = if ctx.peers.direct_viewers() {
        set_up_direct(ctx, &room, &states, key, offer)?
    } else {
        set_up_stack(ctx, &states, key, offer).await?
    };
    reservation.commit_viewer();
    let session = supervise::register(
        ctx,
        NewSession {
            id: supervise::new_session_id(),
            key,
            room,
            action: Action::Play,
            peer,
            identity,
            admit,
            states,
            remote_candidates,
            mux,
        },
    );
    spawn_feed(&session, sinks);
    Ok(Created {
        session_id: session.id.clone(),
        etag: session.etag(),
        answer,
    })
}

/// A viewer on webrtc-rs's driver: its connection, our answer and one sink per kind the
/// offer asked for.
async fn set_up_stack(
    ctx: &Context,
    states: &Arc<PeerStates>,
    key: u64,
    offer: String,
) -> Result<ViewerSetUp, SfuError> {
    let handler = Arc::new(StateHandler {
        states: states.clone(),
    });
    let (pc, mux) = ctx
        .peers
        .build(handler, DtlsSide::from_offer(&offer), PeerRole::Viewer)
        .await?;
    let set_up = async {
        let mut outputs = Vec::with_capacity(2);
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            outputs.push(add_output_track(&pc, kind, key).await?);
        }
        let peer = Peer::Stack(pc.clone());
        let answer = negotiate(&ctx.peers, &peer, states, offer).await?;
        if let Some(mux) = &mux {
            mux.register_answer(&answer);
        }
        // What the viewer negotiated, per kind: the sink maps publisher codecs onto it.
        let mut sinks = Vec::with_capacity(2);
        for out in outputs {
            let codecs = match out.sender.get_parameters().await {
                Ok(p) => p.rtp_parameters.codecs,
                Err(_) => continue,
            };
            if codecs.is_empty() {
                continue; // the offer had no section of this kind
            }
            let output = Output::Track(out.track.clone());
            let sink = ViewerSink::new(key, output, states.clone(), out.ssrc, codecs);
            sinks.push((out.kind, sink, Some(out.track)));
        }
        Ok::<_, SfuError>((peer, answer, sinks))
    };
    match set_up.await {
        Ok((peer, answer, sinks)) => Ok((peer, answer, sinks, mux)),
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

/// A viewer on the direct driver (see [`direct`](super::direct)): the same answer and sinks,
/// with the connection's keyframe requests relayed by its own driver.
fn set_up_direct(
    ctx: &Context,
    room: &Arc<Room>,
    states: &Arc<PeerStates>,
    key: u64,
    offer: String,
) -> Result<ViewerSetUp, SfuError> {
    let offer =
        RTCSessionDescription::offer(offer).map_err(|e| SfuError::BadOffer(e.to_string()))?;
    let (pc, sockets, mux) = ctx.peers.build_direct(DtlsSide::from_offer(&offer.sdp))?;
    let video = room.video.clone();
    let tcp_inboxes = mux
        .as_ref()
        .and_then(|m| m.tcp.as_ref())
        .map(|t| t.inboxes().to_vec())
        .unwrap_or_default();
    let conn = DirectViewer::start(
        pc,
        sockets,
        tcp_inboxes,
        states.clone(),
        ctx.peers.config().batch_sends,
        // Called when the viewer sends a PLI/FIR (per RTCP packet, not per media packet).
        Box::new(move || {
            video
                .stats
                .viewer_keyframe_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            video.request_keyframe()
        }),
    )?;
    let set_up = || -> Result<(String, Vec<_>), SfuError> {
        let mut senders = Vec::with_capacity(2);
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            let (track, ssrc) = viewer_track(kind, key);
            senders.push((kind, conn.add_track(track)?, ssrc));
        }
        let answer = ctx.peers.advertise(&conn.negotiate(offer)?);
        if let Some(mux) = &mux {
            mux.register_answer(&answer);
        }
        let mut sinks = Vec::with_capacity(2);
        for (kind, sender, ssrc) in senders {
            let codecs = conn.sender_codecs(sender);
            if !codecs.is_empty() {
                let output = Output::Direct(conn.clone(), sender);
                let sink = ViewerSink::new(key, output, states.clone(), ssrc, codecs);
                sinks.push((kind, sink, None));
            }
        }
        Ok((answer, sinks))
    };
    match set_up() {
        Ok((answer, sinks)) => Ok((Peer::Direct(conn), answer, sinks, mux)),
        Err(e) => {
            conn.close();
            Err(e)
        }
    }
}

/// Attach the viewer's sinks once it is connected, and relay its keyframe requests.
fn spawn_feed(session: &Arc<Session>, sinks: Vec<ViewerSinkOf>) {
    let room = session.room.clone();
    let mut connection = session.states.connection.subscribe();
    let mut ending = session.ending();
    let key = session.key;
    let (session_id, created_at) = (session.id.clone(), session.created_at);
    tokio::spawn(async move {
        // Wait until media can flow; the supervisor handles failure and timeouts.
        loop {
            if *connection.borrow_and_update() == RTCPeerConnectionState::Connected {
                break;
            }
            tokio::select! {
                changed = connection.changed() => if changed.is_err() { return },
                _ = ending.changed() => return,
            }
        }
        if ending.borrow().is_some() {
            return;
        }
        tracing::debug!(
            session = %session_id,
            after_ms = created_at.elapsed().as_secs_f64() * 1e3,
            "viewer connected; media attached"
        );
        let mut rtcp_tasks = Vec::new();
        for (kind, sink, track) in sinks {
            room.hub(kind).add_viewer(sink);
            if kind == RtpCodecKind::Video {
                room.video.request_keyframe();
            }
            // A direct viewer's own driver relays its keyframe requests.
            if let (RtpCodecKind::Video, Some(track)) = (kind, track) {
                let room = room.clone();
                // Only yields the PLI/FIR that `feedback::KeyframeRequestForwarder` lets
                // through: the peer factory must put it in the interceptor chain.
                rtcp_tasks.push(tokio::spawn(async move {
                    while let Some(event) = track.poll().await {
                        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                            continue;
                        };
                        if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                            room.video
                                .stats
                                .viewer_keyframe_requests
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            room.video.request_keyframe();
                        }
                    }
                }));
            }
        }
        let _ = ending.wait_for(Option::is_some).await;
        room.audio.remove_viewer(key);
        room.video.remove_viewer(key);
        for task in rtcp_tasks {
            task.abort();
        }
    });
}

/// A viewer's outgoing track of `kind` and the SSRC we chose for it. Its codec (Opus, VP8)
/// only seeds negotiation; the sink forwards whatever codec the publisher sends.
fn viewer_track(kind: RtpCodecKind, key: u64) -> (rtc::media_stream::MediaStreamTrack, u32) {
    let ssrc = rand::random::<u32>();
    let (label, mime) = match kind {
        RtpCodecKind::Audio => ("audio", "audio/opus"),
        _ => ("video", "video/VP8"),
    };
    let track = peer::media_track(
        format!("switchboard-{key}"),
        format!("{label}-{key}"),
        kind,
        mime,
        ssrc,
    );
    (track, ssrc)
}

struct OutputTrack {
    kind: RtpCodecKind,
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn webrtc::rtp_transceiver::RtpSender>,
    ssrc: u32,
}

async fn add_output_track(
    pc: &Arc<dyn PeerConnection>,
    kind: RtpCodecKind,
    key: u64,
) -> Result<OutputTrack, SfuError> {
    let (track, ssrc) = viewer_track(kind, key);
    let track = Arc::new(TrackLocalStaticRTP::new(track));
    let sender = pc
        .add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| SfuError::WebRtc(e.to_string()))?;
    Ok(OutputTrack {
        kind,
        track,
        sender,
        ssrc,
    })
}
