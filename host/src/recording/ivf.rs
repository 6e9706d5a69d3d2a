//! IVF (the VP8/VP9/AV1 elementary-stream file of libvpx/libaom): a 32-byte header, then per
//! frame a 12-byte header (size, 64-bit timestamp) and the frame. One file per video track, as
//! the livestream services we replace produce.
//!
//! Written over any `impl Write`, front to back: the header's frame count stays 0 ("unknown",
//! which every reader accepts), so a file cut short by a crash is still valid up to its last
//! whole frame. Timestamps are in the RTP clock (1/90000 s).

use super::frames::{Codec, Frame};
use std::io::{self, Write};

/// The header's size and the per-frame header's.
const FILE_HEADER: usize = 32;

/// Writes one video track as IVF.
pub struct IvfWriter<W: Write> {
    out: W,
    frames: u64,
}

impl<W: Write> IvfWriter<W> {
    /// Write the header for `codec` (a video codec IVF carries) with the picture size, when
    /// known (0 otherwise: decoders read it from the bitstream).
    pub fn new(mut out: W, codec: Codec, width: u16, height: u16) -> io::Result<Self> {
        let fourcc: &[u8; 4] = match codec {
            Codec::Vp8 => b"VP80",
            Codec::Vp9 => b"VP90",
            Codec::Av1 => b"AV01",
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("IVF carries VP8, VP9 or AV1, not {other:?}"),
                ));
            }
        };
        let mut header = [0u8; FILE_HEADER];
        header[0..4].copy_from_slice(b"DKIF");
        header[4..6].copy_from_slice(&0u16.to_le_bytes()); // version
        header[6..8].copy_from_slice(&(FILE_HEADER as u16).to_le_bytes());
        header[8..12].copy_from_slice(fourcc);
        header[12..14].copy_from_slice(&width.to_le_bytes());
        header[14..16].copy_from_slice(&height.to_le_bytes());
        // Time base 1/90000: the RTP video clock, so frame times need no conversion.
        header[16..20].copy_from_slice(&codec.clock_rate().to_le_bytes());
        header[20..24].copy_from_slice(&1u32.to_le_bytes());
        // 24..28: frame count, 0 = unknown; 28..32 unused.
        out.write_all(&header)?;
        Ok(IvfWriter { out, frames: 0 })
    }

    pub fn write(&mut self, frame: &Frame) -> io::Result<()> {
        let mut header = [0u8; 12];
        header[0..4].copy_from_slice(&(frame.data.len() as u32).to_le_bytes());
        header[4..12].copy_from_slice(&frame.ticks.to_le_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(&frame.data)?;
        self.frames += 1;
        Ok(())
    }

    /// Push what was written to the output (a file: the kernel).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flush and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn header_and_frames_are_laid_out_as_libvpx_reads_them() {
        let mut w = IvfWriter::new(Vec::new(), Codec::Vp8, 640, 480).unwrap();
        for (i, key) in [true, false].into_iter().enumerate() {
            w.write(&Frame {
                data: Bytes::from(vec![i as u8; 5]),
                keyframe: key,
                ticks: 3000 * i as u64,
            })
            .unwrap();
        }
        let out = w.finish().unwrap();
        assert_eq!(&out[0..4], b"DKIF");
        assert_eq!(&out[8..12], b"VP80");
        assert_eq!(u16::from_le_bytes([out[12], out[13]]), 640);
        assert_eq!(u32::from_le_bytes(out[16..20].try_into().unwrap()), 90_000);
        assert_eq!(out.len(), 32 + 2 * (12 + 5));
        let second = 32 + 12 + 5;
        assert_eq!(
            u32::from_le_bytes(out[second..second + 4].try_into().unwrap()),
            5
        );
        assert_eq!(
            u64::from_le_bytes(out[second + 4..second + 12].try_into().unwrap()),
            3000
        );
        assert!(IvfWriter::new(Vec::new(), Codec::Opus, 0, 0).is_err());
    }
}
