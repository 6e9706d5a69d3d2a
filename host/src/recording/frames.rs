//! RTP to whole frames, one assembler per recorded track: what every container writer takes.
//!
//! Packets come from a media tap in forwarding order (continuous sequence numbers unless the
//! publisher or the tap lost some). A frame is the depacketized payloads of the packets from
//! its partition head to its tail (the codec's depacketizer from the `rtc` crate decides
//! both). What a recording must never contain is a frame with a hole or a frame that refers to
//! one, so:
//! - a gap in sequence numbers drops the frame being assembled and, for video, every frame up
//!   to the next keyframe (an inter frame after a loss would decode to garbage);
//! - a packet older than the last one (reordered or duplicated) is dropped;
//! - a recording starts with a keyframe;
//! - timestamps are the RTP clock's, unwrapped past 2^32, counted from the track's first frame.
//!
//! Everything is counted in [`AssemblerStats`]. Time is the RTP clock only: no wall clock.

use bytes::{Bytes, BytesMut};
use rtc::rtp;
use rtc::rtp::codec::av1::Av1Depacketizer;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::opus::OpusPacket;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::codec::vp9::Vp9Packet;
use rtc::rtp::packetizer::Depacketizer;

/// The codecs the recorder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Vp8,
    Vp9,
    Av1,
    H264,
    Opus,
}

impl Codec {
    /// From an SDP/WebRTC MIME type (`video/VP8`, case-insensitive); `None` for codecs the
    /// recorder does not write.
    pub fn from_mime(mime: &str) -> Option<Codec> {
        let (_, name) = mime.split_once('/')?;
        match name.to_ascii_lowercase().as_str() {
            "vp8" => Some(Codec::Vp8),
            "vp9" => Some(Codec::Vp9),
            "av1" => Some(Codec::Av1),
            "h264" => Some(Codec::H264),
            "opus" => Some(Codec::Opus),
            _ => None,
        }
    }

    /// The RTP clock rate (RFC 7741, RFC 7587, ...): 90 kHz video, 48 kHz Opus.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            _ => 90_000,
        }
    }

    pub fn is_video(self) -> bool {
        self != Codec::Opus
    }
}

/// One whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The codec's bitstream: a VP8/VP9 frame, AV1 OBUs with size fields, H.264 Annex-B NAL
    /// units, an Opus packet.
    pub data: Bytes,
    pub keyframe: bool,
    /// RTP clock ticks since the track's first frame.
    pub ticks: u64,
}

/// What an assembler dropped, and why.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerStats {
    pub frames: u64,
    /// Sequence gaps seen (each may be several packets).
    pub gaps: u64,
    /// Packets older than the newest one, dropped.
    pub late_packets: u64,
    /// Frames dropped: incomplete, unparseable, or waiting for a keyframe.
    pub dropped_frames: u64,
}

enum Depack {
    Vp8(Vp8Packet),
    Vp9(Vp9Packet),
    Av1(Av1Depacketizer),
    H264(H264Packet),
    Opus(OpusPacket),
}

impl Depack {
    fn new(codec: Codec) -> Depack {
        match codec {
            Codec::Vp8 => Depack::Vp8(Vp8Packet::default()),
            Codec::Vp9 => Depack::Vp9(Vp9Packet::default()),
            Codec::Av1 => Depack::Av1(Av1Depacketizer::new()),
            Codec::H264 => Depack::H264(H264Packet::default()),
            Codec::Opus => Depack::Opus(OpusPacket),
        }
    }

    fn inner(&mut self) -> &mut dyn Depacketizer {
        match self {
            Depack::Vp8(d) => d,
            Depack::Vp9(d) => d,
            Depack::Av1(d) => d,
            Depack::H264(d) => d,
            Depack::Opus(d) => d,
        }
    }

