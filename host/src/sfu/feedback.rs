//! Keyframe requests (PLI/FIR) from the RTCP a peer sends us.
//!
//! webrtc-rs consumes inbound RTCP inside its interceptor chain; this module lets the keyframe
//! requests through to the application, so a viewer's PLI reaches the publisher and a
//! publishing client sees the SFU's PLI. Shared by the SFU's connections and by the client.

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use std::collections::VecDeque;
use std::time::Instant;
use webrtc::peer_connection::Registry;

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
}
