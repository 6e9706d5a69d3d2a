//! Publisher ingest (WHIP): the publisher's connection, and one reader per incoming track
//! that hands what arrives to the room's hub — the start of the forwarding hot path.
//!
//! A simulcast track brings all its layers (one SSRC each) through one reader; a publisher with
//! several tracks of a kind has one reader per track. The hub decides which stream viewers get
//! (see [`layers`](super::layers)).

use super::admission::Reservation;
use super::bitrate::{BitrateCap, REMB_EVERY};
use super::context::Context;
use super::error::SfuError;
use super::negotiate::negotiate;
use super::peer::{DtlsSide, PeerRole};
use super::room::{PublisherSlot, Room};
use super::session::NewSession;
use super::session::{Created, EndReason, Peer};
use super::state::{PeerStates, StateHandler, panic_message};
use super::supervise;
use crate::auth::{Action, AdmitRequest, Identity};
use futures::FutureExt;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodecParameters, RtpCodecKind};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

/// Most packets the publisher's reader hands to the hub at once.
const MAX_BURST: usize = 16;

/// WHIP: start a publisher session in the reserved room.
pub async fn start_publisher(
    ctx: &Arc<Context>,
    reservation: Reservation,
    identity: Identity,
    admit: AdmitRequest,
    offer: String,
) -> Result<Created, SfuError> {
    let (offer, remote_candidates) = ctx.candidates.filter_offer(&offer)?;
    let room = reservation.room().clone();
    let key = ctx.next_key();
    let id = supervise::new_session_id();
    let announce = TrackAnnouncer {
        events: ctx.events.clone(),
        room: room.name.clone(),
        session: id.clone(),
        simulcast_layers: offered_rids(&offer),
    };
    let states = Arc::new(PeerStates::default());
    let cap = match ctx.max_publisher_kbps {
        0 => None,
        kbps => Some(Arc::new(BitrateCap::new(kbps, Instant::now()))),
    };
    let handler = Arc::new(PublisherHandler {
        inner: StateHandler {
            states: states.clone(),
        },
        room: room.clone(),
        key,
        cap,
        announce,
        pc: OnceLock::new(),
    });
    let (pc, mux) = ctx
        .peers
        .build(
            handler.clone(),
            DtlsSide::from_offer(&offer),
            PeerRole::Publisher,
        )
        .await?;
    let _ = handler.pc.set(Arc::downgrade(&pc));
    let peer = Peer::Stack(pc.clone());
    let answer = match negotiate(&ctx.peers, &peer, &states, offer).await {
        Ok(answer) => answer,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e);
        }
    };
    if let Some(mux) = &mux {
        mux.register_answer(&answer);
    }
    let replaced = reservation.commit_publisher(PublisherSlot {
        session: id.clone(),
        subject: identity.subject.clone(),
    });
    let session = supervise::register(
        ctx,
        NewSession {
            id,
            key,
            room,
            action: Action::Publish,
            peer,
            identity,
            admit,
            states,
            remote_candidates,
            mux,
        },
    );
    if let Some(old) = replaced.and_then(|p| ctx.registry.session_by_id(&p.session)) {
        old.end(EndReason::Replaced);
    }
    Ok(Created {
        session_id: session.id.clone(),
        etag: session.etag(),
        answer,
    })
}

/// Receives the publisher connection's callbacks: state changes, and its incoming tracks.
struct PublisherHandler {
    inner: StateHandler,
    room: Arc<Room>,
    /// The publisher session's key: a new publisher's tracks replace the old one's in the hubs.
    key: u64,
    /// What this publisher may send (`limits.max_publisher_kbps`), shared by its tracks.
    cap: Option<Arc<BitrateCap>>,
    /// Tells consumers (`track.published`) about each track that starts arriving.
    announce: TrackAnnouncer,
    pc: OnceLock<Weak<dyn PeerConnection>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PublisherHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.inner.on_ice_gathering_state_change(state).await;
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.inner.on_connection_state_change(state).await;
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let room = self.room.clone();
        let pc = self.pc.get().and_then(Weak::upgrade);
        let key = self.key;
        let cap = self.cap.clone();
        let states = self.inner.states.clone();
        let announce = self.announce.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            let codecs = match pc {
                Some(pc) => receiver_codecs(&pc, &track).await,
                None => Vec::new(),
            };
            announce.track(kind, &codecs);
            let hub = room.hub(kind).clone();
            // A panic while forwarding ends this publisher's session (viewers stay, and get
            // the next publisher), never the process.
            let read = AssertUnwindSafe(read_track(
                hub,
                kind,
                track,
                key,
                codecs,
                cap,
                states.clone(),
            ));
            if let Err(panic) = read.catch_unwind().await {
                states.fault(format!(
                    "the publisher's reader panicked: {}",
                    panic_message(&*panic)
                ));
            }
        });
    }
}

