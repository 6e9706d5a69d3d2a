//! Ogg Opus (RFC 7845): one file per audio track, as the livestream services we replace
//! produce. Pages come from the `ogg` crate; this module writes the two header packets and
//! each packet's granule position (48 kHz samples up to its end).
//!
//! Every packet ends its own page, so a file cut short by a crash is valid up to its last
//! whole packet; a clean finish marks the last page end-of-stream.

use super::frames::Frame;
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use std::io::{self, Write};

/// Channels declared in the header: WebRTC's Opus is `opus/48000/2` (RFC 7587 §7).
const CHANNELS: u8 = 2;
/// Written into OpusTags.
const VENDOR: &str = concat!("switchboard ", env!("CARGO_PKG_VERSION"));

/// Writes one Opus track as Ogg.
pub struct OggOpusWriter<W: Write> {
    pages: PacketWriter<'static, W>,
    serial: u32,
    /// The packet held back so the last one can be marked end-of-stream, with its granule.
    pending: Option<(Vec<u8>, u64)>,
    packets: u64,
}

impl<W: Write> OggOpusWriter<W> {
    /// Write the identification and comment headers; `serial` names the logical stream.
    pub fn new(out: W, serial: u32) -> io::Result<Self> {
        let mut pages = PacketWriter::new(out);
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(CHANNELS);
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: WebRTC carries none
        head.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0: mono or stereo
        pages.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
        tags.extend_from_slice(VENDOR.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        pages.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;
        Ok(OggOpusWriter {
            pages,
            serial,
            pending: None,
            packets: 0,
        })
    }

    /// Write one Opus packet (its `ticks` are 48 kHz samples since the track began).
    pub fn write(&mut self, frame: &Frame) -> io::Result<()> {
        let granule = frame.ticks + opus_samples(&frame.data) as u64;
        if let Some((data, granule)) = self.pending.take() {
            self.pages
                .write_packet(data, self.serial, PacketWriteEndInfo::EndPage, granule)?;
        }
        self.pending = Some((frame.data.to_vec(), granule));
        self.packets += 1;
        Ok(())
    }

    /// Push what was written to the output (a file: the kernel). The held-back packet
    /// stays held: a crash loses at most that one.
    pub fn flush(&mut self) -> io::Result<()> {
        self.pages.inner_mut().flush()
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Write the held-back packet as the end of the stream and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some((data, granule)) = self.pending.take() {
            self.pages
                .write_packet(data, self.serial, PacketWriteEndInfo::EndStream, granule)?;
        }
        let mut out = self.pages.into_inner();
        out.flush()?;
        Ok(out)
    }
}

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 §3.1); 0 for a packet
/// too short to say.
pub fn opus_samples(packet: &[u8]) -> u32 {
    let Some(&toc) = packet.first() else {
        return 0;
    };
    let config = (toc >> 3) as usize;
    // Frame duration in 1/400 s (2.5 ms) units per configuration range.
    let frame_400ths = match config {
        0..=11 => [4, 8, 16, 24][config % 4], // SILK: 10, 20, 40, 60 ms
        12..=15 => [4, 8][config % 2],        // Hybrid: 10, 20 ms
        _ => [1, 2, 4, 8][config % 4],        // CELT: 2.5, 5, 10, 20 ms
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => packet.get(1).map_or(0, |b| (b & 0x3f) as u32),
    };
    frame_400ths * 120 * frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn packet_durations_come_from_the_toc() {
        assert_eq!(opus_samples(&[0xfc, 0]), 960); // config 31: CELT 20 ms, one frame
        assert_eq!(opus_samples(&[0x78]), 960); // config 15: Hybrid 20 ms
        assert_eq!(opus_samples(&[0x01]), 960); // config 0: SILK 10 ms, two frames
        assert_eq!(opus_samples(&[0x0b, 0x03]), 2880); // config 1: SILK 20 ms, code 3: 3 frames
        assert_eq!(opus_samples(&[0x0b]), 0); // code 3 without its count byte
        assert_eq!(opus_samples(&[]), 0);
    }

    #[test]
    fn headers_then_one_page_per_packet_with_granules() {
        let mut w = OggOpusWriter::new(Vec::new(), 7).unwrap();
        for i in 0..3u64 {
            w.write(&Frame {
                data: Bytes::from(vec![0xfc, 0xff, i as u8]),
                keyframe: true,
                ticks: 960 * i,
            })
            .unwrap();
        }
        let out = w.finish().unwrap();
        let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(out));
        let head = reader.read_packet_expected().unwrap();
        assert!(head.data.starts_with(b"OpusHead"));
        assert_eq!(head.data[9], 2);
        let tags = reader.read_packet_expected().unwrap();
        assert!(tags.data.starts_with(b"OpusTags"));
        let mut granules = Vec::new();
        while let Some(p) = reader.read_packet().unwrap() {
            granules.push((p.absgp_page(), p.last_in_stream()));
        }
        assert_eq!(granules, [(960, false), (1920, false), (2880, true)]);
    }
}
