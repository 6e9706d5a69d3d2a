//! What the forwarding path needs to know about a payload: which codec it is and whether a
//! packet starts a keyframe.
//!
//! Switching a viewer from one stream to another (a simulcast layer going away, a publisher's
//! second track taking over) is only clean on a keyframe: a decoder fed the middle of another
//! stream shows corruption until the next one. These parsers read only the RTP payload
//! descriptors (RFC 7741 VP8, RFC 9628 VP9, RFC 6184 H.264, the AV1 RTP specification), never
//! the bitstream, so they cost a few byte reads per packet.

use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;

/// The codecs the forwarding path tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaCodec {
    Opus,
    Vp8,
    Vp9,
    H264,
    Av1,
    /// Retransmission, FEC and redundancy streams: never forwarded as media of their own.
    Repair,
    /// Anything else: forwarded, but where it starts a keyframe is unknown.
    Other,
}

impl MediaCodec {
    /// The codec of a MIME type such as `video/VP8` (case-insensitive).
    pub fn from_mime(mime: &str) -> MediaCodec {
        let subtype = mime.rsplit('/').next().unwrap_or(mime);
        match subtype.to_ascii_lowercase().as_str() {
            "opus" => MediaCodec::Opus,
            "vp8" => MediaCodec::Vp8,
            "vp9" => MediaCodec::Vp9,
            "h264" => MediaCodec::H264,
            "av1" => MediaCodec::Av1,
            "rtx" | "ulpfec" | "flexfec" | "flexfec-03" | "red" => MediaCodec::Repair,
            _ => MediaCodec::Other,
        }
    }

    /// Whether this RTP payload is the first packet of a keyframe; `None` when the codec has
    /// no keyframes (audio) or cannot be told, in which case any packet is a switch point.
    pub fn starts_keyframe(self, payload: &[u8]) -> Option<bool> {
        match self {
            MediaCodec::Vp8 => Some(vp8_starts_keyframe(payload)),
            MediaCodec::Vp9 => Some(vp9_starts_keyframe(payload)),
            MediaCodec::H264 => Some(h264_starts_keyframe(payload)),
            MediaCodec::Av1 => Some(av1_starts_keyframe(payload)),
            MediaCodec::Opus | MediaCodec::Repair | MediaCodec::Other => None,
        }
    }
}

/// Codec per payload type, built once per publisher track so the hot path does one index.
#[derive(Clone)]
pub struct CodecTable([MediaCodec; 128]);

impl CodecTable {
    pub fn new(codecs: &[RTCRtpCodecParameters]) -> CodecTable {
        let mut table = [MediaCodec::Other; 128];
        for c in codecs {
            if let Some(slot) = table.get_mut(c.payload_type as usize) {
                *slot = MediaCodec::from_mime(&c.rtp_codec.mime_type);
            }
        }
        CodecTable(table)
    }

    #[inline]
    pub fn get(&self, payload_type: u8) -> MediaCodec {
        self.0
            .get(payload_type as usize)
            .copied()
            .unwrap_or(MediaCodec::Other)
    }
}

/// VP8 (RFC 7741 §4.2-4.3): start of partition 0 (S=1, PID=0) and the frame tag's P bit 0.
fn vp8_starts_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = p.get(i) else {
            return false;
        };
        i += 1;
        if ext & 0x80 != 0 {
            // PictureID: 7 or 15 bits (M flag).
            match p.get(i) {
                Some(b) if b & 0x80 != 0 => i += 2,
                Some(_) => i += 1,
                None => return false,
            }
        }
        if ext & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    p.get(i).is_some_and(|tag| tag & 0x01 == 0)
}

/// VP9 (RFC 9628 §4.2): beginning of a frame (B) that is not inter-predicted (P=0), in the
/// base spatial layer when layer indices are present.
fn vp9_starts_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let (picture_id, predicted, layers, begin) = (
        first & 0x80 != 0,
        first & 0x40 != 0,
        first & 0x20 != 0,
        first & 0x08 != 0,
    );
    if !begin || predicted {
        return false;
    }
    if !layers {
        return true;
    }
    let mut i = 1;
    if picture_id {
        match p.get(i) {
            Some(b) if b & 0x80 != 0 => i += 2,
            Some(_) => i += 1,
            None => return false,
        }
    }
    p.get(i).is_some_and(|l| (l >> 1) & 0x07 == 0)
}

