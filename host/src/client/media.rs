//! Synthetic media with correct keyframe markers, for load generation and tests.
//!
//! VP8 payloads carry a real RTP payload descriptor and frame tag (RFC 7741), so anything
//! that inspects keyframes (viewers, recorders, our tests) sees the right thing; the bytes
//! after the frame header are filler, as no one decodes them.

use bytes::{BufMut, Bytes, BytesMut};

/// Build the payload of one VP8 RTP packet.
///
/// `start` marks the first packet of a frame (S bit); `keyframe` sets the frame tag's P bit
/// to 0 and writes the keyframe start code and dimensions. `stamp` (e.g. send time in µs) is
/// embedded after the header so receivers can measure one-way delay.
pub fn vp8_payload(start: bool, keyframe: bool, stamp: u64, size: usize) -> Bytes {
    vp8_payload_tagged(start, keyframe, stamp, size, 0xa5)
}

/// [`vp8_payload`] with `fill` as the filler byte, so a receiver can tell which stream (e.g.
/// which simulcast layer) a packet came from.
pub fn vp8_payload_tagged(start: bool, keyframe: bool, stamp: u64, size: usize, fill: u8) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(20));
    b.put_u8(if start { 0x10 } else { 0x00 }); // X=0 R=0 N=0 S PID=0
    if start {
        // Frame tag: bit0 = !keyframe, version 0, show_frame=1, partition size (dummy).
        let tag: u32 = (if keyframe { 0 } else { 1 }) | (1 << 4) | (64 << 5);
        b.put_u8(tag as u8);
        b.put_u8((tag >> 8) as u8);
        b.put_u8((tag >> 16) as u8);
        if keyframe {
            b.put_slice(&[0x9d, 0x01, 0x2a]);
            b.put_u16_le(640);
            b.put_u16_le(360);
        }
    }
    b.put_u64(stamp);
    // At least one filler byte, so the tag is always there.
    let len = size.max(b.len() + 1);
    b.resize(len, fill);
    b.freeze()
}

/// Is this VP8 RTP payload the first packet of a keyframe?
pub fn vp8_is_keyframe(payload: &[u8]) -> bool {
    crate::sfu::codec::MediaCodec::Vp8.starts_keyframe(payload) == Some(true)
}

/// The filler byte of one of our payloads: which simulcast layer sent it (see
/// [`vp8_payload_tagged`]).
pub fn vp8_fill(payload: &[u8]) -> Option<u8> {
    payload.last().copied()
}

/// The stamp `vp8_payload` embedded, if this payload is one of ours.
pub fn vp8_stamp(payload: &[u8]) -> Option<u64> {
    let offset = match payload.first()? {
        b if b & 0x10 != 0 && payload.get(1)? & 1 == 0 => 11,
        b if b & 0x10 != 0 => 4,
        _ => 1,
    };
    let bytes: [u8; 8] = payload.get(offset..offset + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// A 20 ms Opus-sized payload (filler; nothing decodes it) with an embedded stamp.
pub fn opus_payload(stamp: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(80);
    b.put_u8(0xfc); // TOC: CELT FB 20 ms, one frame
    b.put_u64(stamp);
    while b.len() < 80 {
        b.put_u8(0x5a);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_markers_round_trip() {
        let k = vp8_payload(true, true, 42, 1000);
        let d = vp8_payload(true, false, 43, 1000);
        let c = vp8_payload(false, false, 44, 1000);
        assert!(vp8_is_keyframe(&k));
        assert!(!vp8_is_keyframe(&d));
        assert!(!vp8_is_keyframe(&c));
        assert_eq!(vp8_stamp(&k), Some(42));
        assert_eq!(vp8_stamp(&d), Some(43));
        assert_eq!(vp8_stamp(&c), Some(44));
        assert_eq!(k.len(), 1000);
    }
}
