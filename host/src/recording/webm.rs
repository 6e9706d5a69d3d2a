//! WebM (Matroska with VP8/VP9/AV1 video and Opus audio): the default recording, one file per
//! segment with video and audio together, playable in a browser's `<video>` and in ffplay.
//!
//! Written front to back over any `impl Write`, as a live stream: the Segment and each
//! Cluster have "unknown" size, so nothing is ever rewritten and a file cut short by a crash
//! is valid up to its last whole block (what browsers' MediaRecorder produces, too). A new
//! cluster starts at each video keyframe (so every cluster can be decoded on its own) and at
//! least every [`MAX_CLUSTER_MS`]. Timestamps are milliseconds on the caller's timeline.
//!
//! EBML is written by hand: the handful of elements a live WebM needs (Matroska spec,
//! RFC 9559) is less code than adapting a general-purpose muxer, and no pure-Rust muxer crate
//! is maintained.

use super::frames::Codec;
use std::io::{self, Write};

/// A cluster's blocks carry 16-bit signed offsets from its timestamp: start a new one well
/// before that runs out (and often enough for players that seek by cluster).
pub const MAX_CLUSTER_MS: u64 = 5_000;

const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const CODEC_DELAY: u32 = 0x56AA;
const SEEK_PRE_ROLL: u32 = 0x56BB;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
/// The reserved "unknown size" value of an 8-byte size field.
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// Track numbers in the file.
const VIDEO_TRACK: u8 = 1;
const AUDIO_TRACK: u8 = 2;

/// What the file carries.
#[derive(Debug, Clone, Copy)]
pub struct WebmTracks {
    /// Video codec and picture size.
    pub video: Option<(Codec, u16, u16)>,
    pub audio: bool,
}

/// Which track a block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Video,
    Audio,
}

/// Writes one WebM file.
pub struct WebmWriter<W: Write> {
    out: W,
    tracks: WebmTracks,
    /// The open cluster's timestamp (ms).
    cluster: Option<u64>,
    /// The last block's time, so time never runs backwards in the file.
    last_ms: u64,
    blocks: u64,
}

impl<W: Write> WebmWriter<W> {
    /// Write the EBML header, the Segment's start, Info and Tracks.
    pub fn new(mut out: W, tracks: WebmTracks) -> io::Result<Self> {
        if let Some((codec, _, _)) = tracks.video
            && !matches!(codec, Codec::Vp8 | Codec::Vp9 | Codec::Av1)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("WebM carries VP8, VP9 or AV1 video, not {codec:?}"),
            ));
        }
        let mut head = Vec::new();
        element(&mut head, EBML, &{
            let mut b = Vec::new();
            uint(&mut b, EBML_VERSION, 1);
            uint(&mut b, EBML_READ_VERSION, 1);
            uint(&mut b, EBML_MAX_ID_LENGTH, 4);
            uint(&mut b, EBML_MAX_SIZE_LENGTH, 8);
            string(&mut b, DOC_TYPE, "webm");
            uint(&mut b, DOC_TYPE_VERSION, 4);
            uint(&mut b, DOC_TYPE_READ_VERSION, 2);
            b
        });
        id(&mut head, SEGMENT);
        head.extend_from_slice(&UNKNOWN_SIZE);
        element(&mut head, INFO, &{
            let mut b = Vec::new();
            uint(&mut b, TIMESTAMP_SCALE, 1_000_000); // 1 ms
            let app = concat!("switchboard ", env!("CARGO_PKG_VERSION"));
            string(&mut b, MUXING_APP, app);
            string(&mut b, WRITING_APP, app);
            b
        });
        let mut entries = Vec::new();
        if let Some((codec, width, height)) = tracks.video {
            element(&mut entries, TRACK_ENTRY, &{
                let mut b = Vec::new();
                uint(&mut b, TRACK_NUMBER, VIDEO_TRACK as u64);
                uint(&mut b, TRACK_UID, VIDEO_TRACK as u64);
                uint(&mut b, TRACK_TYPE, 1);
                let codec_id = match codec {
                    Codec::Vp8 => "V_VP8",
                    Codec::Vp9 => "V_VP9",
                    _ => "V_AV1",
                };
                string(&mut b, CODEC_ID, codec_id);
                element(&mut b, VIDEO, &{
                    let mut v = Vec::new();
                    uint(&mut v, PIXEL_WIDTH, width as u64);
                    uint(&mut v, PIXEL_HEIGHT, height as u64);
                    v
                });
                b
            });
        }
        if tracks.audio {
            element(&mut entries, TRACK_ENTRY, &{
                let mut b = Vec::new();
                uint(&mut b, TRACK_NUMBER, AUDIO_TRACK as u64);
                uint(&mut b, TRACK_UID, AUDIO_TRACK as u64);
                uint(&mut b, TRACK_TYPE, 2);
                string(&mut b, CODEC_ID, "A_OPUS");
                element(&mut b, CODEC_PRIVATE, &opus_head());
                uint(&mut b, CODEC_DELAY, 0);
                uint(&mut b, SEEK_PRE_ROLL, 80_000_000); // 80 ms, as the Opus mapping asks
                element(&mut b, AUDIO, &{
                    let mut a = Vec::new();
                    float(&mut a, SAMPLING_FREQUENCY, 48_000.0);
                    uint(&mut a, CHANNELS, 2);
                    a
                });
                b
            });
        }
        element(&mut head, TRACKS, &entries);
        out.write_all(&head)?;
        Ok(WebmWriter {
            out,
            tracks,
            cluster: None,
            last_ms: 0,
            blocks: 0,
        })
    }

    /// Write one frame of `track` at `ms` on the file's timeline.
    pub fn write(&mut self, track: Track, data: &[u8], keyframe: bool, ms: u64) -> io::Result<()> {
        let number = match track {
            Track::Video if self.tracks.video.is_some() => VIDEO_TRACK,
            Track::Audio if self.tracks.audio => AUDIO_TRACK,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("this WebM file has no {track:?} track"),
                ));
            }
        };
        let ms = ms.max(self.last_ms);
        self.last_ms = ms;
        let video_key = track == Track::Video && keyframe;
        let start_cluster = match self.cluster {
            None => true,
            Some(start) => ms - start >= MAX_CLUSTER_MS || (video_key && ms > start),
        };
        if start_cluster {
            let mut b = Vec::with_capacity(24);
            id(&mut b, CLUSTER);
            b.extend_from_slice(&UNKNOWN_SIZE);
            uint(&mut b, TIMESTAMP, ms);
            self.out.write_all(&b)?;
            self.cluster = Some(ms);
        }
        let offset = (ms - self.cluster.unwrap_or(ms)) as i16;
        let mut header = Vec::with_capacity(16);
        id(&mut header, SIMPLE_BLOCK);
        size(&mut header, 4 + data.len() as u64);
        header.push(0x80 | number); // track number as a 1-byte vint
        header.extend_from_slice(&offset.to_be_bytes());
        // Audio blocks are all keyframes; video ones only when they are.
        header.push(if keyframe || track == Track::Audio {
            0x80
        } else {
            0
        });
        self.out.write_all(&header)?;
        self.out.write_all(data)?;
        self.blocks += 1;
        Ok(())
    }

    /// Push what was written to the output (a file: the kernel).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Flush and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The picture size in a VP8 keyframe's header (RFC 6386 §9.1), if `frame` is one.
