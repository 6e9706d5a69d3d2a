//! The SFU core: rooms, sessions and media forwarding.
//!
//! [`Sfu`] is what the HTTP layer talks to: it turns an SDP offer into a running publisher or
//! viewer session and answers PATCH/DELETE on it. Admission is decided *before* anything
//! here runs (see `crate::auth`); the core only enforces what it was told (expiry, re-check).
//!
//! - `peer`: building peer connections from the network config.
//! - `direct`: viewer connections the forwarding path drives itself (no driver task per packet).
//! - `room`: the publisher slot and the audio/video hubs of a room.
//! - `runtime`: the async runtime viewer connections run on (socket sizing, batched sends).
//! - `egress`: batching a viewer's sends into UDP GSO calls.
//! - `forward`: the hot path, fan-out of RTP from the publisher's reader.
//! - `session`: one WHIP/WHEP resource and its lifetime.
//! - `trickle`: the `trickle-ice-sdpfrag` format of PATCH bodies.

pub mod direct;
pub mod egress;
pub mod forward;
pub mod peer;
pub mod room;
pub mod runtime;
pub mod session;
pub mod trickle;

use crate::auth::{Action, AdmitRequest, Gatekeeper, Identity, RoomCounts};
use crate::config::{Config, PublisherConflict};
use crate::events::{Event, EventBus};
use forward::{Output, ViewerSink, is_keyframe_request};
use futures::FutureExt;
use parking_lot::Mutex;
use peer::{DtlsSide, PeerFactory, PeerRole};
use room::Room;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use session::{EndReason, Peer, PeerStates, Session};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription,
};

/// How long we wait for our own ICE candidates before answering anyway.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("room not found")]
    RoomNotFound,
    #[error("session not found")]
    SessionNotFound,
    #[error("ETag does not match the session's current state")]
    PreconditionFailed,
    #[error("invalid SDP offer: {0}")]
    BadOffer(String),
    #[error("invalid trickle-ice-sdpfrag: {0}")]
    BadFragment(String),
    #[error("{0}")]
    Conflict(String),
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

/// A freshly created session, as the HTTP layer needs to answer it.
pub struct Created {
    pub session_id: String,
    pub answer: String,
    pub etag: String,
}

/// What a PATCH did.
pub enum Patched {
    /// Candidates added; nothing to send back (204).
    Trickled,
    /// ICE restarted; send this answer fragment with the new ETag (200).
    Restarted { fragment: String, etag: String },
}