    /// Whether the frame whose first packet was just depacketized into `data` is a keyframe
    /// (H.264 is decided on the whole frame, see [`is_h264_keyframe`]).
    fn starts_keyframe(&self, data: &[u8]) -> bool {
        match self {
            // RFC 7741 §4.3: the first partition's first byte, P bit clear.
            Depack::Vp8(d) => d.s == 1 && d.pid == 0 && data.first().is_some_and(|b| b & 1 == 0),
            // The bitstream's own frame type: the payload descriptor's P bit is not set by
            // every sender.
            Depack::Vp9(_) => is_vp9_keyframe(data),
            // AV1 RTP §4.4: N set on the first packet of a coded video sequence.
            Depack::Av1(d) => d.n,
            Depack::H264(_) => false,
            Depack::Opus(_) => true,
        }
    }
}

/// A VP9 frame whose uncompressed header (VP9 bitstream spec §6.2) says KEY_FRAME.
fn is_vp9_keyframe(frame: &[u8]) -> bool {
    let bit = |i: usize| frame.get(i / 8).map(|b| (b >> (7 - i % 8)) & 1);
    // frame_marker (2 bits, 0b10), profile_low_bit, profile_high_bit.
    if bit(0) != Some(1) || bit(1) != Some(0) {
        return false;
    }
    let profile = bit(2).unwrap_or(0) | (bit(3).unwrap_or(0) << 1);
    // Profile 3 has a reserved zero bit next; then show_existing_frame, then frame_type.
    let at = if profile == 3 { 5 } else { 4 };
    bit(at) == Some(0) && bit(at + 1) == Some(0)
}

