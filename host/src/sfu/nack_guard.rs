//! Bounded retransmission for viewers: the NACKs a viewer sends are de-duplicated and rate
//! limited before the NACK responder acts on them.
//!
//! webrtc-rs's NACK responder retransmits every sequence number every NACK names, as often as
//! it is named. A viewer (or anyone who completed DTLS as one) sending a flood of NACKs with
//! overlapping ranges would make the server resend its whole history again and again — and on
//! the direct driver that work ran under the viewer's lock, which the publisher's forwarding
//! loop also takes, freezing the room. This interceptor sits just wire-ward of the responder
//! on the read leg and rewrites each NACK to the sequence numbers that may be resent now:
//! each at most once per [`RESEND_WINDOW`], and at most [`RESEND_PER_SEC`] packets a second
//! per viewer (burst [`RESEND_BURST`]). What it strips is counted.

use rtc::interceptor::{Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use std::collections::VecDeque;
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

/// Where the guard sits: just before the NACK responder (4_000) on the read leg, which walks
/// from the wire up.
const SLOT: usize = 3_900;

/// NACKed sequence numbers not resent because of the window or the rate limit, process-wide.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// How many NACKed packets the guards refused to resend since start.
pub fn suppressed() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}

/// Add the guard to a viewer's interceptor registry (with its NACK responder).
pub fn with_nack_guard(registry: Registry) -> Registry {
    registry.with(Slot::from(SLOT), NackGuard::new(Instant::now()))
}

/// When each remembered sequence number of one stream was last let through.
type ResentAt = [Option<(u16, Instant)>; REMEMBERED];

/// The per-viewer guard. See the module docs.
pub struct NackGuard {
    /// Per media SSRC: when each remembered sequence number was last let through.
    streams: Vec<(u32, Box<ResentAt>)>,
    tokens: f64,
    refilled: Instant,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl NackGuard {
    pub fn new(now: Instant) -> Self {
        NackGuard {
            streams: Vec::new(),
            tokens: RESEND_BURST,
            refilled: now,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
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

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for NackGuard {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            self.filter(packets, msg.now);
            if packets.is_empty() {
                return Ok(()); // it was nothing but refused NACKs
            }
        }
        self.reads.push_back(msg);
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

impl Interceptor for NackGuard {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
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
