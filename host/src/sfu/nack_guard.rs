//! Bounded retransmission for viewers: the NACKs a viewer sends are de-duplicated and rate
//! limited before the NACK responder acts on them.
//!
//! webrtc-rs's NACK responder retransmits every sequence number every NACK names, as often as
//! it is named. A viewer (or anyone who completed DTLS as one) sending a flood of NACKs with
//! overlapping ranges would make the server resend its whole history again and again — and on
//! the direct driver that work ran under the viewer's lock, which the publisher's forwarding
//! loop also takes, freezing the room. [`GuardedNackResponder`] wraps the responder and
//! rewrites each inbound NACK, before the responder sees it, to the sequence numbers that may
//! be resent now: each at most once per [`RESEND_WINDOW`], and at most [`RESEND_PER_SEC`]
//! packets a second per viewer (burst [`RESEND_BURST`]). What it strips is counted.
//!
//! It wraps the responder rather than sitting beside it in the chain because every outgoing
//! packet walks every interceptor of the chain, each a queue push and pop of the packet; wrapped,
//! the write leg is the responder's alone and the guard costs nothing per forwarded packet.

use rtc::interceptor::{
    Interceptor, NackResponderBuilder, NackResponderInterceptor, Packet, Slot, StreamInfo,
    TaggedPacket,
};
use rtc::rtcp;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use webrtc::peer_connection::Registry;

/// A sequence number is resent at most once per this long: about a round trip on the paths
/// retransmission can still help on (beyond that the frame is late anyway).
pub const RESEND_WINDOW: Duration = Duration::from_millis(100);
/// Retransmitted packets per second per viewer: 3.6 Mbit/s of 1200-byte packets, several
/// times a normal stream's loss-recovery needs.
pub const RESEND_PER_SEC: f64 = 300.0;
/// Retransmissions allowed at once (a burst of loss after a short outage).
pub const RESEND_BURST: f64 = 100.0;
/// Sequence numbers remembered per stream; matches the viewer's NACK history (256) with room.
const REMEMBERED: usize = 512;

/// NACKed sequence numbers not resent because of the window or the rate limit, process-wide.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
/// NACKed sequence numbers passed on to the responder (resent if still in its history),
/// process-wide. Counted once per NACK, never per media packet.
static PASSED: AtomicU64 = AtomicU64::new(0);

/// How many NACKed packets the guards refused to resend since start.
pub fn suppressed() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}

/// How many NACKed packets the guards let through to be resent since start.
pub fn passed() -> u64 {
    PASSED.load(Ordering::Relaxed)
}

/// Add a guarded NACK responder keeping `history` packets per stream to a viewer's registry.
pub fn with_guarded_nack_responder(registry: Registry, history: u16) -> Registry {
    registry.with(
        Slot::NackResponder,
        GuardedNackResponder {
            guard: NackGuard::new(Instant::now()),
            responder: NackResponderBuilder::new().with_size(history).build(),
        },
    )
}

/// webrtc-rs's NACK responder behind a [`NackGuard`] on its read leg.
pub struct GuardedNackResponder {
    guard: NackGuard,
    responder: NackResponderInterceptor,
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for GuardedNackResponder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            self.guard.filter(packets, msg.now);
            if packets.is_empty() {
                return Ok(()); // it was nothing but refused NACKs
            }
        }
        self.responder.handle_read(msg)
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.responder.poll_read()
    }

    #[inline]
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.responder.handle_write(msg)
    }

    #[inline]
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.responder.poll_write()
    }

    fn handle_event(&mut self, evt: ()) -> Result<(), Self::Error> {
        self.responder.handle_event(evt)
    }

    fn poll_event(&mut self) -> Option<()> {
        self.responder.poll_event()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.responder.handle_timeout(now)
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.responder.poll_timeout()
    }

    fn close(&mut self) -> Result<(), Self::Error> {
        self.responder.close()
    }
}

impl Interceptor for GuardedNackResponder {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.responder.bind_local_stream(info);
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.responder.unbind_local_stream(info);
    }
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.responder.bind_remote_stream(info);
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.responder.unbind_remote_stream(info);
    }
}

/// When each remembered sequence number of one stream was last let through.
type ResentAt = [Option<(u16, Instant)>; REMEMBERED];

/// The per-viewer bookkeeping of what was resent when. See the module docs.
pub struct NackGuard {
    /// Per media SSRC: when each remembered sequence number was last let through.
    streams: Vec<(u32, Box<ResentAt>)>,
    tokens: f64,
    refilled: Instant,
}

impl NackGuard {
    pub fn new(now: Instant) -> Self {
        NackGuard {
            streams: Vec::new(),
            tokens: RESEND_BURST,
            refilled: now,
        }
    }