/// H.264 (RFC 6184 §5.6-5.8): a packet carrying a sequence parameter set (what a decoder needs
/// before an IDR, so the switch point of a keyframe), or the start of an IDR slice.
fn h264_starts_keyframe(p: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    let Some(&first) = p.first() else {
        return false;
    };
    match first & 0x1f {
        IDR | SPS => true,
        // STAP-A: 16-bit size, NAL unit, repeated.
        24 => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if matches!(p[i + 2] & 0x1f, IDR | SPS) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        // FU-A: start bit and the fragmented NAL unit's type.
        28 => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, IDR | SPS)),
        _ => false,
    }
}

/// AV1 (RTP payload format §4.4): the aggregation header's N bit marks the first packet of a
/// coded video sequence, which starts with a keyframe.
fn av1_starts_keyframe(p: &[u8]) -> bool {
    p.first().is_some_and(|h| h & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_types() {
        assert_eq!(MediaCodec::from_mime("video/VP8"), MediaCodec::Vp8);
        assert_eq!(MediaCodec::from_mime("audio/opus"), MediaCodec::Opus);
        assert_eq!(MediaCodec::from_mime("video/rtx"), MediaCodec::Repair);
        assert_eq!(MediaCodec::from_mime("video/H265"), MediaCodec::Other);
        assert_eq!(MediaCodec::Opus.starts_keyframe(&[1, 2]), None);
    }

    #[test]
    fn vp8_keyframes_and_descriptors() {
        // The load tool's own packets: S=1, keyframe tag, and continuation packets.
        let key = crate::client::media::vp8_payload(true, true, 1, 100);
        let delta = crate::client::media::vp8_payload(true, false, 1, 100);
        let middle = crate::client::media::vp8_payload(false, true, 1, 100);
        assert!(vp8_starts_keyframe(&key));
        assert!(!vp8_starts_keyframe(&delta));
        assert!(!vp8_starts_keyframe(&middle));
        // X=1, I=1 with a 15-bit picture id, then the frame tag.
        assert!(vp8_starts_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x10]));
        assert!(!vp8_starts_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x11]));
        // A later partition (PID=1) never starts a frame.
        assert!(!vp8_starts_keyframe(&[0x11, 0x10]));
        assert!(!vp8_starts_keyframe(&[]));
    }

    #[test]
    fn vp9_keyframes() {
        assert!(vp9_starts_keyframe(&[0x08])); // B, not predicted
        assert!(!vp9_starts_keyframe(&[0x48])); // predicted
        assert!(!vp9_starts_keyframe(&[0x00])); // not the beginning
        // I (15-bit id), L: spatial id 0 vs 1.
        assert!(vp9_starts_keyframe(&[0xa8, 0x80, 0x01, 0x00, 0x00]));
        assert!(!vp9_starts_keyframe(&[0xa8, 0x80, 0x01, 0x02, 0x00]));
    }

    #[test]
    fn h264_keyframes() {
        assert!(h264_starts_keyframe(&[0x67, 0x42])); // SPS
        assert!(h264_starts_keyframe(&[0x65, 0x88])); // IDR
        assert!(!h264_starts_keyframe(&[0x41, 0x9a])); // non-IDR slice
        // STAP-A with SPS then PPS.
        assert!(h264_starts_keyframe(&[
            0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce
        ]));
        // STAP-A with only PPS.
        assert!(!h264_starts_keyframe(&[0x78, 0x00, 0x02, 0x68, 0xce]));
        // FU-A start of IDR, and its continuation.
        assert!(h264_starts_keyframe(&[0x7c, 0x85, 0x00]));
        assert!(!h264_starts_keyframe(&[0x7c, 0x05, 0x00]));
    }

    #[test]
    fn av1_new_sequence() {
        assert!(av1_starts_keyframe(&[0x18]));
        assert!(!av1_starts_keyframe(&[0x10]));
    }
}
