//! Viewer connections driven directly over the sans-IO WebRTC core (the `rtc` crate).
//!
//! A webrtc-rs `PeerConnection` owns a driver task and takes outgoing RTP through a channel,
//! so every forwarded packet costs each viewer a channel send, a task wake-up and a turn of
//! that driver's loop before it is encrypted and sent — for a send-only viewer, most of the
//! server's CPU. A [`DirectViewer`] keeps the connection's sans-IO core behind a mutex
//! instead. The publisher's reader (the forwarding hot path, see [`forward`](super::forward))
//! writes a burst straight into it, takes the encrypted datagrams out and sends them as one
//! batch ([`egress`](super::egress)) in the same call. A small task per viewer ([`drive`]) handles the rest:
//! ICE, DTLS and RTCP arriving on the viewer's sockets, and the core's timers (ICE
//! keep-alives, DTLS retransmissions, sender reports). Between those it sleeps; media never
//! wakes it.
//!
//! ICE-TCP (`webrtc.tcp_port`): the viewer also offers a passive TCP candidate per listening
//! address of the shared TCP port, and each connection the port routes to it becomes a
//! [`TcpLink`]: a reader task feeding frames to the core, a writer task taking framed
//! datagrams from a bounded queue (full: dropped and counted, like a full socket buffer).
//!
//! Only host candidates are gathered (one socket per local address); deployments that want
//! the server to gather server-reflexive or relay candidates keep webrtc-rs's driver (see
//! [`PeerFactory::direct_viewers`](super::peer::PeerFactory::direct_viewers)).

use super::egress::Scope;
use super::error::SfuError;
use super::feedback::is_keyframe_request;
use super::peer::PeerError;
use super::state::PeerStates;
use crate::ice::tcp::{TcpConnection, TcpInbox};
use bytes::BytesMut;
use parking_lot::Mutex;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use webrtc::peer_connection::{
    RTCIceCandidateInit, RTCPeerConnection, RTCPeerConnectionState, RTCSessionDescription,
};
use webrtc::runtime::{AsyncUdpSocket, RecvMeta, Transmit};

/// Longest a driver sleeps without re-reading the core's next timeout (a safety net: the
/// core's timers are re-read after everything the driver itself does).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Receive buffer of a viewer's driver: a viewer only sends us STUN, DTLS and RTCP.
const RECV_BUF_LEN: usize = 2000;
/// Framed datagrams an ICE-TCP link holds for its writer (about a second of 2 Mbit/s video).
const TCP_QUEUE: usize = 256;
/// Longest an ICE-TCP write may wait for a client that stopped reading before the link's
/// writer gives up (the connection is then left to ICE's timers).
const TCP_WRITE_STALL: Duration = Duration::from_secs(5);

/// Datagrams the direct viewers could not hand to the kernel (socket buffer full).
static SEND_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Datagrams direct viewers' sends dropped since start (egress drops are counted there).
pub fn send_dropped() -> u64 {
    SEND_DROPPED.load(Ordering::Relaxed)
}

/// Called when the viewer asks for a keyframe (PLI or FIR).
pub type KeyframeRequest = Box<dyn Fn() + Send + Sync>;

