//! Which of a publisher's streams of one kind the viewers receive.
//!
//! A publisher may send several streams of a kind: simulcast layers of one track (three RIDs,
//! each its own SSRC, all arriving through one webrtc-rs track) or several tracks (camera and
//! screen). Viewers get exactly one coherent stream per kind: the [`Selector`] picks a source,
//! drops every other stream's packets, and switches only where the decoder can follow — on a
//! keyframe (see [`codec`](super::codec)) — rewriting sequence numbers and timestamps so the
//! viewer sees one continuous stream ([`Continuity`]).
//!
//! The policy: the first track of the publisher that is flowing, and within it the layer with
//! the highest measured bitrate that is flowing. A layer that stops (the encoder dropped it
//! for bandwidth, the browser disabled it) is left for the best remaining one; when it comes
//! back, viewers move up again. The selector asks for a keyframe on the stream it wants to move
//! to and switches on the first one that arrives.
//!
//! Everything here runs in the publisher's reader under the hub's lock, once per packet, and
//! allocates nothing on the per-packet path (a new stream is registered once).

use super::codec::{CodecTable, MediaCodec};
use rtc::rtp;
use std::time::{Duration, Instant};

/// A stream that sent nothing for this long no longer counts as flowing (20 frames at 30 fps)...
const STALE_AFTER: Duration = Duration::from_millis(600);
/// ...or for this many of its own usual gaps between packets, whichever is longer, so a
/// low-frame-rate stream (a static screen share at 1 fps) does not count as stopping between
/// frames...
const STALE_GAPS: u32 = 4;
/// ...but never longer than this.
const STALE_MAX: Duration = Duration::from_secs(3);
/// Bitrates are measured over windows of this length.
const RATE_WINDOW: Duration = Duration::from_millis(500);
/// A higher layer must measure this much above the current one before viewers move to it, so
/// two layers with similar bitrates do not make viewers flap between them.
const UPGRADE_MARGIN: f64 = 1.25;
/// While a switch waits for its keyframe, the request is repeated this often.
const KEYFRAME_RETRY: Duration = Duration::from_millis(1000);

/// One publisher track feeding a hub: all of its simulcast layers arrive through it.
pub type FeedId = u64;

/// Keeps sequence numbers and timestamps continuous for viewers when the source changes
/// (another layer, a reconnecting publisher that starts at random values).
#[derive(Default)]
pub struct Continuity {
    source_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    last_at: Option<Instant>,
    pub clock_rate: u32,
}

impl Continuity {
    #[inline]
    pub fn apply(&mut self, header: &mut rtp::header::Header, now: Instant) {
        if self.source_ssrc != Some(header.ssrc) {
            if let Some(at) = self.last_at {
                // Continue one step after the last packet sent, advancing the clock by the
                // wall time that passed so jitter buffers see a plausible gap.
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                let elapsed_ticks = (elapsed * self.clock_rate as f64).max(1.0) as u32;
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
        // A late packet of the current stream must not move the clock backwards.
        let ahead = header.sequence_number.wrapping_sub(self.last_seq);
        if ahead < 0x8000 || self.last_at.is_none() {
            self.last_seq = header.sequence_number;
            self.last_ts = header.timestamp;
        }
        self.last_at = Some(now);
    }
}

/// A publisher track feeding the hub.
struct Feed {
    id: FeedId,
    /// The publisher session it belongs to; a new publisher's feeds replace the old ones.
    publisher: u64,
    codecs: CodecTable,
}

/// One stream (SSRC) of a feed: a simulcast layer, or the only stream of a plain track.
pub struct Source {
    pub feed: FeedId,
    pub ssrc: u32,
    /// The RID it was announced with (simulcast), once known.
    pub rid: Option<String>,
    last_seen: Instant,
    window_start: Instant,
    window_bytes: u64,
    window_packets: u32,
    /// Bytes per second over the last complete window.
    pub rate: u64,
    /// How long without a packet before it no longer counts as flowing.
    stale_after: Duration,
}

impl Source {
    fn flowing(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) < self.stale_after
    }

    #[inline]
    fn count(&mut self, bytes: usize, now: Instant) {
        self.last_seen = now;
        self.window_bytes += bytes as u64;
        self.window_packets += 1;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            self.rate = (self.window_bytes as f64 / elapsed.as_secs_f64()) as u64;
            let gap = elapsed / self.window_packets.max(1);
            self.stale_after = (gap * STALE_GAPS).clamp(STALE_AFTER, STALE_MAX);
            self.window_bytes = 0;
            self.window_packets = 0;
            self.window_start = now;
        }
    }
}