/// Announces a publisher's tracks as they start arriving (`track.published`).
#[derive(Clone)]
struct TrackAnnouncer {
    events: crate::events::EventBus,
    room: String,
    session: String,
    /// The RIDs the offer announced (simulcast video), in its order.
    simulcast_layers: Vec<String>,
}

impl TrackAnnouncer {
    fn track(&self, kind: RtpCodecKind, codecs: &[RTCRtpCodecParameters]) {
        let codec = codecs
            .iter()
            .map(|c| c.rtp_codec.mime_type.clone())
            .find(|m| super::codec::MediaCodec::from_mime(m) != super::codec::MediaCodec::Repair)
            .unwrap_or_default();
        let (kind, layers) = match kind {
            RtpCodecKind::Audio => ("audio", Vec::new()),
            _ => ("video", self.simulcast_layers.clone()),
        };
        self.events.publish(
            Some(&self.room),
            crate::events::EventData::TrackPublished {
                session: self.session.clone(),
                kind: kind.to_owned(),
                codec,
                simulcast_layers: layers,
            },
        );
    }
}

/// The RIDs an offer sends (`a=rid:<id> send`): its simulcast layers.
fn offered_rids(offer: &str) -> Vec<String> {
    offer
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=rid:"))
        .filter_map(|r| {
            let mut parts = r.split_whitespace();
            let id = parts.next()?;
            (parts.next() == Some("send")).then(|| id.to_owned())
        })
        .collect()
}

/// The publisher's reader: wait for a packet, take whatever else is already queued behind it
/// (up to MAX_BURST), and hand the burst to the hub, which fans it out in place.
async fn read_track(
    hub: Arc<super::forward::TrackHub>,
    kind: RtpCodecKind,
    track: Arc<dyn TrackRemote>,
    publisher: u64,
    codecs: Vec<RTCRtpCodecParameters>,
    cap: Option<Arc<BitrateCap>>,
    states: Arc<PeerStates>,
) {
    let feed = hub.attach_feed(track.clone(), publisher, codecs);
    let _remb = match (kind, &cap) {
        (RtpCodecKind::Video, Some(cap)) => Some(AbortOnDrop(tokio::spawn(tell_cap(
            track.clone(),
            cap.bits_per_sec,
        )))),
        _ => None,
    };
    if kind == RtpCodecKind::Video {
        hub.request_keyframe();
    }
    let mut burst = Vec::with_capacity(MAX_BURST);
    let mut open = true;
    while open {
        burst.clear();
        match track.poll().await {
            Some(event) => take(&hub, feed, &mut burst, event),
            None => break,
        }
        while burst.len() < MAX_BURST {
            match track.poll().now_or_never() {
                Some(Some(event)) => take(&hub, feed, &mut burst, event),
                Some(None) => {
                    open = false;
                    break;
                }
                None => break, // nothing more queued right now
            }
        }
        let bytes: usize = burst.iter().map(|p| p.payload.len()).sum();
        states.media.add(burst.len() as u64, bytes as u64);
        if let Some(cap) = &cap {
            let now = Instant::now();
            let before = burst.len();
            burst.retain(|p| cap.admit(p.payload.len() + 12, now));
            let over = (before - burst.len()) as u64;
            if over > 0 {
                states
                    .media
                    .dropped
                    .fetch_add(over, std::sync::atomic::Ordering::Relaxed);
            }
        }
        hub.forward_burst(feed, &mut burst);
    }
    hub.detach_feed(feed);
}

/// Tell the publisher the cap on its video track, again every [`REMB_EVERY`].
async fn tell_cap(track: Arc<dyn TrackRemote>, bits_per_sec: u64) {
    let mut every = tokio::time::interval(REMB_EVERY);
    loop {
        every.tick().await;
        let remb = ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 0,
            bitrate: bits_per_sec as f32,
            ssrcs: track.ssrcs().await,
        };
        if track.write_rtcp(vec![Box::new(remb)]).await.is_err() {
            return;
        }
    }
}

/// Stops a helper task with the reader that started it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn take(
    hub: &super::forward::TrackHub,
    feed: super::layers::FeedId,
    burst: &mut Vec<rtc::rtp::Packet>,
    event: TrackRemoteEvent,
) {
    match event {
        TrackRemoteEvent::OnRtpPacket(packet) => burst.push(packet),
        // Simulcast: each layer opens with its RID and SSRC.
        TrackRemoteEvent::OnOpen(init) => {
            if let Some(rid) = init.rid {
                hub.name_stream(feed, init.ssrc, rid);
            }
        }
        _ => {}
    }
}

/// The codecs negotiated on the receiver that owns `track`.
async fn receiver_codecs(
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<dyn TrackRemote>,
) -> Vec<RTCRtpCodecParameters> {
    let id = track.track_id().await;
    for receiver in pc.get_receivers().await {
        if receiver.track().track_id().await == id
            && let Ok(params) = receiver.get_parameters().await
        {
            return params.rtp_parameters.codecs;
        }
    }
    Vec::new()
}
