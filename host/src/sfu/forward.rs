//! The media hot path: one publisher stream fanned out to many viewers (and media taps).
//!
//! The publisher's reader task calls [`TrackHub::forward_burst`] with the packets it found
//! queued. The hub keeps the one stream viewers receive (see [`layers`](super::layers)), loads
//! the current viewer list (lock-free), rewrites the few header fields each viewer needs, and
//! hands each viewer the burst without waiting: a direct viewer encrypts and
//! sends it in the same call ([`DirectViewer::send_burst`]), a webrtc-rs viewer gets it offered
//! to its driver's queue. What cannot go now (a full socket buffer or queue) is that viewer's
//! loss (NACK/keyframes recover it), so one slow or dead viewer never stalls the publisher or
//! anyone else. Nothing here knows about plugins or HTTP.

use super::codec::CodecTable;
use super::direct::DirectViewer;
use super::layers::{FeedId, Selector, Wants};
use super::state::{PeerStates, panic_message};
use super::tap::{TapSink, Tapped};
use arc_swap::ArcSwap;
use futures::FutureExt;
use parking_lot::Mutex;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;

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
    /// The viewer's connection state: a panic while serving it fails only this viewer.
    states: Arc<PeerStates>,
    ssrc: u32,
    viewer_codecs: Vec<RTCRtpCodecParameters>,
    pt_map: PtMap,
    pub dropped: AtomicU64,
    faulted: AtomicBool,
}

impl ViewerSink {
    pub fn new(
        session_id: u64,
        output: Output,
        states: Arc<PeerStates>,
        ssrc: u32,
        viewer_codecs: Vec<RTCRtpCodecParameters>,
    ) -> Self {
        ViewerSink {
            session_id,
            output,
            states,
            ssrc,
            viewer_codecs,
            pt_map: PtMap([NO_PT; 128]),
            dropped: AtomicU64::new(0),
            faulted: AtomicBool::new(false),
        }
    }