/// What the selector wants done outside its lock.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// Ask the publisher for a keyframe on this SSRC (of this feed).
    pub keyframe: Option<(FeedId, u32)>,
    /// Viewers moved to another stream.
    pub switched: bool,
}

/// Chooses the stream viewers receive and rewrites its headers. See the module docs.
#[derive(Default)]
pub struct Selector {
    feeds: Vec<Feed>,
    pub sources: Vec<Source>,
    /// Index into `sources` of the stream viewers receive.
    current: Option<usize>,
    /// The stream viewers move to at its next keyframe, and when that was asked for.
    target: Option<(usize, Instant)>,
    pub continuity: Continuity,
    next_feed: FeedId,
}

impl Selector {
    /// A publisher track starts feeding. A track of another publisher session replaces all
    /// feeds of the previous one (a reconnecting encoder takes over at once).
    pub fn attach(&mut self, publisher: u64, codecs: CodecTable) -> FeedId {
        if self.feeds.iter().any(|f| f.publisher != publisher) {
            let stale: Vec<FeedId> = self
                .feeds
                .iter()
                .filter(|f| f.publisher != publisher)
                .map(|f| f.id)
                .collect();
            for id in stale {
                self.detach(id);
            }
        }
        self.next_feed += 1;
        let id = self.next_feed;
        self.feeds.push(Feed {
            id,
            publisher,
            codecs,
        });
        id
    }

    /// A track stopped: forget it and its streams.
    pub fn detach(&mut self, feed: FeedId) {
        self.feeds.retain(|f| f.id != feed);
        let current = self.current.map(|i| self.sources[i].ssrc_key());
        let target = self.target.map(|(i, at)| (self.sources[i].ssrc_key(), at));
        self.sources.retain(|s| s.feed != feed);
        let find = |sources: &[Source], key: (FeedId, u32)| {
            sources.iter().position(|s| s.ssrc_key() == key)
        };
        self.current = current.and_then(|k| find(&self.sources, k));
        self.target = target.and_then(|(k, at)| find(&self.sources, k).map(|i| (i, at)));
    }

    pub fn has_feeds(&self) -> bool {
        !self.feeds.is_empty()
    }

    pub fn has_feed(&self, feed: FeedId) -> bool {
        self.feeds.iter().any(|f| f.id == feed)
    }

    /// Name a stream by its RID (simulcast), as the publisher's track announced it.
    pub fn name(&mut self, feed: FeedId, ssrc: u32, rid: String, now: Instant) {
        match self
            .sources
            .iter_mut()
            .find(|s| s.ssrc_key() == (feed, ssrc))
        {
            Some(s) => s.rid = Some(rid),
            None => {
                if self.feeds.iter().any(|f| f.id == feed) {
                    let mut s = new_source(feed, ssrc, now);
                    // Not yet flowing: it has sent nothing.
                    s.last_seen = now - STALE_AFTER;
                    s.rid = Some(rid);
                    self.sources.push(s);
                }
            }
        }
    }

    /// The stream viewers receive now, if any: (feed, SSRC).
    pub fn current(&self) -> Option<(FeedId, u32)> {
        self.current.map(|i| self.sources[i].ssrc_key())
    }

    /// Where a keyframe request for viewers should go: the stream they are about to move
    /// to, else the one they receive.
    pub fn keyframe_source(&self) -> Option<(FeedId, u32)> {
        self.target
            .map(|(i, _)| self.sources[i].ssrc_key())
            .or_else(|| self.current())
    }

    /// Decide for one packet of `feed`: `true` to forward it (headers already rewritten).
    #[inline]
    pub fn admit(
        &mut self,
        feed: FeedId,
        packet: &mut rtp::Packet,
        now: Instant,
        wants: &mut Wants,
    ) -> bool {
        let ssrc = packet.header.ssrc;
        let index = match self
            .sources
            .iter()
            .position(|s| s.ssrc_key() == (feed, ssrc))
        {
            Some(i) => i,
            None => {
                // A new stream of a known feed; repair streams and unknown feeds are dropped.
                let Some(f) = self.feeds.iter().find(|f| f.id == feed) else {
                    return false;
                };
                if f.codecs.get(packet.header.payload_type) == MediaCodec::Repair {
                    return false;
                }
                self.sources.push(new_source(feed, ssrc, now));
                self.sources.len() - 1
            }
        };
        self.sources[index].count(packet.payload.len(), now);
        match (self.current, self.target) {
            (None, _) => {
                // The first stream is forwarded at once, as a plain publisher's always was;
                // a better one is switched to at its keyframe.
                self.current = Some(index);
            }
            (Some(c), _) if c == index => {}
            (_, Some((t, _))) if t == index => {
                if self.codec_of(feed, packet).starts_keyframe(&packet.payload) == Some(false) {
                    return false;
                }
                self.current = Some(index);
                self.target = None;
                wants.switched = true;
            }
            _ => return false,
        }
        self.continuity.apply(&mut packet.header, now);
        true
    }

