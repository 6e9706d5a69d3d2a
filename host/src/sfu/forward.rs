//! The media hot path: one publisher track fanned out to many viewer tracks.
//!
//! The publisher's reader task calls [`TrackHub::forward_burst`] with the packets it found
//! queued. It loads the current viewer list (lock-free), rewrites the few header fields each
//! viewer needs, and hands each viewer the burst without waiting: a direct viewer encrypts and
//! sends it in the same call ([`DirectViewer::send_burst`]), a webrtc-rs viewer gets it offered
//! to its driver's queue. What cannot go now (a full socket buffer or queue) is that viewer's
//! loss (NACK/keyframes recover it), so one slow or dead viewer never stalls the publisher or
//! anyone else. Nothing here knows about plugins or HTTP.

use super::direct::DirectViewer;
use arc_swap::ArcSwap;
use futures::FutureExt;
use parking_lot::Mutex;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::Registry;

/// Payload type that means "this viewer did not negotiate the codec; skip".
const NO_PT: u8 = 0xff;

/// Maps a publisher payload type to the payload type a viewer negotiated for the same codec.
#[derive(Clone)]
pub struct PtMap([u8; 128]);

impl PtMap {
    /// Pair codecs by MIME type, preferring an identical fmtp line (H.264 profiles, VP9
    /// profiles) and falling back to the first codec of the same MIME type.
    pub fn build(source: &[RTCRtpCodecParameters], viewer: &[RTCRtpCodecParameters]) -> PtMap {
        let mut map = [NO_PT; 128];
        for s in source {
            if s.payload_type >= 128 || is_repair(&s.rtp_codec.mime_type) {
                continue;
            }
            let same_mime = |v: &&RTCRtpCodecParameters| {
                v.rtp_codec
                    .mime_type
                    .eq_ignore_ascii_case(&s.rtp_codec.mime_type)
            };
            let chosen = viewer
                .iter()
                .filter(same_mime)
                .find(|v| v.rtp_codec.sdp_fmtp_line == s.rtp_codec.sdp_fmtp_line)
                .or_else(|| viewer.iter().find(same_mime));
            if let Some(v) = chosen {
                map[s.payload_type as usize] = v.payload_type;
            }
        }
        PtMap(map)
    }

    #[inline]
    fn get(&self, pt: u8) -> u8 {
        self.0.get(pt as usize).copied().unwrap_or(NO_PT)
    }
}

fn is_repair(mime: &str) -> bool {
    let m = mime.to_ascii_lowercase();
    m.ends_with("/rtx") || m.ends_with("/ulpfec") || m.ends_with("/flexfec") || m.ends_with("/red")
}

/// Where a viewer's packets go.
#[derive(Clone)]
pub enum Output {
    /// A webrtc-rs track: each packet is queued to the connection's driver task.
    Track(Arc<TrackLocalStaticRTP>),
    /// A sender of a [`DirectViewer`]: bursts are encrypted and sent right here.
    Direct(Arc<DirectViewer>, RTCRtpSenderId),
}

/// One viewer's end of a hub: where its packets go and the header values it needs.
pub struct ViewerSink {
    pub session_id: u64,
    output: Output,
    ssrc: u32,
    viewer_codecs: Vec<RTCRtpCodecParameters>,
    pt_map: PtMap,
    pub dropped: AtomicU64,
}

impl ViewerSink {
    pub fn new(
        session_id: u64,
        output: Output,
        ssrc: u32,
        viewer_codecs: Vec<RTCRtpCodecParameters>,
    ) -> Self {
        ViewerSink {
            session_id,
            output,
            ssrc,
            viewer_codecs,
            pt_map: PtMap([NO_PT; 128]),
            dropped: AtomicU64::new(0),
        }
    }

    fn with_source(&self, source: &[RTCRtpCodecParameters]) -> ViewerSink {
        ViewerSink {
            session_id: self.session_id,
            output: self.output.clone(),
            ssrc: self.ssrc,
            viewer_codecs: self.viewer_codecs.clone(),
            pt_map: PtMap::build(source, &self.viewer_codecs),
            dropped: AtomicU64::new(self.dropped.load(Ordering::Relaxed)),
        }
    }