/// One viewer's connection: its sans-IO core, its sockets and what its driver reports to.
pub struct DirectViewer {
    core: Mutex<Core>,
    /// One per local address, with that address (what the core names as a datagram's source).
    sockets: Vec<(SocketAddr, Arc<dyn AsyncUdpSocket>)>,
    /// ICE-TCP: the connections the shared TCP port routes here, per listening address.
    tcp_inboxes: Vec<Arc<TcpInbox>>,
    /// ICE-TCP connections taken from the inboxes, and the tasks taking them.
    tcp: Mutex<TcpState>,
    /// Wakes the driver after signalling changed the core (its timers may have moved) or the
    /// connection closed.
    wake: Notify,
    states: Arc<PeerStates>,
    /// Send what one call produces as one batch (`webrtc.batch_sends`).
    batch: bool,
    on_keyframe_request: KeyframeRequest,
    /// Fault injection for tests: the driver panics at its next turn.
    panic_requested: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct TcpState {
    links: Vec<TcpLink>,
    acceptors: Vec<tokio::task::AbortHandle>,
}

/// One ICE-TCP connection of a viewer. Dropping it stops its reader; its writer sends what is
/// queued and closes the connection.
struct TcpLink {
    peer: SocketAddr,
    frames: tokio::sync::mpsc::Sender<Vec<u8>>,
    reader: tokio::task::AbortHandle,
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct Core {
    pc: RTCPeerConnection,
    candidates_added: bool,
    closed: bool,
}

impl DirectViewer {
    /// Wrap a freshly built core and its sockets, and start the driver.
    pub fn start(
        pc: RTCPeerConnection,
        sockets: Vec<Arc<dyn AsyncUdpSocket>>,
        tcp_inboxes: Vec<Arc<TcpInbox>>,
        states: Arc<PeerStates>,
        batch: bool,
        on_keyframe_request: KeyframeRequest,
    ) -> Result<Arc<DirectViewer>, SfuError> {
        let sockets = sockets
            .into_iter()
            .map(|s| Ok((s.local_addr()?, s)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| SfuError::Peer(PeerError::Build(format!("viewer socket: {e}"))))?;
        let conn = Arc::new(DirectViewer {
            core: Mutex::new(Core {
                pc,
                candidates_added: false,
                closed: false,
            }),
            sockets,
            tcp_inboxes,
            tcp: Mutex::new(TcpState::default()),
            wake: Notify::new(),
            states,
            batch,
            on_keyframe_request,
            panic_requested: Default::default(),
        });
        for inbox in &conn.tcp_inboxes {
            let task = tokio::spawn(take_connections(Arc::downgrade(&conn), inbox.clone()));
            conn.tcp.lock().acceptors.push(task.abort_handle());
        }
        // A panic in the driver ends this viewer's session (and frees what it held), never
        // the process or anyone else's session.
        let driven = conn.clone();
        tokio::spawn(async move {
            let run = std::panic::AssertUnwindSafe(drive(driven.clone()));
            if let Err(panic) = futures::FutureExt::catch_unwind(run).await {
                driven.core.lock().closed = true;
                driven.states.fault(format!(
                    "the viewer's connection driver panicked: {}",
                    super::state::panic_message(&*panic)
                ));
            }
        });
        Ok(conn)
    }

    /// Test hook: make this viewer's driver panic at its next turn (a bug in one session's
    /// media core), to check that only this session ends.
    #[doc(hidden)]
    pub fn inject_panic(&self) {
        self.panic_requested.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub fn add_track(&self, track: MediaStreamTrack) -> Result<RTCRtpSenderId, SfuError> {
        self.core
            .lock()
            .pc
            .add_track(track)
            .map_err(|e| SfuError::WebRtc(e.to_string()))
    }

    /// Apply a remote offer (the first, or an ICE restart) and return our answer, with our
    /// host candidates in it.
    pub fn negotiate(&self, offer: RTCSessionDescription) -> Result<String, SfuError> {
        let mut core = self.core.lock();
        if core.closed {
            return Err(SfuError::Closed);
        }
        let now = Instant::now();
        core.pc
            .set_remote_description(now, offer)
            .map_err(|e| SfuError::BadOffer(e.to_string()))?;
        let answer = core
            .pc
            .create_answer(None)
            .map_err(|e| SfuError::BadOffer(e.to_string()))?;
        core.pc
            .set_local_description(now, answer)
            .map_err(|e| SfuError::WebRtc(e.to_string()))?;
        if !core.candidates_added {
            let udp = self.sockets.iter().map(|(addr, _)| (*addr, "udp"));
            let tcp = self.tcp_inboxes.iter().map(|i| (i.local_addr(), "tcp"));
            for (addr, network) in udp.chain(tcp) {
                let candidate = host_candidate(addr, network)?;
                core.pc
                    .add_local_candidate(candidate)
                    .map_err(|e| SfuError::WebRtc(format!("local candidate: {e}")))?;
            }
            core.candidates_added = true;
        }
        // End of gathering (again after a restart, which reopens it; candidates are kept).
        let _ = core.pc.add_local_candidate(RTCIceCandidateInit::default());
        let sdp = core
            .pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| SfuError::WebRtc("no local description".into()))?;
        drop(core);
        self.wake.notify_one();
        Ok(sdp)
    }

    /// The codecs negotiated for a sender (empty if the offer had no section of its kind).
    pub fn sender_codecs(&self, sender: RTCRtpSenderId) -> Vec<RTCRtpCodecParameters> {
        let mut core = self.core.lock();
        core.pc
            .rtp_sender(sender)
            .map(|mut s| s.get_parameters().rtp_parameters.codecs.clone())
            .unwrap_or_default()
    }

    pub fn remote_sdp(&self) -> Option<String> {
        self.core
            .lock()
            .pc
            .remote_description()
            .map(|d| d.sdp.clone())
    }

    pub fn add_remote_candidate(&self, candidate: RTCIceCandidateInit) -> Result<(), String> {
        let mut core = self.core.lock();
        core.pc
            .add_remote_candidate(candidate)
            .map_err(|e| e.to_string())?;
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    /// Close the connection (sending DTLS close_notify) and stop the driver. Idempotent.
    pub fn close(&self) {
        let mut core = self.core.lock();
        if core.closed {
            return;
        }
        let _ = core.pc.close();
        self.flush(&mut core);
        core.closed = true;
        drop(core);
        // Writers send the close_notify just queued, then close their connections.
        let tcp = std::mem::take(&mut *self.tcp.lock());
        for acceptor in tcp.acceptors {
            acceptor.abort();
        }
        drop(tcp.links);
        self.states
            .connection
            .send_replace(RTCPeerConnectionState::Closed);
        self.wake.notify_one();
    }

    /// The hot path: encrypt and send a burst of packets on one of this viewer's senders.
    /// Returns (sent, refused). Never waits: what the kernel will not take now is dropped.
    pub fn send_burst(
        &self,
        sender: RTCRtpSenderId,
        packets: impl Iterator<Item = rtp::Packet>,
    ) -> (u64, u64) {
        let mut core = self.core.lock();
        let (mut sent, mut refused) = (0, 0);
        if core.closed {
            return (0, packets.count() as u64);
        }
        let now = Instant::now();
        for packet in packets {
            let ok = match core.pc.rtp_sender(sender) {
                Some(mut s) => s.write_rtp(now, packet).is_ok(),
                None => false,
            };
            if ok {
                sent += 1;
            } else {
                refused += 1;
            }
        }
        self.flush(&mut core);
        // No `poll_timeout` here (it walks every layer of the core): writing media arms no
        // timer the driver has not already seen, and the driver looks at least every
        // MAX_SLEEP anyway.
        (sent, refused)
    }

    /// Send every datagram the core has ready, as one batch.
    fn flush(&self, core: &mut Core) {
        let _scope = self.batch.then(Scope::open);
        while let Some(out) = core.pc.poll_write() {
            self.send(&out);
        }
    }

    fn send(&self, out: &TaggedBytesMut) {
        if out.transport.transport_protocol == TransportProtocol::TCP {
            return self.send_tcp(out);
        }
        let local = out.transport.local_addr;
        let Some((_, socket)) = self
            .sockets
            .iter()
            .find(|(addr, _)| *addr == local)
            .or(self.sockets.first())
        else {
            return;
        };
        let transmit = Transmit {
            destination: out.transport.peer_addr,
            ecn: None,
            contents: &out.message,
            segment_size: None,
            src_ip: None,
        };
        // Inside a batch scope this only queues (see `egress`); outside it sends now.
        let mut cx = Context::from_waker(Waker::noop());
        if !matches!(socket.poll_send(&mut cx, &transmit), Poll::Ready(Ok(_))) {
            SEND_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queue one datagram on the ICE-TCP connection to its destination, in RFC 6544 framing.
    fn send_tcp(&self, out: &TaggedBytesMut) {
        let tcp = self.tcp.lock();
        let Some(link) = tcp.links.iter().find(|l| l.peer == out.transport.peer_addr) else {
            SEND_DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if link
            .frames
            .try_send(rtc::shared::tcp_framing::frame_packet(&out.message))
            .is_err()
        {
            SEND_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Take a connection the shared TCP port routed here: its reader feeds the core, its
    /// writer sends what [`Self::send_tcp`] queues.
    fn attach_tcp(self: &Arc<Self>, conn: TcpConnection) {
        let (read_half, mut write_half) = conn.stream.into_split();
        let (frames, mut queued) = tokio::sync::mpsc::channel::<Vec<u8>>(TCP_QUEUE);
        // A client that stops reading stalls only its writer, and only for TCP_WRITE_STALL.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Some(frame) = queued.recv().await {
                let write = tokio::time::timeout(TCP_WRITE_STALL, write_half.write_all(&frame));
                if !matches!(write.await, Ok(Ok(()))) {
                    return;
                }
            }
        });
        let reader = tokio::spawn(read_tcp(
            Arc::downgrade(self),
            read_half,
            conn.local,
            conn.peer,
            conn.first,
        ));
        // The core's lock is never taken inside this one (the send path nests them the other
        // way round).
        if self.core.lock().closed {
            reader.abort();
            return;
        }
        let mut tcp = self.tcp.lock();
        tcp.links.retain(|l| l.peer != conn.peer);
        tcp.links.push(TcpLink {
            peer: conn.peer,
            frames,
            reader: reader.abort_handle(),
        });
    }

    /// Hand the core a datagram that arrived on `transport`, and let the driver look at it.
    fn receive(&self, transport: TransportContext, data: &[u8]) {
        let message = TaggedBytesMut {
            now: Instant::now(),
            transport,
            message: BytesMut::from(data),
        };
        if let Err(e) = self.core.lock().pc.handle_read(message) {
            tracing::trace!(error = %e, "viewer datagram rejected");
        }
    }

    /// Everything but media: take what the core has to send (into `outgoing`, sent by the
    /// caller once the lock is released), its events and inbound RTCP.
    fn service(&self, core: &mut Core, outgoing: &mut Vec<TaggedBytesMut>) {
        while let Some(out) = core.pc.poll_write() {
            outgoing.push(out);
        }
        while let Some(event) = core.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    self.states.connection.send_replace(state);
                }
                RTCPeerConnectionEvent::OnIceGatheringStateChangeEvent(state) => {
                    self.states.gathering.send_replace(state);
                }
                _ => {}
            }
        }
        while let Some(message) = core.pc.poll_read() {
            // Only keyframe requests reach here (see `feedback::KeyframeRequestForwarder`);
            // NACKs and receiver reports are consumed by the interceptors.
            if let RTCMessage::RtcpPacket(_, packets) = message.message
                && packets.iter().any(|p| is_keyframe_request(p.as_ref()))
            {
                (self.on_keyframe_request)();
            }
        }
    }

    /// Send what the driver took out of the core, as one batch, without holding its lock:
    /// retransmissions and handshakes never keep the forwarding path waiting.
    fn send_all(&self, outgoing: &mut Vec<TaggedBytesMut>) {
        if outgoing.is_empty() {
            return;
        }
        let _scope = self.batch.then(Scope::open);
        for out in outgoing.drain(..) {
            self.send(&out);
        }
    }
}

/// Our host candidate on `addr`: UDP, or passive TCP (`network` "tcp").
fn host_candidate(addr: SocketAddr, network: &str) -> Result<RTCIceCandidateInit, SfuError> {
    let err = |e: &dyn std::fmt::Display| SfuError::WebRtc(format!("host candidate: {e}"));
    let tcp_type = match network {
        "tcp" => rtc::ice::tcp_type::TcpType::Passive,
        _ => rtc::ice::tcp_type::TcpType::Unspecified,
    };
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: network.to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        tcp_type,
    }
    .new_candidate_host()
    .map_err(|e| err(&e))?;
    RTCIceCandidate::from(&candidate)
        .to_json()
        .map_err(|e| err(&e))
}

/// A viewer's driver: reads its sockets and runs its core's timers until it is closed.
async fn drive(conn: Arc<DirectViewer>) {
    let mut buf = vec![0u8; RECV_BUF_LEN];
    let mut outgoing = Vec::new();
    loop {
        if conn.panic_requested.load(Ordering::Relaxed) {
            panic!("fault injected into a viewer's connection driver");
        }
        let deadline = {
            let mut core = conn.core.lock();
            if core.closed {
                return;
            }
            conn.service(&mut core, &mut outgoing);
            let cap = Instant::now() + MAX_SLEEP;
            core.pc.poll_timeout().map_or(cap, |due| due.min(cap))
        };
        conn.send_all(&mut outgoing);
        tokio::select! {
            biased;
            _ = conn.wake.notified() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = conn.core.lock().pc.handle_timeout(Instant::now());
            }
            (local_addr, received) = std::future::poll_fn(|cx| recv_any(&conn.sockets, cx, &mut buf)) => {
                match received {
                    Ok((len, peer_addr)) => {
                        let transport = TransportContext {
                            local_addr,
                            peer_addr,
                            ecn: None,
                            transport_protocol: TransportProtocol::UDP,
                        };
                        conn.receive(transport, &buf[..len]);
                    }
                    // ICMP errors surface here (port unreachable after a client left); the
                    // ICE timers decide when the connection is gone.
                    Err(e) => tracing::trace!(error = %e, "viewer socket receive error"),
                }
            }
        }
    }
}

/// Take the connections one listening address of the shared TCP port routes to `viewer`.
async fn take_connections(viewer: Weak<DirectViewer>, inbox: Arc<TcpInbox>) {
    loop {
        let conn = inbox.next().await;
        let Some(viewer) = viewer.upgrade() else {
            return;
        };
        viewer.attach_tcp(conn);
    }
}

/// Read one ICE-TCP connection's frames into the viewer's core until it closes.
async fn read_tcp(
    viewer: Weak<DirectViewer>,
    mut stream: tokio::net::tcp::OwnedReadHalf,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    first: Vec<u8>,
) {
    use tokio::io::AsyncReadExt;
    let transport = TransportContext {
        local_addr,
        peer_addr,
        ecn: None,
        transport_protocol: TransportProtocol::TCP,
    };
    let mut decoder = rtc::shared::tcp_framing::TcpFrameDecoder::new();
    decoder.extend_from_slice(&first);
    let mut buf = vec![0u8; RECV_BUF_LEN];
    loop {
        {
            let Some(viewer) = viewer.upgrade() else {
                return;
            };
            let mut any = false;
            while let Some(datagram) = decoder.next_packet() {
                viewer.receive(transport, &datagram);
                any = true;
            }
            if any {
                viewer.wake.notify_one();
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => decoder.extend_from_slice(&buf[..n]),
        }
    }
    // The client closed: forget the link (ICE decides whether the viewer is gone).
    if let Some(viewer) = viewer.upgrade() {
        viewer.tcp.lock().links.retain(|l| l.peer != peer_addr);
    }
}

/// The first datagram ready on any of the sockets: (socket's local address, (length, sender)).
fn recv_any(
    sockets: &[(SocketAddr, Arc<dyn AsyncUdpSocket>)],
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<(SocketAddr, std::io::Result<(usize, SocketAddr)>)> {
    for (local, socket) in sockets {
        let mut meta = [RecvMeta::default()];
        let mut bufs = [IoSliceMut::new(buf)];
        match socket.poll_recv(cx, &mut bufs, &mut meta) {
            Poll::Ready(Ok(_)) => return Poll::Ready((*local, Ok((meta[0].len, meta[0].addr)))),
            Poll::Ready(Err(e)) => return Poll::Ready((*local, Err(e))),
            Poll::Pending => {}
        }
    }
    Poll::Pending
}