    /// The sequence numbers of `nack` that may be resent now; records them as resent.
    fn admit(&mut self, nack: &TransportLayerNack, now: Instant) -> Vec<u16> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * RESEND_PER_SEC).min(RESEND_BURST);
        if self.tokens < 1.0 {
            // Over the rate: refuse without looking further (a flood costs almost nothing).
            let named: u64 = nack
                .nacks
                .iter()
                .map(|p| 1 + u64::from(p.lost_packets.count_ones()))
                .sum();
            SUPPRESSED.fetch_add(named, Ordering::Relaxed);
            return Vec::new();
        }
        let index = match self.streams.iter().position(|(s, _)| *s == nack.media_ssrc) {
            Some(i) => i,
            None => {
                // A handful of streams per viewer; a flood of made-up SSRCs is bounded too.
                if self.streams.len() >= 8 {
                    self.streams.remove(0);
                }
                self.streams
                    .push((nack.media_ssrc, Box::new([None; REMEMBERED])));
                self.streams.len() - 1
            }
        };
        let seen = &mut self.streams[index].1;
        let mut allowed = Vec::new();
        let mut refused = 0u64;
        for pair in &nack.nacks {
            for seq in pair.packet_list() {
                let slot = &mut seen[seq as usize % REMEMBERED];
                let recent = matches!(slot, Some((s, at)) if *s == seq
                    && now.saturating_duration_since(*at) < RESEND_WINDOW);
                if recent || allowed.contains(&seq) || self.tokens < 1.0 {
                    refused += 1;
                    continue;
                }
                self.tokens -= 1.0;
                *slot = Some((seq, now));
                allowed.push(seq);
            }
        }
        if refused > 0 {
            SUPPRESSED.fetch_add(refused, Ordering::Relaxed);
        }
        if !allowed.is_empty() {
            PASSED.fetch_add(allowed.len() as u64, Ordering::Relaxed);
        }
        allowed
    }

    /// Rewrite the NACKs of an inbound RTCP compound; NACKs left empty are removed.
    fn filter(&mut self, packets: &mut Vec<Box<dyn rtcp::Packet>>, now: Instant) {
        if !packets
            .iter()
            .any(|p| p.as_any().is::<TransportLayerNack>())
        {
            return;
        }
        let mut kept: Vec<Box<dyn rtcp::Packet>> = Vec::with_capacity(packets.len());
        for packet in packets.drain(..) {
            let Some(nack) = packet.as_any().downcast_ref::<TransportLayerNack>() else {
                kept.push(packet);
                continue;
            };
            let allowed = self.admit(nack, now);
            if !allowed.is_empty() {
                kept.push(Box::new(TransportLayerNack {
                    sender_ssrc: nack.sender_ssrc,
                    media_ssrc: nack.media_ssrc,
                    nacks: nack_pairs_from_sequence_numbers(&allowed),
                }));
            }
        }
        *packets = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    fn nack(first: u16, bitmask: u16) -> TransportLayerNack {
        TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 42,
            nacks: vec![NackPair {
                packet_id: first,
                lost_packets: bitmask,
            }],
        }
    }

    #[test]
    fn each_sequence_number_once_per_window() {
        let t0 = Instant::now();
        let mut g = NackGuard::new(t0);
        assert_eq!(g.admit(&nack(100, 0b101), t0), vec![100, 101, 103]);
        assert!(
            g.admit(&nack(100, 0b101), t0).is_empty(),
            "duplicates refused"
        );
        let later = t0 + RESEND_WINDOW;
        assert_eq!(
            g.admit(&nack(100, 0), later),
            vec![100],
            "again after the window"
        );
    }

    #[test]
    fn rate_is_capped_per_viewer() {
        let t0 = Instant::now();
        let mut g = NackGuard::new(t0);
        let mut total = 0;
        // 1,000 NACKs of 17 packets each, all at once: the burst is all that goes.
        for i in 0..1000u16 {
            total += g.admit(&nack(i.wrapping_mul(17), 0xffff), t0).len();
        }
        assert_eq!(total, RESEND_BURST as usize);
        // A second later, one second's worth more.
        let t1 = t0 + Duration::from_secs(1);
        let mut more = 0;
        for i in 1000..2000u16 {
            more += g.admit(&nack(i.wrapping_mul(17), 0xffff), t1).len();
        }
        assert_eq!(more, RESEND_BURST as usize, "refill capped at the burst");
    }

    #[test]
    fn compounds_keep_other_reports_and_drop_empty_nacks() {
        use rtc::rtcp::receiver_report::ReceiverReport;
        let t0 = Instant::now();
        let mut g = NackGuard::new(t0);
        let mut packets: Vec<Box<dyn rtcp::Packet>> =
            vec![Box::new(ReceiverReport::default()), Box::new(nack(7, 0))];
        g.filter(&mut packets, t0);
        assert_eq!(packets.len(), 2);
        let mut again: Vec<Box<dyn rtcp::Packet>> =
            vec![Box::new(ReceiverReport::default()), Box::new(nack(7, 0))];
        g.filter(&mut again, t0);
        assert_eq!(again.len(), 1, "the refused NACK is gone, the report stays");
        assert!(again[0].as_any().is::<ReceiverReport>());
    }
}