    fn with_source(&self, source: &[RTCRtpCodecParameters]) -> ViewerSink {
        ViewerSink {
            session_id: self.session_id,
            output: self.output.clone(),
            states: self.states.clone(),
            ssrc: self.ssrc,
            viewer_codecs: self.viewer_codecs.clone(),
            pt_map: PtMap::build(source, &self.viewer_codecs),
            dropped: AtomicU64::new(self.dropped.load(Ordering::Relaxed)),
            faulted: AtomicBool::new(self.faulted.load(Ordering::Relaxed)),
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

    /// Offer a burst without waiting; returns how many packets were accepted. A panic while
    /// serving this viewer fails its connection (its session ends) and nobody else's.
    #[inline]
    fn offer(&self, packets: &[rtp::Packet]) -> u64 {
        if self.faulted.load(Ordering::Relaxed) {
            return 0;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.send(packets))) {
            Ok(sent) => sent,
            Err(panic) => {
                self.faulted.store(true, Ordering::Relaxed);
                self.states.fault(format!(
                    "forwarding to the viewer panicked: {}",
                    panic_message(&*panic)
                ));
                0
            }
        }
    }

    #[inline]
    fn send(&self, packets: &[rtp::Packet]) -> u64 {
        let mut bytes = 0u64;
        let rewritten = packets.iter().filter_map(|p| {
            let out = self.rewrite(p)?;
            bytes += out.payload.len() as u64;
            Some(out)
        });
        let (sent, refused) = match &self.output {
            Output::Direct(conn, sender) => conn.send_burst(*sender, rewritten),
            Output::Track(track) => {
                let (mut sent, mut refused) = (0, 0);
                for out in rewritten {
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
            self.states
                .media
                .dropped
                .fetch_add(refused, Ordering::Relaxed);
        }
        self.states.media.add(sent, bytes);
        sent
    }
}

/// Counters a hub keeps; read by stats endpoints and tests.
#[derive(Default)]
pub struct HubStats {
    pub received_packets: AtomicU64,
    pub forwarded_packets: AtomicU64,
    pub keyframe_requests: AtomicU64,
    /// Keyframe requests (PLI/FIR) viewers sent (counted where they arrive, not here).
    pub viewer_keyframe_requests: AtomicU64,
    /// Packets of the publisher's other streams (simulcast layers, tracks) not forwarded.
    pub unselected_packets: AtomicU64,
    /// Times viewers were moved to another stream of the publisher.
    pub stream_switches: AtomicU64,
}

/// The stream viewers currently receive, for stats and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentStream {
    pub ssrc: u32,
    pub rid: Option<String>,
    /// Bytes per second measured on it.
    pub rate: u64,
}

/// A publisher track feeding a hub, and its negotiated codecs.
type FeedTrack = (FeedId, Arc<dyn TrackRemote>, Vec<RTCRtpCodecParameters>);

/// One media kind (audio or video) of a room: the publisher's streams and the viewers.
pub struct TrackHub {
    viewers: ArcSwap<Vec<Arc<ViewerSink>>>,
    taps: ArcSwap<Vec<Arc<TapSink>>>,
    /// Codecs of every feeding track, merged (viewers map payload types through them).
    source_codecs: ArcSwap<Vec<RTCRtpCodecParameters>>,
    selector: Mutex<Selector>,
    /// The publisher tracks, for keyframe requests.
    feeds: Mutex<Vec<FeedTrack>>,
    keyframe_interval: Duration,
    keyframe_throttle: Mutex<KeyframeThrottle>,
    pub stats: HubStats,
}

impl TrackHub {
    pub fn new(keyframe_interval: Duration) -> Self {
        TrackHub {
            viewers: ArcSwap::from_pointee(Vec::new()),
            taps: ArcSwap::from_pointee(Vec::new()),
            source_codecs: ArcSwap::from_pointee(Vec::new()),
            selector: Mutex::new(Selector::default()),
            feeds: Mutex::new(Vec::new()),
            keyframe_interval,
            keyframe_throttle: Mutex::new(KeyframeThrottle::default()),
            stats: HubStats::default(),
        }
    }

    /// Forward one RTP packet of `feed`. See [`TrackHub::forward_burst`].
    pub fn forward(self: &Arc<Self>, feed: FeedId, packet: rtp::Packet) {
        let mut burst = vec![packet];
        self.forward_burst(feed, &mut burst);
    }

    /// Called by the publisher's reader with every packet of `feed` it found queued (usually
    /// one, or the few packets of a video frame). The hot path.
    ///
    /// Under the hub's lock, once per packet: keep only the stream viewers receive (see
    /// [`layers`](super::layers)), strip header extensions and rewrite sequence numbers and
    /// timestamps. Then, lock-free, each viewer is handed the whole burst in a row, so its
    /// connection is woken (or its datagrams sent) once per burst rather than once per packet,
    /// and each media tap is offered a copy.
    pub fn forward_burst(self: &Arc<Self>, feed: FeedId, packets: &mut Vec<rtp::Packet>) {
        if packets.is_empty() {
            return;
        }
        let received = packets.len() as u64;
        self.stats
            .received_packets
            .fetch_add(received, Ordering::Relaxed);
        let now = Instant::now();
        let mut wants = Wants::default();
        {
            let mut selector = self.selector.lock();
            packets.retain_mut(|packet| {
                // Header extension ids are negotiated per connection; the publisher's ids
                // mean nothing to viewers, so strip them once here rather than per viewer.
                if packet.header.extension {
                    packet.header.extension = false;
                    packet.header.extensions.clear();
                    packet.header.extension_profile = 0;
                }
                selector.admit(feed, packet, now, &mut wants)
            });
            selector.reconsider(now, &mut wants);
        }
        let unselected = received - packets.len() as u64;
        if unselected > 0 {
            self.stats
                .unselected_packets
                .fetch_add(unselected, Ordering::Relaxed);
        }
        if wants.switched {
            self.stats.stream_switches.fetch_add(1, Ordering::Relaxed);
        }
        if wants.keyframe.is_some() {
            self.request_keyframe();
        }
        if packets.is_empty() {
            return;
        }
        let viewers = self.viewers.load();
        let mut sent = 0;
        for viewer in viewers.iter() {
            sent += viewer.offer(packets);
        }
        self.stats
            .forwarded_packets
            .fetch_add(sent, Ordering::Relaxed);
        for tap in self.taps.load().iter() {
            tap.offer(packets);
        }
    }

    /// A publisher track (session `publisher`) starts feeding this hub. A track of a new
    /// publisher replaces the previous publisher's at once.
    pub fn attach_feed(
        &self,
        track: Arc<dyn TrackRemote>,
        publisher: u64,
        codecs: Vec<RTCRtpCodecParameters>,
    ) -> FeedId {
        let id = {
            let mut selector = self.selector.lock();
            if !selector.has_feeds() {
                selector.continuity.clock_rate = codecs
                    .first()
                    .map(|c| c.rtp_codec.clock_rate)
                    .unwrap_or(90_000);
            }
            selector.attach(publisher, CodecTable::new(&codecs))
        };
        let mut feeds = self.feeds.lock();
        feeds.retain(|(f, _, _)| self.selector.lock().has_feed(*f));
        feeds.push((id, track, codecs));
        self.publish_codecs(&feeds);
        id
    }

    /// Name one of a feed's streams by the RID it was announced with (simulcast).
    pub fn name_stream(&self, feed: FeedId, ssrc: u32, rid: String) {
        self.selector.lock().name(feed, ssrc, rid, Instant::now());
    }

    /// A publisher track stopped.
    pub fn detach_feed(&self, feed: FeedId) {
        self.selector.lock().detach(feed);
        let mut feeds = self.feeds.lock();
        feeds.retain(|(f, _, _)| *f != feed);
        self.publish_codecs(&feeds);
    }

    fn publish_codecs(&self, feeds: &[FeedTrack]) {
        let mut merged: Vec<RTCRtpCodecParameters> = Vec::new();
        for (_, _, codecs) in feeds {
            for c in codecs {
                if !merged.iter().any(|m| m.payload_type == c.payload_type) {
                    merged.push(c.clone());
                }
            }
        }
        if merged.is_empty() {
            return; // keep the last mapping for viewers until another publisher arrives
        }
        self.source_codecs.store(Arc::new(merged));
        self.remap_viewers();
    }

    pub fn has_source(&self) -> bool {
        self.selector.lock().has_feeds()
    }

    /// The stream viewers receive now.
    pub fn current_stream(&self) -> Option<CurrentStream> {
        let selector = self.selector.lock();
        let (feed, ssrc) = selector.current()?;
        let source = selector
            .sources
            .iter()
            .find(|s| s.feed == feed && s.ssrc == ssrc)?;
        Some(CurrentStream {
            ssrc,
            rid: source.rid.clone(),
            rate: source.rate,
        })
    }

    /// The codecs (payload types) of what this hub forwards, as the publisher negotiated them.
    pub fn source_codecs(&self) -> Arc<Vec<RTCRtpCodecParameters>> {
        self.source_codecs.load_full()
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

    /// Ask the publisher for a keyframe (PLI) on the stream viewers receive (or are about to
    /// move to), at most once per `keyframe_interval`.
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
        let Some((feed, media_ssrc)) = self.selector.lock().keyframe_source() else {
            return;
        };
        let Some(track) = self
            .feeds
            .lock()
            .iter()
            .find(|(f, _, _)| *f == feed)
            .map(|(_, t, _)| t.clone())
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

impl Tapped for TrackHub {
    /// Start copying what viewers receive to `tap` (see [`tap`](super::tap)).
    fn add_tap(&self, tap: Arc<TapSink>) {
        self.taps.rcu(|list| {
            let mut next = (**list).clone();
            next.push(tap.clone());
            next
        });
    }

    fn remove_tap(&self, tap: &Arc<TapSink>) {
        self.taps.rcu(|list| {
            list.iter()
                .filter(|t| !Arc::ptr_eq(t, tap))
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    fn source_codecs(&self) -> Arc<Vec<RTCRtpCodecParameters>> {
        TrackHub::source_codecs(self)
    }
}

#[derive(Default)]
struct KeyframeThrottle {
    last: Option<Instant>,
    deferred: bool,
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
}