    /// The packet as this viewer receives it, or `None` if it did not negotiate the codec.
    #[inline]
    fn rewrite(&self, packet: &rtp::Packet) -> Option<rtp::Packet> {
        let pt = self.pt_map.get(packet.header.payload_type);
        if pt == NO_PT {
            return None;
        }
        let mut out = packet.clone();
        out.header.ssrc = self.ssrc;
        out.header.payload_type = pt;
        Some(out)
    }

    /// Offer a burst without waiting; returns how many packets were accepted.
    #[inline]
    fn offer(&self, packets: &[rtp::Packet]) -> u64 {
        let (sent, refused) = match &self.output {
            Output::Direct(conn, sender) => {
                conn.send_burst(*sender, packets.iter().filter_map(|p| self.rewrite(p)))
            }
            Output::Track(track) => {
                let (mut sent, mut refused) = (0, 0);
                for out in packets.iter().filter_map(|p| self.rewrite(p)) {
                    // `write_rtp` only awaits when the connection's driver queue is full;
                    // polling it once and dropping the future on `Pending` drops the packet
                    // instead of blocking.
                    match track.write_rtp(out).now_or_never() {
                        Some(Ok(())) => sent += 1,
                        _ => refused += 1,
                    }
                }
                (sent, refused)
            }
        };
        if refused > 0 {
            self.dropped.fetch_add(refused, Ordering::Relaxed);
        }
        sent
    }
}

/// Keeps sequence numbers and timestamps continuous for viewers when the publisher changes
/// (a reconnecting publisher starts at random values; viewers must not notice).
#[derive(Default)]
struct Continuity {
    source_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    last_at: Option<Instant>,
    clock_rate: u32,
}

impl Continuity {
    #[inline]
    fn apply(&mut self, header: &mut rtp::header::Header) {
        if self.source_ssrc != Some(header.ssrc) {
            if let Some(at) = self.last_at {
                // Continue one step after the last packet sent, advancing the clock by the
                // wall time that passed so jitter buffers see a plausible gap.
                let elapsed_ticks =
                    (at.elapsed().as_secs_f64() * self.clock_rate as f64).max(1.0) as u32;
                self.seq_offset = self
                    .last_seq
                    .wrapping_add(1)
                    .wrapping_sub(header.sequence_number);
                self.ts_offset = self
                    .last_ts
                    .wrapping_add(elapsed_ticks)
                    .wrapping_sub(header.timestamp);
            }
            self.source_ssrc = Some(header.ssrc);
        }
        header.sequence_number = header.sequence_number.wrapping_add(self.seq_offset);
        header.timestamp = header.timestamp.wrapping_add(self.ts_offset);
        self.last_seq = header.sequence_number;
        self.last_ts = header.timestamp;
        self.last_at = Some(Instant::now());
    }
}

/// The current publisher track feeding a hub.
struct Source {
    track: Arc<dyn TrackRemote>,
    media_ssrc: u32,
}

/// Counters a hub keeps; read by stats endpoints and tests.
#[derive(Default)]
pub struct HubStats {
    pub received_packets: AtomicU64,
    pub forwarded_packets: AtomicU64,
    pub keyframe_requests: AtomicU64,
}

/// One media kind (audio or video) of a room: a source and its viewers.
pub struct TrackHub {
    viewers: ArcSwap<Vec<Arc<ViewerSink>>>,
    source_codecs: ArcSwap<Vec<RTCRtpCodecParameters>>,
    source: Mutex<Option<Source>>,
    continuity: Mutex<Continuity>,
    keyframe_interval: Duration,
    keyframe_throttle: Mutex<KeyframeThrottle>,
    pub stats: HubStats,
}