    /// Re-decide which stream viewers should receive; called once per burst.
    pub fn reconsider(&mut self, now: Instant, wants: &mut Wants) {
        let Some(best) = self.best(now) else {
            return;
        };
        match self.current {
            Some(c) if c == best => {
                self.target = None;
            }
            _ => match self.target {
                Some((t, since)) if t == best => {
                    if now.saturating_duration_since(since) >= KEYFRAME_RETRY {
                        self.target = Some((best, now));
                        wants.keyframe = Some(self.sources[best].ssrc_key());
                    }
                }
                _ => {
                    self.target = Some((best, now));
                    wants.keyframe = Some(self.sources[best].ssrc_key());
                }
            },
        }
    }

    /// The stream viewers should receive: the first flowing feed, its best flowing layer.
    fn best(&self, now: Instant) -> Option<usize> {
        let feed = self.feeds.iter().find(|f| {
            self.sources
                .iter()
                .any(|s| s.feed == f.id && s.flowing(now))
        })?;
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if s.feed != feed.id || !s.flowing(now) {
                continue;
            }
            if best.is_none_or(|b| s.rate > self.sources[b].rate) {
                best = Some(i);
            }
        }
        let best = best?;
        // Stay on a flowing current layer of the same feed unless the best is clearly better.
        if let Some(c) = self.current {
            let cur = &self.sources[c];
            if cur.feed == feed.id
                && cur.flowing(now)
                && (self.sources[best].rate as f64) <= cur.rate as f64 * UPGRADE_MARGIN
            {
                return Some(c);
            }
        }
        Some(best)
    }

    fn codec_of(&self, feed: FeedId, packet: &rtp::Packet) -> MediaCodec {
        self.feeds
            .iter()
            .find(|f| f.id == feed)
            .map_or(MediaCodec::Other, |f| {
                f.codecs.get(packet.header.payload_type)
            })
    }
}

impl Source {
    fn ssrc_key(&self) -> (FeedId, u32) {
        (self.feed, self.ssrc)
    }
}