/// An H.264 Annex-B access unit with an IDR slice (NAL type 5).
fn is_h264_keyframe(annex_b: &[u8]) -> bool {
    let mut i = 0;
    while i + 3 < annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            if annex_b[i + 3] & 0x1f == 5 {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// The frame being put together.
struct Partial {
    rtp_ts: u32,
    data: BytesMut,
    keyframe: bool,
}

/// Reassembles one track's frames from its RTP packets.
pub struct FrameAssembler {
    codec: Codec,
    depack: Depack,
    next_seq: Option<u16>,
    partial: Option<Partial>,
    /// Video after a loss (and at the start): frames are dropped until a keyframe.
    need_keyframe: bool,
    /// (first frame's extended timestamp, last frame's RTP timestamp, its extended value)
    clock: Option<(i64, u32, i64)>,
    /// The timestamp of the last frame dropped, so its remaining packets count it once.
    dropped_ts: Option<u32>,
    stats: AssemblerStats,
}

impl FrameAssembler {
    pub fn new(codec: Codec) -> FrameAssembler {
        FrameAssembler {
            codec,
            depack: Depack::new(codec),
            next_seq: None,
            partial: None,
            need_keyframe: codec.is_video(),
            clock: None,
            dropped_ts: None,
            stats: AssemblerStats::default(),
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Take one packet (in arrival order); the frames it completes are appended to `out`.
    pub fn push(&mut self, packet: &rtp::Packet, out: &mut Vec<Frame>) {
        let seq = packet.header.sequence_number;
        if let Some(expected) = self.next_seq {
            let ahead = seq.wrapping_sub(expected);
            if ahead >= 0x8000 {
                self.stats.late_packets += 1;
                return;
            }
            if ahead != 0 {
                self.stats.gaps += 1;
                self.lose_partial();
            }
        }
        self.next_seq = Some(seq.wrapping_add(1));
        if packet.payload.is_empty() {
            return; // padding
        }

        // A new timestamp with no gap: the previous frame had all its packets but no tail
        // mark (some senders never set the marker); it is complete.
        if self
            .partial
            .as_ref()
            .is_some_and(|p| p.rtp_ts != packet.header.timestamp)
        {
            self.finish(out);
        }

        let depack = &mut self.depack;
        let head = self.partial.is_none();
        if head && !depack.inner().is_partition_head(&packet.payload) {
            // The frame's first packet is missing (lost, or sent before the track's first).
            if self.dropped_ts != Some(packet.header.timestamp) {
                self.dropped_ts = Some(packet.header.timestamp);
                self.stats.dropped_frames += 1;
            }
            self.need_keyframe |= self.codec.is_video();
            return;
        }
        let data = match depack.inner().depacketize(&packet.payload) {
            Ok(data) => data,
            Err(_) => {
                self.lose_partial();
                return;
            }
        };
        let partial = self.partial.get_or_insert_with(|| Partial {
            rtp_ts: packet.header.timestamp,
            data: BytesMut::new(),
            keyframe: false,
        });
        if head {
            partial.keyframe = depack.starts_keyframe(&data);
        }
        partial.data.extend_from_slice(&data);
        if depack
            .inner()
            .is_partition_tail(packet.header.marker, &packet.payload)
        {
            self.finish(out);
        }
    }

    /// Drop the frame being assembled after a loss; video then waits for a keyframe.
    fn lose_partial(&mut self) {
        if let Some(partial) = self.partial.take() {
            self.dropped_ts = Some(partial.rtp_ts);
            self.stats.dropped_frames += 1;
        }
        if self.codec.is_video() {
            self.need_keyframe = true;
        }
        // The depacketizer may hold a fragment of the lost frame (H.264 FU-A, AV1).
        self.depack = Depack::new(self.codec);
    }

    fn finish(&mut self, out: &mut Vec<Frame>) {
        let Some(partial) = self.partial.take() else {
            return;
        };
        let keyframe = match self.codec {
            Codec::H264 => is_h264_keyframe(&partial.data),
            _ => partial.keyframe,
        };
        if partial.data.is_empty() || (self.need_keyframe && !keyframe) {
            self.stats.dropped_frames += 1;
            return;
        }
        self.need_keyframe = false;
        let ticks = self.unwrap(partial.rtp_ts);
        self.stats.frames += 1;
        out.push(Frame {
            data: partial.data.freeze(),
            keyframe,
            ticks,
        });
    }

    /// Ticks since the first frame, following the 32-bit RTP clock past its wrap (a frame
    /// stamped before the previous one is kept at the previous one's time).
    fn unwrap(&mut self, rtp_ts: u32) -> u64 {
        let (first, last_ts, last_ext) =
            *self
                .clock
                .get_or_insert((rtp_ts as i64, rtp_ts, rtp_ts as i64));
        let ext = last_ext + rtp_ts.wrapping_sub(last_ts) as i32 as i64;
        let ext = ext.max(last_ext);
        self.clock = Some((first, rtp_ts, ext));
        (ext - first) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::codec::vp8::Vp8Payloader;
    use rtc::rtp::packetizer::Payloader;

    /// A fake VP8 frame: the first byte's P bit says key or inter.
    fn vp8_frame(key: bool, n: usize) -> Bytes {
        let mut data = vec![if key { 0x10 } else { 0x11 }; n];
        data[1] = n as u8;
        Bytes::from(data)
    }

    /// RTP packets of `frames` (key?, size) at 30 fps, starting at `seq` / `ts`.
    fn packetize(frames: &[(bool, usize)], seq: u16, ts: u32) -> Vec<rtp::Packet> {
        let mut payloader = Vp8Payloader::default();
        let mut out = Vec::new();
        let mut seq = seq;
        for (i, (key, n)) in frames.iter().enumerate() {
            let payloads = payloader.payload(400, &vp8_frame(*key, *n)).unwrap();
            let count = payloads.len();
            for (j, payload) in payloads.into_iter().enumerate() {
                let mut p = rtp::Packet::default();
                p.header.sequence_number = seq;
                p.header.timestamp = ts.wrapping_add(3000 * i as u32);
                p.header.marker = j + 1 == count;
                p.payload = payload;
                out.push(p);
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    fn assemble(codec: Codec, packets: &[rtp::Packet]) -> (Vec<Frame>, AssemblerStats) {
        let mut a = FrameAssembler::new(codec);
        let mut out = Vec::new();
        for p in packets {
            a.push(p, &mut out);
        }
        (out, a.stats())
    }

    #[test]
    fn frames_are_reassembled_across_packets_and_sequence_wrap() {
        let packets = packetize(&[(true, 1000), (false, 900), (false, 50)], 65_533, 10);
        assert!(packets.len() > 5, "frames span several packets");
        let (frames, stats) = assemble(Codec::Vp8, &packets);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].data, vp8_frame(true, 1000));
        assert!(frames[0].keyframe && !frames[1].keyframe);
        assert_eq!(frames[1].data, vp8_frame(false, 900));
        assert_eq!(
            frames.iter().map(|f| f.ticks).collect::<Vec<_>>(),
            [0, 3000, 6000]
        );
        assert_eq!(stats.gaps, 0);
    }

    #[test]
    fn recording_starts_at_a_keyframe() {
        let packets = packetize(
            &[(false, 500), (false, 500), (true, 500), (false, 500)],
            1,
            0,
        );
        let (frames, stats) = assemble(Codec::Vp8, &packets);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].keyframe);
        assert_eq!(
            frames[0].ticks, 0,
            "time counts from the first frame written"
        );
        assert_eq!(frames[1].ticks, 3000);
        assert_eq!(stats.dropped_frames, 2);
    }

    #[test]
    fn a_loss_drops_frames_until_the_next_keyframe() {
        let mut packets = packetize(
            &[
                (true, 900),
                (false, 900),
                (false, 900),
                (true, 900),
                (false, 10),
            ],
            100,
            0,
        );
        // Lose the second packet of the inter frame after the first keyframe.
        let lost = packets
            .iter()
            .position(|p| p.header.timestamp == 3000)
            .unwrap()
            + 1;
        packets.remove(lost);
        let (frames, stats) = assemble(Codec::Vp8, &packets);
        let times: Vec<u64> = frames.iter().map(|f| f.ticks).collect();
        assert_eq!(
            times,
            [0, 9000, 12000],
            "frames 2 and 3 dropped, resumes at the keyframe"
        );
        assert!(frames[1].keyframe);
        assert_eq!(stats.gaps, 1);
        assert_eq!(stats.dropped_frames, 2);
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped() {
        let packets = packetize(&[(true, 100), (false, 100), (false, 100)], 7, 0);
        let mut shuffled = packets.clone();
        shuffled.insert(2, packets[0].clone());
        let (frames, stats) = assemble(Codec::Vp8, &shuffled);
        assert_eq!(frames.len(), 3);
        assert_eq!(stats.late_packets, 1);
    }

    #[test]
    fn timestamps_unwrap_past_the_32_bit_clock() {
        let packets = packetize(
            &[(true, 100), (false, 100), (false, 100)],
            0,
            u32::MAX - 3000,
        );
        let (frames, _) = assemble(Codec::Vp8, &packets);
        assert_eq!(
            frames.iter().map(|f| f.ticks).collect::<Vec<_>>(),
            [0, 3000, 6000]
        );
    }

    #[test]
    fn opus_frames_are_single_packets_and_survive_loss() {
        let mut packets: Vec<rtp::Packet> = (0..5u16)
            .map(|i| {
                let mut p = rtp::Packet::default();
                p.header.sequence_number = i;
                p.header.timestamp = 960 * i as u32;
                p.payload = Bytes::from(vec![0xfc, i as u8]);
                p
            })
            .collect();
        packets.remove(2);
        let (frames, stats) = assemble(Codec::Opus, &packets);
        assert_eq!(
            frames.iter().map(|f| f.ticks).collect::<Vec<_>>(),
            [0, 960, 2880, 3840]
        );
        assert!(frames.iter().all(|f| f.keyframe));
        assert_eq!(stats.gaps, 1);
    }

    #[test]
    fn vp9_keyframes_come_from_the_frame_header() {
        // 0b10 marker, profile 0, show_existing 0, frame_type 0 (key) / 1 (inter).
        assert!(is_vp9_keyframe(&[0b1000_0010, 0x49, 0x83, 0x42]));
        assert!(!is_vp9_keyframe(&[0b1000_0110]));
        assert!(!is_vp9_keyframe(&[0b1000_1000]), "show_existing_frame");
        assert!(!is_vp9_keyframe(&[]));
    }

    #[test]
    fn h264_keyframes_are_idr_access_units() {
        assert!(is_h264_keyframe(&[
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x65, 9
        ]));
        assert!(!is_h264_keyframe(&[0, 0, 0, 1, 0x41, 1, 2, 3]));
        assert_eq!(Codec::from_mime("video/H264"), Some(Codec::H264));
        assert_eq!(Codec::from_mime("audio/opus"), Some(Codec::Opus));
        assert_eq!(Codec::from_mime("audio/PCMU"), None);
    }
}