impl TrackHub {
    pub fn new(keyframe_interval: Duration) -> Self {
        TrackHub {
            viewers: ArcSwap::from_pointee(Vec::new()),
            source_codecs: ArcSwap::from_pointee(Vec::new()),
            source: Mutex::new(None),
            continuity: Mutex::new(Continuity::default()),
            keyframe_interval,
            keyframe_throttle: Mutex::new(KeyframeThrottle::default()),
            stats: HubStats::default(),
        }
    }

    /// Forward one RTP packet to every viewer. See [`TrackHub::forward_burst`].
    #[inline]
    pub fn forward(&self, mut packet: rtp::Packet) {
        self.forward_burst(std::slice::from_mut(&mut packet));
    }

    /// Called by the publisher's reader with every packet it found queued (usually one, or
    /// the few packets of a video frame). The hot path.
    ///
    /// Headers are prepared once per packet; then each viewer is handed the whole burst in a
    /// row, so its connection's driver is woken once per burst rather than once per packet.
    pub fn forward_burst(&self, packets: &mut [rtp::Packet]) {
        if packets.is_empty() {
            return;
        }
        self.stats
            .received_packets
            .fetch_add(packets.len() as u64, Ordering::Relaxed);
        {
            let mut continuity = self.continuity.lock();
            for packet in packets.iter_mut() {
                // Header extension ids are negotiated per connection; the publisher's ids
                // mean nothing to viewers, so strip them once here rather than per viewer.
                if packet.header.extension {
                    packet.header.extension = false;
                    packet.header.extensions.clear();
                    packet.header.extension_profile = 0;
                }
                continuity.apply(&mut packet.header);
            }
        }
        let viewers = self.viewers.load();
        let mut sent = 0;
        for viewer in viewers.iter() {
            sent += viewer.offer(packets);
        }
        self.stats
            .forwarded_packets
            .fetch_add(sent, Ordering::Relaxed);
    }

    /// A publisher track starts feeding this hub (replacing any previous one).
    pub fn attach_source(
        &self,
        track: Arc<dyn TrackRemote>,
        media_ssrc: u32,
        codecs: Vec<RTCRtpCodecParameters>,
    ) {
        self.continuity.lock().clock_rate = codecs
            .first()
            .map(|c| c.rtp_codec.clock_rate)
            .unwrap_or(90_000);
        *self.source.lock() = Some(Source { track, media_ssrc });
        self.source_codecs.store(Arc::new(codecs));
        self.remap_viewers();
    }

    /// The publisher track stopped; only clears it if it is still the current one.
    pub fn detach_source(&self, track: &Arc<dyn TrackRemote>) {
        let mut source = self.source.lock();
        if source
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.track, track))
        {
            *source = None;
        }
    }

    pub fn has_source(&self) -> bool {
        self.source.lock().is_some()
    }

    pub fn add_viewer(&self, sink: ViewerSink) {
        let sink = Arc::new(sink.with_source(&self.source_codecs.load()));
        self.viewers.rcu(|list| {
            let mut next = Vec::with_capacity(list.len() + 1);
            next.extend(
                list.iter()
                    .filter(|v| v.session_id != sink.session_id)
                    .cloned(),
            );
            next.push(sink.clone());
            next
        });
    }

    pub fn remove_viewer(&self, session_id: u64) {
        self.viewers.rcu(|list| {
            list.iter()
                .filter(|v| v.session_id != session_id)
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    pub fn viewer_count(&self) -> usize {
        self.viewers.load().len()
    }

    fn remap_viewers(&self) {
        let codecs = self.source_codecs.load();
        self.viewers.rcu(|list| {
            list.iter()
                .map(|v| Arc::new(v.with_source(&codecs)))
                .collect::<Vec<_>>()
        });
    }

    /// Ask the publisher for a keyframe (PLI), at most once per `keyframe_interval`.
    ///
    /// A request inside the interval is not dropped but deferred to the interval's end, so a
    /// viewer joining just after another still gets its keyframe promptly.
    pub fn request_keyframe(self: &Arc<Self>) {
        let wait = {
            let mut throttle = self.keyframe_throttle.lock();
            if throttle.deferred {
                return;
            }
            match throttle.last {
                Some(t) if t.elapsed() < self.keyframe_interval => {
                    throttle.deferred = true;
                    self.keyframe_interval - t.elapsed()
                }
                _ => {
                    throttle.last = Some(Instant::now());
                    Duration::ZERO
                }
            }
        };
        let hub = self.clone();
        tokio::spawn(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                let mut throttle = hub.keyframe_throttle.lock();
                throttle.deferred = false;
                throttle.last = Some(Instant::now());
            }
            hub.send_pli().await;
        });
    }

    async fn send_pli(&self) {
        let Some((track, media_ssrc)) = self
            .source
            .lock()
            .as_ref()
            .map(|s| (s.track.clone(), s.media_ssrc))
        else {
            return;
        };
        self.stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
            tracing::debug!(error = %e, "keyframe request not sent");
        }
    }
}