fn new_source(feed: FeedId, ssrc: u32, now: Instant) -> Source {
    Source {
        feed,
        ssrc,
        rid: None,
        last_seen: now,
        window_start: now,
        window_bytes: 0,
        window_packets: 0,
        rate: 0,
        stale_after: STALE_AFTER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::media::vp8_payload;
    use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters};

    fn vp8_table() -> CodecTable {
        CodecTable::new(&[
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: "video/VP8".into(),
                    clock_rate: 90000,
                    ..Default::default()
                },
                payload_type: 96,
            },
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: "video/rtx".into(),
                    clock_rate: 90000,
                    ..Default::default()
                },
                payload_type: 97,
            },
        ])
    }

    /// A simulcast layer sending `size`-byte packets; `seq` counts its packets.
    struct Layer {
        ssrc: u32,
        seq: u16,
        size: usize,
    }

    impl Layer {
        fn packet(&mut self, keyframe: bool, at: Instant, epoch: Instant) -> rtp::Packet {
            self.seq = self.seq.wrapping_add(1);
            rtp::Packet {
                header: rtp::header::Header {
                    ssrc: self.ssrc,
                    payload_type: 96,
                    sequence_number: self.seq,
                    timestamp: (at - epoch).as_millis() as u32 * 90,
                    ..Default::default()
                },
                payload: vp8_payload(true, keyframe, 0, self.size),
            }
        }
    }

    fn clock() -> Instant {
        Instant::now()
    }

    /// Feed every layer one packet per 10 ms for `ms`; keyframes on request. Returns the SSRCs
    /// forwarded, in order, and every keyframe request made.
    #[allow(clippy::too_many_arguments)]
    fn run(
        sel: &mut Selector,
        feed: FeedId,
        layers: &mut [Layer],
        active: &[bool],
        start: Instant,
        epoch: Instant,
        ms: u64,
        out_seqs: &mut Vec<u16>,
    ) -> (Vec<u32>, Vec<u32>) {
        let mut forwarded = Vec::new();
        let mut requests = Vec::new();
        let mut pending: Vec<u32> = Vec::new();
        for step in 0..ms / 10 {
            let at = start + Duration::from_millis(step * 10);
            for (l, on) in layers.iter_mut().zip(active) {
                if !on {
                    continue;
                }
                let key = pending.contains(&l.ssrc);
                pending.retain(|s| *s != l.ssrc);
                let mut p = l.packet(key, at, epoch);
                let mut wants = Wants::default();
                if sel.admit(feed, &mut p, at, &mut wants) {
                    forwarded.push(l.ssrc);
                    out_seqs.push(p.header.sequence_number);
                }
                sel.reconsider(at, &mut wants);
                if let Some((_, ssrc)) = wants.keyframe {
                    requests.push(ssrc);
                    pending.push(ssrc);
                }
            }
        }
        (forwarded, requests)
    }

    #[test]
    fn highest_flowing_layer_with_switches_on_keyframes() {
        let epoch = clock();
        let mut sel = Selector::default();
        sel.continuity.clock_rate = 90000;
        let feed = sel.attach(1, vp8_table());
        let mut layers = [
            Layer {
                ssrc: 10,
                seq: 100,
                size: 100,
            },
            Layer {
                ssrc: 20,
                seq: 2000,
                size: 400,
            },
            Layer {
                ssrc: 30,
                seq: 60000,
                size: 1200,
            },
        ];
        let mut seqs = Vec::new();
        // All three flowing: after the first rate window, viewers move to the top layer.
        let (fwd, req) = run(
            &mut sel,
            feed,
            &mut layers,
            &[true; 3],
            epoch,
            epoch,
            2000,
            &mut seqs,
        );
        assert_eq!(
            fwd.first(),
            Some(&10),
            "the first stream is forwarded at once"
        );
        assert_eq!(fwd.last(), Some(&30), "the highest layer wins");
        assert!(req.contains(&30));
        assert_eq!(sel.current(), Some((feed, 30)));

        // The top layer stops: viewers move down to the middle one, at its keyframe.
        let t1 = epoch + Duration::from_millis(2000);
        let (fwd, _) = run(
            &mut sel,
            feed,
            &mut layers,
            &[true, true, false],
            t1,
            epoch,
            2000,
            &mut seqs,
        );
        assert_eq!(fwd.last(), Some(&20));
        assert!(!fwd.contains(&10), "never below the best flowing layer");

        // It comes back: up again.
        let t2 = t1 + Duration::from_millis(2000);
        let (fwd, _) = run(
            &mut sel,
            feed,
            &mut layers,
            &[true; 3],
            t2,
            epoch,
            2000,
            &mut seqs,
        );
        assert_eq!(fwd.last(), Some(&30));

        // One continuous sequence for viewers across every switch.
        for pair in seqs.windows(2) {
            assert_eq!(
                pair[1],
                pair[0].wrapping_add(1),
                "sequence numbers continue"
            );
        }
    }

    #[test]
    fn switches_wait_for_a_keyframe() {
        let epoch = clock();
        let mut sel = Selector::default();
        let feed = sel.attach(1, vp8_table());
        let mut low = Layer {
            ssrc: 1,
            seq: 0,
            size: 100,
        };
        let mut high = Layer {
            ssrc: 2,
            seq: 0,
            size: 1000,
        };
        let mut wants = Wants::default();
        let mut t = epoch;
        // Both flow for a window, no keyframes at all: viewers stay on the first stream.
        for _ in 0..100 {
            t += Duration::from_millis(10);
            let mut a = low.packet(false, t, epoch);
            assert!(sel.admit(feed, &mut a, t, &mut wants));
            let mut b = high.packet(false, t, epoch);
            assert!(
                !sel.admit(feed, &mut b, t, &mut wants),
                "delta frames never switch"
            );
            sel.reconsider(t, &mut wants);
        }
        assert_eq!(
            wants.keyframe,
            Some((feed, 2)),
            "a keyframe was asked of the better layer"
        );
        let mut key = high.packet(true, t, epoch);
        assert!(sel.admit(feed, &mut key, t, &mut wants));
        assert!(wants.switched);
        let mut late_low = low.packet(true, t, epoch);
        assert!(
            !sel.admit(feed, &mut late_low, t, &mut wants),
            "the old layer is dropped"
        );
    }

    #[test]
    fn second_track_only_when_the_first_stops_and_repair_is_ignored() {
        let epoch = clock();
        let mut sel = Selector::default();
        let camera = sel.attach(1, vp8_table());
        let screen = sel.attach(1, vp8_table());
        let mut cam = Layer {
            ssrc: 5,
            seq: 0,
            size: 300,
        };
        let mut scr = Layer {
            ssrc: 6,
            seq: 0,
            size: 900,
        };
        let mut wants = Wants::default();
        let mut t = epoch;
        for _ in 0..100 {
            t += Duration::from_millis(10);
            let mut a = cam.packet(false, t, epoch);
            assert!(sel.admit(camera, &mut a, t, &mut wants));
            let mut b = scr.packet(true, t, epoch);
            assert!(
                !sel.admit(screen, &mut b, t, &mut wants),
                "tracks are not interleaved"
            );
            sel.reconsider(t, &mut wants);
        }
        let mut rtx = rtp::Packet {
            header: rtp::header::Header {
                ssrc: 77,
                payload_type: 97,
                ..Default::default()
            },
            payload: vp8_payload(true, true, 0, 50),
        };
        assert!(!sel.admit(camera, &mut rtx, t, &mut wants));
        assert!(
            sel.sources.iter().all(|s| s.ssrc != 77),
            "repair streams are not sources"
        );
        // The camera stops: the screen takes over at its next keyframe.
        for _ in 0..100 {
            t += Duration::from_millis(10);
            let mut b = scr.packet(true, t, epoch);
            sel.admit(screen, &mut b, t, &mut wants);
            sel.reconsider(t, &mut wants);
        }
        assert_eq!(sel.current(), Some((screen, 6)));
    }

    #[test]
    fn a_new_publisher_replaces_the_old_feeds() {
        let epoch = clock();
        let mut sel = Selector::default();
        let old = sel.attach(1, vp8_table());
        let mut a = Layer {
            ssrc: 1,
            seq: 0,
            size: 100,
        };
        let mut wants = Wants::default();
        let mut p = a.packet(true, epoch, epoch);
        assert!(sel.admit(old, &mut p, epoch, &mut wants));
        let new = sel.attach(2, vp8_table());
        let mut p = a.packet(true, epoch, epoch);
        assert!(
            !sel.admit(old, &mut p, epoch, &mut wants),
            "the replaced publisher is cut off"
        );
        let mut b = Layer {
            ssrc: 9,
            seq: 500,
            size: 100,
        };
        let mut p = b.packet(false, epoch, epoch);
        assert!(sel.admit(new, &mut p, epoch, &mut wants));
        assert_eq!(p.header.sequence_number, 2, "continuous across publishers");
    }

    /// A static screen share sends about one frame a second on every layer: the gaps between
    /// packets are not a layer stopping, so viewers are not moved back and forth.
    #[test]
    fn low_frame_rate_layers_do_not_flap() {
        let epoch = clock();
        let mut sel = Selector::default();
        let feed = sel.attach(1, vp8_table());
        let mut low = Layer {
            ssrc: 1,
            seq: 0,
            size: 100,
        };
        let mut top = Layer {
            ssrc: 2,
            seq: 0,
            size: 1000,
        };
        let mut wants = Wants::default();
        let mut switches = 0;
        for i in 0..40u64 {
            let t = epoch + Duration::from_millis(900 * i);
            for (layer, offset) in [(&mut low, 0), (&mut top, 100)] {
                let at = t + Duration::from_millis(offset);
                let asked = wants.keyframe.take().is_some_and(|(_, s)| s == layer.ssrc);
                let mut p = layer.packet(asked, at, epoch);
                let mut w = Wants::default();
                sel.admit(feed, &mut p, at, &mut w);
                sel.reconsider(at, &mut w);
                switches += w.switched as u32;
                if w.keyframe.is_some() {
                    wants.keyframe = w.keyframe;
                }
            }
        }
        assert_eq!(sel.current(), Some((feed, 2)), "on the top layer");
        assert!(
            switches <= 1,
            "{switches} switches between two 1 fps layers"
        );
    }

    #[test]
    fn continuity_across_publisher_switch() {
        let t = Instant::now();
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
        c.apply(&mut h, t);
        assert_eq!((h.sequence_number, h.timestamp), (100, 1000));
        let mut h2 = rtp::header::Header {
            ssrc: 2,
            sequence_number: 60000,
            timestamp: 5,
            ..Default::default()
        };
        c.apply(&mut h2, t + Duration::from_millis(10));
        assert_eq!(h2.sequence_number, 101);
        assert_eq!(h2.timestamp, 1000 + 900);
        let mut h3 = rtp::header::Header {
            ssrc: 2,
            sequence_number: 60001,
            timestamp: 3005,
            ..Default::default()
        };
        c.apply(&mut h3, t + Duration::from_millis(20));
        assert_eq!(h3.sequence_number, 102);
        assert_eq!(h3.timestamp, h2.timestamp + 3000);
    }
}