pub struct Sfu {
    peers: PeerFactory,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    gate: Arc<dyn Gatekeeper>,
    events: EventBus,
    conflict: PublisherConflict,
    keyframe_interval: Duration,
    connect_timeout: Duration,
    next_key: AtomicU64,
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Sfu {
    pub fn new(config: &Config, gate: Arc<dyn Gatekeeper>, events: EventBus) -> Arc<Sfu> {
        Arc::new(Sfu {
            peers: PeerFactory::new(config.webrtc.clone()),
            rooms: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            gate,
            events,
            conflict: config.rooms.on_publisher_conflict,
            keyframe_interval: Duration::from_millis(config.rooms.keyframe_request_interval_ms),
            connect_timeout: Duration::from_secs(config.webrtc.connect_timeout_secs),
            next_key: AtomicU64::new(1),
            shutting_down: Default::default(),
        })
    }

    pub fn gate(&self) -> &Arc<dyn Gatekeeper> {
        &self.gate
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn counts(&self, room: &str) -> RoomCounts {
        self.rooms
            .lock()
            .get(room)
            .map(|r| r.counts())
            .unwrap_or_default()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn room(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.lock().get(name).cloned()
    }

    /// Look up a session by room and id, distinguishing an unknown room from an unknown id.
    pub fn session(&self, room: &str, id: &str) -> Result<Arc<Session>, SfuError> {
        let session = self.sessions.lock().get(id).cloned();
        match session {
            Some(s) if s.room.name == room => Ok(s),
            _ if !self.rooms.lock().contains_key(room) => Err(SfuError::RoomNotFound),
            _ => Err(SfuError::SessionNotFound),
        }
    }

    fn checkout_room(&self, name: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock();
        let room = rooms
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Room::new(name.to_owned(), self.keyframe_interval)))
            .clone();
        room.begin_pending();
        room
    }

    fn release_room(&self, room: &Arc<Room>) {
        let mut rooms = self.rooms.lock();
        if room.is_idle()
            && rooms
                .get(&room.name)
                .is_some_and(|current| Arc::ptr_eq(current, room))
        {
            rooms.remove(&room.name);
        }
    }

    /// WHIP: start a publisher session in `room`.
    pub async fn publish(
        self: &Arc<Self>,
        admit: AdmitRequest,
        identity: Identity,
        offer: String,
    ) -> Result<Created, SfuError> {
        self.open(Action::Publish, admit, identity, offer).await
    }

    /// WHEP: start a viewer session in `room`. The room need not have a publisher yet.
    pub async fn play(
        self: &Arc<Self>,
        admit: AdmitRequest,
        identity: Identity,
        offer: String,
    ) -> Result<Created, SfuError> {
        self.open(Action::Play, admit, identity, offer).await
    }

    /// Hold the room open while the session is set up; release it again if set-up fails.
    async fn open(
        self: &Arc<Self>,
        action: Action,
        admit: AdmitRequest,
        identity: Identity,
        offer: String,
    ) -> Result<Created, SfuError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(SfuError::ShuttingDown);
        }
        let room = self.checkout_room(&admit.room);
        let result = match action {
            Action::Publish => self.start_publisher(&room, admit, identity, offer).await,
            Action::Play => self.start_viewer(&room, admit, identity, offer).await,
        };
        room.end_pending();
        if result.is_err() {
            self.release_room(&room);
        }
        result
    }

    async fn start_publisher(
        self: &Arc<Self>,
        room: &Arc<Room>,
        admit: AdmitRequest,
        identity: Identity,
        offer: String,
    ) -> Result<Created, SfuError> {
        if self.conflict == PublisherConflict::Reject && room.publisher().is_some() {
            return Err(SfuError::Conflict(format!(
                "room {:?} already has a publisher",
                room.name
            )));
        }
        let states = Arc::new(PeerStates::default());
        let handler = Arc::new(PeerHandler {
            states: states.clone(),
            publisher: Some(PublisherFeed {
                room: room.clone(),
                pc: OnceLock::new(),
            }),
        });
        let pc = self
            .peers
            .build(
                handler.clone(),
                DtlsSide::from_offer(&offer),
                PeerRole::Publisher,
            )
            .await
            .map_err(|e| SfuError::Internal(e.to_string()))?;
        if let Some(feed) = &handler.publisher {
            let _ = feed.pc.set(Arc::downgrade(&pc));
        }
        let answer = match negotiate(&self.peers, &Peer::Stack(pc.clone()), &states, offer).await {
            Ok(answer) => answer,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let session = self.register(
            room,
            Action::Publish,
            Peer::Stack(pc),
            identity,
            admit,
            states,
            key,
        );
        if let Some(previous) = room.set_publisher(&session.id)
            && let Some(old) = self.sessions.lock().get(&previous).cloned()
        {
            old.end(EndReason::Replaced);
        }
        Ok(Created {
            session_id: session.id.clone(),
            etag: session.etag(),
            answer,
        })
    }

    async fn start_viewer(
        self: &Arc<Self>,
        room: &Arc<Room>,
        admit: AdmitRequest,
        identity: Identity,
        offer: String,
    ) -> Result<Created, SfuError> {
        let states = Arc::new(PeerStates::default());
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (peer, answer, sinks) = if self.peers.direct_viewers() {
            self.set_up_direct_viewer(room, &states, key, offer)?
        } else {
            self.set_up_stack_viewer(&states, key, offer).await?
        };
        let session = self.register(room, Action::Play, peer, identity, admit, states, key);
        room.viewer_joined();
        self.spawn_viewer_feed(&session, sinks);
        Ok(Created {
            session_id: session.id.clone(),
            etag: session.etag(),
            answer,
        })
    }

    /// A viewer on webrtc-rs's driver: its connection, our answer and one sink per kind the
    /// offer asked for.
    async fn set_up_stack_viewer(
        &self,
        states: &Arc<PeerStates>,
        key: u64,
        offer: String,
    ) -> Result<ViewerSetUp, SfuError> {
        let handler = Arc::new(PeerHandler {
            states: states.clone(),
            publisher: None,
        });
        let pc = self
            .peers
            .build(handler, DtlsSide::from_offer(&offer), PeerRole::Viewer)
            .await
            .map_err(|e| SfuError::Internal(e.to_string()))?;
        let mut outputs = Vec::with_capacity(2);
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            match add_output_track(&pc, kind, key).await {
                Ok(out) => outputs.push(out),
                Err(e) => {
                    let _ = pc.close().await;
                    return Err(e);
                }
            }
        }
        let peer = Peer::Stack(pc.clone());
        let answer = match negotiate(&self.peers, &peer, states, offer).await {
            Ok(answer) => answer,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
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
            let sink = ViewerSink::new(key, output, out.ssrc, codecs);
            sinks.push((out.kind, sink, Some(out.track)));
        }
        Ok((peer, answer, sinks))
    }

    /// A viewer on the direct driver (see [`direct`]): the same answer and sinks, with the
    /// connection's keyframe requests relayed by its own driver.
    fn set_up_direct_viewer(
        &self,
        room: &Arc<Room>,
        states: &Arc<PeerStates>,
        key: u64,
        offer: String,
    ) -> Result<ViewerSetUp, SfuError> {
        let offer =
            RTCSessionDescription::offer(offer).map_err(|e| SfuError::BadOffer(e.to_string()))?;
        let (pc, sockets) = self
            .peers
            .build_direct(DtlsSide::from_offer(&offer.sdp))
            .map_err(|e| SfuError::Internal(e.to_string()))?;
        let video = room.video.clone();
        let conn = direct::DirectViewer::start(
            pc,
            sockets,
            states.clone(),
            self.peers.config().batch_sends,
            Box::new(move || video.request_keyframe()),
        )?;
        let set_up = || -> Result<(String, Vec<_>), SfuError> {
            let mut senders = Vec::with_capacity(2);
            for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
                let (track, ssrc) = viewer_track(kind, key);
                senders.push((kind, conn.add_track(track)?, ssrc));
            }
            let answer = self.peers.advertise(&conn.negotiate(offer)?);
            let mut sinks = Vec::with_capacity(2);
            for (kind, sender, ssrc) in senders {
                let codecs = conn.sender_codecs(sender);
                if !codecs.is_empty() {
                    let output = Output::Direct(conn.clone(), sender);
                    sinks.push((kind, ViewerSink::new(key, output, ssrc, codecs), None));
                }
            }
            Ok((answer, sinks))
        };
        match set_up() {
            Ok((answer, sinks)) => Ok((Peer::Direct(conn), answer, sinks)),
            Err(e) => {
                conn.close();
                Err(e)
            }
        }
    }

    /// Attach the viewer's sinks once it is connected, and relay its keyframe requests.
    fn spawn_viewer_feed(&self, session: &Arc<Session>, sinks: Vec<ViewerSinkOf>) {
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
                    // Only yields the PLI/FIR that `forward::KeyframeRequestForwarder` lets
                    // through: the peer factory must put it in the interceptor chain.
                    rtcp_tasks.push(tokio::spawn(async move {
                        while let Some(event) = track.poll().await {
                            let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                                continue;
                            };
                            if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
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

    #[allow(clippy::too_many_arguments)]
    fn register(
        self: &Arc<Self>,
        room: &Arc<Room>,
        action: Action,
        pc: Peer,
        identity: Identity,
        admit: AdmitRequest,
        states: Arc<PeerStates>,
        key: u64,
    ) -> Arc<Session> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let session = Arc::new(Session::new(
            id.clone(),
            key,
            room.clone(),
            action,
            pc,
            identity,
            admit,
            states,
        ));
        self.sessions.lock().insert(id.clone(), session.clone());
        tracing::info!(session = %id, room = %room.name, %action, subject = %session.identity.subject, "session started");
        self.events.publish(Event::SessionStarted {
            session: id,
            room: room.name.clone(),
            action,
            subject: session.identity.subject.clone(),
        });
        tokio::spawn(self.clone().supervise(session.clone()));
        session
    }

    /// Runs for the life of a session and is the only place it is torn down.
    async fn supervise(self: Arc<Self>, session: Arc<Session>) {
        let mut connection = session.states.connection.subscribe();
        let mut ending = session.ending();
        let connect_deadline = tokio::time::sleep(self.connect_timeout);
        tokio::pin!(connect_deadline);
        let mut connected = false;
        let expiry = session.identity.expires_at.map(|at| {
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        });
        let expiry_sleep = tokio::time::sleep(expiry.unwrap_or(Duration::MAX / 4));
        tokio::pin!(expiry_sleep);
        let mut recheck = session.identity.recheck_every.map(|every| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });

        loop {
            tokio::select! {
                _ = ending.changed() => break,
                changed = connection.changed() => {
                    if changed.is_err() { session.end(EndReason::PeerClosed); continue; }
                    match *connection.borrow_and_update() {
                        RTCPeerConnectionState::Connected => connected = true,
                        RTCPeerConnectionState::Failed => session.end(EndReason::IceFailed),
                        RTCPeerConnectionState::Closed => session.end(EndReason::PeerClosed),
                        _ => {}
                    }
                }
                _ = &mut connect_deadline, if !connected => session.end(EndReason::ConnectTimeout),
                _ = &mut expiry_sleep, if expiry.is_some() => session.end(EndReason::Expired),
                _ = async { recheck.as_mut().expect("guarded").tick().await }, if recheck.is_some() => {
                    let mut req = session.admit.clone();
                    req.counts = session.room.counts();
                    if let Err(denied) = self.gate.recheck(&req, &session.identity).await {
                        session.end(EndReason::Revoked(denied.to_string()));
                    }
                }
            }
        }

        let reason = ending.borrow().clone().unwrap_or(EndReason::PeerClosed);
        self.teardown(&session, reason).await;
    }

    async fn teardown(&self, session: &Arc<Session>, reason: EndReason) {
        let room = &session.room;
        match session.action {
            Action::Publish => room.clear_publisher(&session.id),
            Action::Play => room.viewer_left(),
        }
        session.pc.close().await;
        self.release_room(room);
        // Last, so a session count of zero means every resource is already released.
        self.sessions.lock().remove(&session.id);
        match &reason {
            EndReason::Expired | EndReason::Revoked(_) => tracing::warn!(
                session = %session.id, room = %room.name, action = %session.action,
                subject = %session.identity.subject, %reason, "session ended by policy"
            ),
            _ => tracing::info!(
                session = %session.id, room = %room.name, action = %session.action,
                %reason, "session ended"
            ),
        }
        self.events.publish(Event::SessionEnded {
            session: session.id.clone(),
            room: room.name.clone(),
            action: session.action,
            subject: session.identity.subject.clone(),
            reason: reason.to_string(),
        });
    }

    /// DELETE on a session resource.
    pub fn delete(&self, room: &str, id: &str) -> Result<(), SfuError> {
        let session = self.session(room, id)?;
        session.end(EndReason::Deleted);
        Ok(())
    }

    /// PATCH on a session resource: trickle candidates, or an ICE restart when the fragment
    /// carries new credentials.
    pub async fn patch(
        &self,
        room: &str,
        id: &str,
        if_match: Option<&str>,
        body: &[u8],
    ) -> Result<Patched, SfuError> {
        let session = self.session(room, id)?;
        if let Some(tag) = if_match
            && !session.etag_matches(tag)
        {
            return Err(SfuError::PreconditionFailed);
        }
        let frag =
            trickle::SdpFrag::parse(body).map_err(|e| SfuError::BadFragment(e.to_string()))?;
        let _guard = session.patch_lock.lock().await;
        let remote = session
            .pc
            .remote_sdp()
            .await
            .ok_or_else(|| SfuError::Internal("session has no remote description".into()))?;
        let current = trickle::ice_credentials(&remote);

        let restart = match (&frag.ufrag, &frag.pwd) {
            (Some(u), Some(p)) => current.as_ref().is_none_or(|(cu, cp)| cu != u || cp != p),
            _ => false,
        };
        let first_mid = first_mid(&remote);

        let outcome = if restart {
            let (ufrag, pwd) = (
                frag.ufrag.as_deref().unwrap_or_default(),
                frag.pwd.as_deref().unwrap_or_default(),
            );
            let offer = RTCSessionDescription::offer(trickle::restart_offer(&remote, ufrag, pwd))
                .map_err(|e| SfuError::BadFragment(e.to_string()))?;
            let answer = negotiate_desc(&self.peers, &session.pc, &session.states, offer).await?;
            let etag = session.rotate_etag();
            tracing::info!(session = %session.id, "ICE restart");
            Patched::Restarted {
                fragment: trickle::answer_fragment(&answer),
                etag,
            }
        } else {
            Patched::Trickled
        };

        let ufrag = frag.ufrag.clone().or(current.map(|c| c.0));
        for (mid, candidate) in frag.candidates {
            let init = RTCIceCandidateInit {
                candidate,
                sdp_mid: mid.or_else(|| first_mid.clone()),
                sdp_mline_index: None,
                username_fragment: ufrag.clone(),
                url: None,
            };
            if let Err(e) = session.pc.add_ice_candidate(init).await {
                return Err(SfuError::BadFragment(format!("candidate rejected: {e}")));
            }
        }
        Ok(outcome)
    }

    /// End every session (graceful shutdown) and wait briefly for them to close.
    pub async fn close_all(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        let sessions: Vec<_> = self.sessions.lock().values().cloned().collect();
        for s in &sessions {
            s.end(EndReason::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.session_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_owned))
}

/// Apply an offer string and produce our complete answer (with candidates).
async fn negotiate(
    peers: &PeerFactory,
    pc: &Peer,
    states: &PeerStates,
    offer: String,
) -> Result<String, SfuError> {
    let offer =
        RTCSessionDescription::offer(offer).map_err(|e| SfuError::BadOffer(e.to_string()))?;
    negotiate_desc(peers, pc, states, offer).await
}

async fn negotiate_desc(
    peers: &PeerFactory,
    pc: &Peer,
    states: &PeerStates,
    offer: RTCSessionDescription,
) -> Result<String, SfuError> {
    let pc = match pc {
        Peer::Stack(pc) => pc,
        Peer::Direct(conn) => return Ok(peers.advertise(&conn.negotiate(offer)?)),
    };
    let mut gathering = states.gathering.subscribe();
    gathering.mark_unchanged();
    pc.set_remote_description(offer)
        .await
        .map_err(|e| SfuError::BadOffer(e.to_string()))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|e| SfuError::BadOffer(e.to_string()))?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| SfuError::Internal(e.to_string()))?;
    // Answer with every candidate we have (clients that never trickle need them), but never
    // wait longer than GATHER_TIMEOUT for a slow STUN server.
    let _ = tokio::time::timeout(
        GATHER_TIMEOUT,
        gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await;
    pc.local_description()
        .await
        .map(|d| peers.advertise(&d.sdp))
        .ok_or_else(|| SfuError::Internal("no local description".into()))
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

/// A viewer sink, its kind, and (on webrtc-rs's driver) the track its keyframe requests
/// arrive on.
type ViewerSinkOf = (RtpCodecKind, ViewerSink, Option<Arc<TrackLocalStaticRTP>>);

/// What setting up a viewer yields: its connection, our answer, its sinks.
type ViewerSetUp = (Peer, String, Vec<ViewerSinkOf>);

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
        .map_err(|e| SfuError::Internal(e.to_string()))?;
    Ok(OutputTrack {
        kind,
        track,
        sender,
        ssrc,
    })
}

/// The publisher side of a handler: where incoming tracks go.
struct PublisherFeed {
    room: Arc<Room>,
    pc: OnceLock<Weak<dyn PeerConnection>>,
}

/// Receives peer-connection callbacks from the webrtc driver. Must never block it.
struct PeerHandler {
    states: Arc<PeerStates>,
    publisher: Option<PublisherFeed>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.states.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.states.connection.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(feed) = &self.publisher else {
            return; // viewers only receive nothing we forward
        };
        let room = feed.room.clone();
        let pc = feed.pc.get().and_then(Weak::upgrade);
        tokio::spawn(async move {
            let kind = track.kind().await;
            let Some(media_ssrc) = track.ssrcs().await.first().copied() else {
                return;
            };
            let codecs = match pc {
                Some(pc) => receiver_codecs(&pc, &track).await,
                None => Vec::new(),
            };
            let hub = room.hub(kind);
            hub.attach_source(track.clone(), media_ssrc, codecs);
            if kind == RtpCodecKind::Video {
                hub.request_keyframe();
            }
            // The publisher's reader: wait for a packet, take whatever else is already queued
            // behind it (up to MAX_BURST), and fan the burst out in place.
            let mut burst = Vec::with_capacity(MAX_BURST);
            let mut open = true;
            while open {
                burst.clear();
                match track.poll().await {
                    Some(event) => push_rtp(&mut burst, event),
                    None => break,
                }
                while burst.len() < MAX_BURST {
                    match track.poll().now_or_never() {
                        Some(Some(event)) => push_rtp(&mut burst, event),
                        Some(None) => {
                            open = false;
                            break;
                        }
                        None => break, // nothing more queued right now
                    }
                }
                hub.forward_burst(&mut burst);
            }
            hub.detach_source(&track);
        });
    }
}

/// Most packets the publisher's reader hands to the hub at once.
const MAX_BURST: usize = 16;

fn push_rtp(burst: &mut Vec<rtc::rtp::Packet>, event: TrackRemoteEvent) {
    if let TrackRemoteEvent::OnRtpPacket(packet) = event {
        burst.push(packet);
    }
}

/// The codecs negotiated on the receiver that owns `track`.
async fn receiver_codecs(
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<dyn TrackRemote>,
) -> Vec<rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters> {
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