pub fn vp8_dimensions(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// OpusHead for CodecPrivate (RFC 7845 §5.1): stereo, no pre-skip, 48 kHz.
fn opus_head() -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1);
    head.push(2);
    head.extend_from_slice(&0u16.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    head
}

fn id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// An EBML size as the shortest vint that holds it.
fn size(out: &mut Vec<u8>, n: u64) {
    let mut len = 1;
    while len < 8 && n >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    let marked = n | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

fn element(out: &mut Vec<u8>, element_id: u32, body: &[u8]) {
    id(out, element_id);
    size(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn uint(out: &mut Vec<u8>, element_id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    element(out, element_id, &bytes[skip..]);
}

fn float(out: &mut Vec<u8>, element_id: u32, value: f64) {
    element(out, element_id, &value.to_be_bytes());
}

fn string(out: &mut Vec<u8>, element_id: u32, value: &str) {
    element(out, element_id, value.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_the_shortest_vint() {
        let enc = |n| {
            let mut v = Vec::new();
            size(&mut v, n);
            v
        };
        assert_eq!(enc(0), [0x80]);
        assert_eq!(enc(126), [0xFE]);
        // 127 is all ones in one byte: reserved for "unknown", so two bytes.
        assert_eq!(enc(127), [0x40, 0x7F]);
        assert_eq!(enc(1000), [0x43, 0xE8]);
    }

    #[test]
    fn clusters_start_at_keyframes_and_blocks_carry_offsets() {
        let tracks = WebmTracks {
            video: Some((Codec::Vp8, 320, 240)),
            audio: true,
        };
        let mut w = WebmWriter::new(Vec::new(), tracks).unwrap();
        w.write(Track::Video, b"key", true, 0).unwrap();
        w.write(Track::Audio, b"opus", true, 20).unwrap();
        w.write(Track::Video, b"inter", false, 33).unwrap();
        w.write(Track::Video, b"key2", true, 2000).unwrap();
        let out = w.finish().unwrap();
        assert!(out.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]));
        let clusters = out
            .windows(4)
            .filter(|w| w == &[0x1F, 0x43, 0xB6, 0x75])
            .count();
        assert_eq!(clusters, 2, "a new cluster at the second keyframe");
        // The inter frame: SimpleBlock, size 4+5, track 1, offset 33, not a keyframe.
        let inter = [0xA3, 0x89, 0x81, 0x00, 33, 0x00];
        assert!(out.windows(6).any(|w| w == inter));
        assert!(
            WebmWriter::new(
                Vec::new(),
                WebmTracks {
                    video: Some((Codec::H264, 1, 1)),
                    audio: false
                }
            )
            .is_err()
        );
    }

    #[test]
    fn vp8_keyframes_tell_their_size() {
        let mut key = vec![0x10, 0, 0, 0x9d, 0x01, 0x2a];
        key.extend_from_slice(&640u16.to_le_bytes());
        key.extend_from_slice(&360u16.to_le_bytes());
        assert_eq!(vp8_dimensions(&key), Some((640, 360)));
        key[0] |= 1;
        assert_eq!(vp8_dimensions(&key), None, "an inter frame");
    }
}