#[derive(Default)]
struct KeyframeThrottle {
    last: Option<Instant>,
    deferred: bool,
}

/// Whether an RTCP packet asks for a keyframe (PLI or FIR).
pub fn is_keyframe_request(packet: &dyn rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Where [`KeyframeRequestForwarder`] sits in the interceptor chain: application-most, past every
/// stock interceptor (the jitter buffer, at 13_000, is the last named slot), so they have all
/// seen the inbound RTCP first. `Registry::build` still appends its terminus after it.
pub const KEYFRAME_FORWARDER_SLOT: usize = 14_000;

/// Add the [`KeyframeRequestForwarder`] to an interceptor registry. Every peer connection
/// whose local tracks must react to PLI/FIR (the SFU's, and the publishing client's) needs
/// it: without it `TrackLocal::poll` never yields `OnRtcpPacket`.
pub fn with_keyframe_forwarding(registry: Registry) -> Registry {
    registry.with(
        Slot::from(KEYFRAME_FORWARDER_SLOT),
        KeyframeRequestForwarder::default(),
    )
}

/// Lets inbound keyframe requests (PLI/FIR) through to the application.
///
/// webrtc-rs 0.21 ends inbound RTCP inside the interceptor chain: `Registry::build` appends a
/// terminus (`rtc_interceptor::NoopInterceptor`) that drops every RTCP packet not carrying
/// `Attribute::DeliverToApplication`, so on a default chain `TrackLocalEvent::OnRtcpPacket` (and
/// `TrackRemoteEvent::OnRtcpPacket`) never fire even though the packets arrive. This interceptor
/// copies the keyframe requests out of each inbound RTCP compound, one marked packet per media
/// SSRC (the endpoint routes a packet to a track by the first destination SSRC it names), and
/// passes the original on unmarked so the terminus treats it exactly as before. Receiver
/// reports, NACKs and transport feedback stay with the interceptors that act on them.
#[derive(Default)]
pub struct KeyframeRequestForwarder {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let mut requests: Vec<(u32, Vec<Box<dyn rtcp::Packet>>)> = Vec::new();
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets.iter().filter(|p| is_keyframe_request(p.as_ref())) {
                let Some(ssrc) = packet.destination_ssrc().first().copied() else {
                    continue;
                };
                match requests.iter_mut().find(|(s, _)| *s == ssrc) {
                    Some((_, group)) => group.push(packet.clone()),
                    None => requests.push((ssrc, vec![packet.clone()])),
                }
            }
        }
        let (now, transport) = (msg.now, msg.transport);
        self.reads.push_back(msg);
        for (_, group) in requests {
            self.reads.push_back(TaggedPacket {
                now,
                transport,
                message: rtc::interceptor::AttributedPacket::new(Packet::Rtcp(group))
                    .with(Attribute::DeliverToApplication),
            });
        }
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;

    fn codec(mime: &str, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: mime.into(),
                clock_rate: 90000,
                sdp_fmtp_line: fmtp.into(),
                ..Default::default()
            },
            payload_type: pt,
        }
    }

    #[test]
    fn pt_map_prefers_matching_fmtp() {
        let source = [
            codec("video/VP8", "", 96),
            codec(
                "video/H264",
                "profile-level-id=42e01f;packetization-mode=1",
                102,
            ),
            codec("video/rtx", "apt=96", 97),
        ];
        let viewer = [
            codec(
                "video/H264",
                "profile-level-id=42001f;packetization-mode=1",
                100,
            ),
            codec(
                "video/H264",
                "profile-level-id=42e01f;packetization-mode=1",
                106,
            ),
            codec("video/vp8", "", 120),
        ];
        let map = PtMap::build(&source, &viewer);
        assert_eq!(map.get(96), 120);
        assert_eq!(map.get(102), 106);
        assert_eq!(map.get(97), NO_PT, "repair streams are not forwarded");
        assert_eq!(map.get(200), NO_PT);
    }

    /// Inbound RTCP ends in the chain's terminus unless marked; the forwarder marks exactly the
    /// keyframe requests, split per media SSRC so each routes to its own track.
    #[test]
    fn keyframe_requests_pass_the_chain_and_nothing_else_does() {
        use rtc::interceptor::AttributedPacket;
        use rtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;
        use rtc::rtcp::receiver_report::ReceiverReport;

        let mut chain = with_keyframe_forwarding(Registry::new()).build();
        let feed = |chain: &mut dyn Interceptor, packets: Vec<Box<dyn rtcp::Packet>>| {
            chain
                .handle_read(TaggedPacket {
                    now: Instant::now(),
                    transport: Default::default(),
                    message: AttributedPacket::new(Packet::Rtcp(packets)),
                })
                .unwrap();
            std::iter::from_fn(|| chain.poll_read()).collect::<Vec<_>>()
        };

        let out = feed(&mut chain, vec![Box::new(ReceiverReport::default())]);
        assert!(
            out.is_empty(),
            "receiver reports stay with the interceptors"
        );

        // A compound whose first packet names no SSRC: routing by it would drop the PLI.
        let out = feed(
            &mut chain,
            vec![
                Box::new(ReceiverReport::default()),
                Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: 7,
                }),
                Box::new(FullIntraRequest {
                    sender_ssrc: 0,
                    media_ssrc: 0,
                    fir: vec![FirEntry {
                        ssrc: 9,
                        sequence_number: 1,
                    }],
                }),
            ],
        );
        let delivered: Vec<(u32, usize)> = out
            .iter()
            .map(|p| {
                assert!(p.message.has(&Attribute::DeliverToApplication));
                let Packet::Rtcp(packets) = &p.message.packet else {
                    panic!("RTCP in, RTCP out");
                };
                assert!(packets.iter().all(|p| is_keyframe_request(p.as_ref())));
                (packets[0].destination_ssrc()[0], packets.len())
            })
            .collect();
        assert_eq!(delivered, vec![(7, 1), (9, 1)]);
    }

    #[test]
    fn continuity_across_publisher_switch() {
        let mut c = Continuity {
            clock_rate: 90000,
            ..Default::default()
        };
        let mut h = rtp::header::Header {
            ssrc: 1,
            sequence_number: 100,
            timestamp: 1000,
            ..Default::default()
        };
        c.apply(&mut h);
        assert_eq!((h.sequence_number, h.timestamp), (100, 1000));
        let mut h2 = rtp::header::Header {
            ssrc: 2,
            sequence_number: 60000,
            timestamp: 5,
            ..Default::default()
        };
        c.apply(&mut h2);
        assert_eq!(h2.sequence_number, 101);
        assert!(h2.timestamp > 1000);
        let mut h3 = rtp::header::Header {
            ssrc: 2,
            sequence_number: 60001,
            timestamp: 3005,
            ..Default::default()
        };
        c.apply(&mut h3);
        assert_eq!(h3.sequence_number, 102);
        assert_eq!(h3.timestamp, h2.timestamp + 3000);
    }
}
