//! One recording's files: frames from both tracks in, segments out.
//!
//! A [`Segmenter`] takes each track's frames (from [`super::frames`]) with the time they
//! arrived, puts both tracks on one timeline, and writes them into the containers its
//! [`Layout`] asks for. A segment starts at a video keyframe (audio-only: at any frame) and
//! ends at the first keyframe after the segment length, so every closed segment is a file
//! that plays on its own. Files come from a [`FileMaker`] (the disk in production, memory in
//! tests); each segment's files are flushed at every keyframe, so a crash loses at most the
//! last group of pictures and leaves a file that plays up to there.
//!
//! Time is passed in (`Duration` since the recording began): no clock is read here.

use super::frames::{Codec, Frame};
use super::ivf::IvfWriter;
use super::ogg::OggOpusWriter;
use super::webm::{Track, WebmTracks, WebmWriter, vp8_dimensions};
use std::io::{self, Write};
use std::time::Duration;

/// A keyframe this close to the segment length counts as reaching it: publishers' timestamps
/// jitter, and a keyframe every N seconds must cut N-second segments at every one.
pub const SEGMENT_SLACK: Duration = Duration::from_millis(50);

/// Where a segment's files go: `name` is the file name (e.g. `seg-00001.webm`) of segment
/// `index`.
pub trait FileMaker {
    type File: Write;
    fn create(&mut self, index: u32, name: &str) -> io::Result<Self::File>;
}

/// Which files a recording writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Video and audio together, one WebM per segment (VP8/VP9/AV1 video only).
    pub webm: bool,
    /// One file per track and segment: IVF (VP8/VP9/AV1), Annex-B `.h264`, Ogg (Opus).
    pub per_track: bool,
}

/// A segment that was closed: its index, its files and how long it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedSegment {
    pub index: u32,
    pub files: Vec<String>,
    pub duration: Duration,
}

/// What the recording carries.
#[derive(Debug, Clone, Copy)]
pub struct Tracks {
    pub video: Option<Codec>,
    pub audio: bool,
}

enum Writer<F: Write> {
    Webm(WebmWriter<F>),
    Ivf(IvfWriter<F>),
    AnnexB(F),
    Ogg(OggOpusWriter<F>),
}

impl<F: Write> Writer<F> {
    fn finish(self) -> io::Result<()> {
        match self {
            Writer::Webm(w) => w.finish().map(drop),
            Writer::Ivf(w) => w.finish().map(drop),
            Writer::AnnexB(mut f) => f.flush(),
            Writer::Ogg(w) => w.finish().map(drop),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Writer::Webm(w) => w.flush(),
            Writer::Ivf(w) => w.flush(),
            Writer::AnnexB(f) => f.flush(),
            Writer::Ogg(w) => w.flush(),
        }
    }
}

struct Open<F: Write> {
    index: u32,
    /// Start on the recording's timeline.
    start: Duration,
    /// The last frame's time on the timeline.
    last: Duration,
    writers: Vec<Writer<F>>,
    files: Vec<String>,
}

/// Writes one recording's segments.
pub struct Segmenter<M: FileMaker> {
    files: M,
    layout: Layout,
    tracks: Tracks,
    segment_length: Duration,
    /// Per track: (offset of its frame times on the timeline), set at its first frame.
    video_offset: Option<Duration>,
    audio_offset: Option<Duration>,
    open: Option<Open<M::File>>,
    next_index: u32,
    closed: Vec<ClosedSegment>,
}

impl<M: FileMaker> Segmenter<M> {
    pub fn new(files: M, layout: Layout, tracks: Tracks, segment_length: Duration) -> Self {
        Segmenter {
            files,
            layout,
            tracks,
            segment_length,
            video_offset: None,
            audio_offset: None,
            open: None,
            next_index: 1,
            closed: Vec::new(),
        }
    }

    /// A video frame that arrived `at` (since the recording began).
    pub fn video(&mut self, frame: &Frame, at: Duration) -> io::Result<()> {
        let Some(codec) = self.tracks.video else {
            return Ok(());
        };
        let offset = *self
            .video_offset
            .get_or_insert_with(|| at.saturating_sub(ticks(frame.ticks, codec)));
        let t = offset + ticks(frame.ticks, codec);
        if frame.keyframe {
            let due = self
                .open
                .as_ref()
                .is_none_or(|o| t.saturating_sub(o.start) + SEGMENT_SLACK >= self.segment_length);
            if due {
                self.rotate(t, Some(frame))?;
            }
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(()); // before the first keyframe
        };
        open.last = open.last.max(t);
        let ms = t.saturating_sub(open.start).as_millis() as u64;
        for w in &mut open.writers {
            match w {
                Writer::Webm(w) => w.write(Track::Video, &frame.data, frame.keyframe, ms)?,
                Writer::Ivf(w) => w.write(&relative(frame, ms, 90))?,
                Writer::AnnexB(f) => f.write_all(&frame.data)?,
                Writer::Ogg(_) => {}
            }
        }
        if frame.keyframe {
            for w in &mut open.writers {
                w.flush()?;
            }
        }
        Ok(())
    }

    /// An Opus frame that arrived `at` (since the recording began).
    pub fn audio(&mut self, frame: &Frame, at: Duration) -> io::Result<()> {
        if !self.tracks.audio {
            return Ok(());
        }
        let offset = *self
            .audio_offset
            .get_or_insert_with(|| at.saturating_sub(ticks(frame.ticks, Codec::Opus)));
        let t = offset + ticks(frame.ticks, Codec::Opus);
        if self.tracks.video.is_none() {
            let due = self
                .open
                .as_ref()
                .is_none_or(|o| t.saturating_sub(o.start) >= self.segment_length);
            if due {
                self.rotate(t, None)?;
            }
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(()); // waiting for the first video keyframe
        };
        if t < open.start {
            return Ok(()); // sounds from before the segment's first picture
        }
        open.last = open.last.max(t);
        let ms = (t - open.start).as_millis() as u64;
        for w in &mut open.writers {
            match w {
                Writer::Webm(w) => w.write(Track::Audio, &frame.data, true, ms)?,
                Writer::Ogg(w) => w.write(&relative(frame, ms, 48))?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Close the open segment (stop, publisher gone, shutdown) and return every closed one.
    pub fn finish(mut self) -> io::Result<Vec<ClosedSegment>> {
        self.close()?;
        Ok(self.closed)
    }

    /// Segments closed so far and not yet taken.
    pub fn take_closed(&mut self) -> Vec<ClosedSegment> {
        std::mem::take(&mut self.closed)
    }

    fn rotate(&mut self, start: Duration, keyframe: Option<&Frame>) -> io::Result<()> {
        self.close()?;
        let index = self.next_index;
        self.next_index += 1;
        let mut writers = Vec::new();
        let mut files = Vec::new();
        let name = |ext: &str| format!("seg-{index:05}.{ext}");
        let video = self.tracks.video;
        let webm = video.is_none_or(|c| matches!(c, Codec::Vp8 | Codec::Vp9 | Codec::Av1));
        if self.layout.webm && webm {
            let (width, height) = keyframe
                .and_then(|f| vp8_dimensions(&f.data))
                .unwrap_or((0, 0));
            let file = name("webm");
            let tracks = WebmTracks {
                video: video.map(|c| (c, width, height)),
                audio: self.tracks.audio,
            };
            writers.push(Writer::Webm(WebmWriter::new(
                self.files.create(index, &file)?,
                tracks,
            )?));
            files.push(file);
        }
        // H.264 does not go in WebM: a WebM recording of it is written per track instead
        // (Annex-B `.h264` and Ogg), rather than not at all.
        if self.layout.per_track || !webm {
            match video {
                Some(Codec::H264) => {
                    let file = name("h264");
                    writers.push(Writer::AnnexB(self.files.create(index, &file)?));
                    files.push(file);
                }
                Some(codec) => {
                    let file = name("ivf");
                    writers.push(Writer::Ivf(IvfWriter::new(
                        self.files.create(index, &file)?,
                        codec,
                        0,
                        0,
                    )?));
                    files.push(file);
                }
                None => {}
            }
            if self.tracks.audio {
                let file = name("ogg");
                writers.push(Writer::Ogg(OggOpusWriter::new(
                    self.files.create(index, &file)?,
                    index,
                )?));
                files.push(file);
            }
        }
        self.open = Some(Open {
            index,
            start,
            last: start,
            writers,
            files,
        });
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        for w in open.writers {
            w.finish()?;
        }
        self.closed.push(ClosedSegment {
            index: open.index,
            files: open.files,
            duration: open.last - open.start,
        });
        Ok(())
    }
}

/// `frame` with its time replaced by `ms` in a `per_ms`-ticks-per-millisecond clock.
fn relative(frame: &Frame, ms: u64, per_ms: u64) -> Frame {
    Frame {
        data: frame.data.clone(),
        keyframe: frame.keyframe,
        ticks: ms * per_ms,
    }
}

fn ticks(ticks: u64, codec: Codec) -> Duration {
    Duration::from_micros(ticks * 1_000_000 / codec.clock_rate() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    /// Files in memory, by name.
    #[derive(Clone, Default)]
    struct Memory(Rc<RefCell<BTreeMap<String, Vec<u8>>>>);

    struct MemoryFile(Rc<RefCell<BTreeMap<String, Vec<u8>>>>, String);

    impl Write for MemoryFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .borrow_mut()
                .get_mut(&self.1)
                .unwrap()
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl FileMaker for Memory {
        type File = MemoryFile;
        fn create(&mut self, _index: u32, name: &str) -> io::Result<MemoryFile> {
            self.0.borrow_mut().insert(name.to_owned(), Vec::new());
            Ok(MemoryFile(self.0.clone(), name.to_owned()))
        }
    }

    fn vp8(key: bool, i: u64) -> Frame {
        let mut data = vec![if key { 0x10 } else { 0x11 }, 0, 0, 0x9d, 0x01, 0x2a];
        data.extend_from_slice(&320u16.to_le_bytes());
        data.extend_from_slice(&240u16.to_le_bytes());
        Frame {
            data: Bytes::from(data),
            keyframe: key,
            ticks: 3000 * i,
        }
    }

    fn opus(i: u64) -> Frame {
        Frame {
            data: Bytes::from_static(&[0xfc, 1, 2]),
            keyframe: true,
            ticks: 960 * i,
        }
    }

    /// 10 s at 30 fps with a keyframe every 2 s, audio every 20 ms.
    fn record(layout: Layout, tracks: Tracks, memory: &Memory) -> Vec<ClosedSegment> {
        let mut s = Segmenter::new(memory.clone(), layout, tracks, Duration::from_secs(3));
        let ms = Duration::from_millis;
        for t in (0..10_000u64).step_by(10) {
            if t % 20 == 0 {
                s.audio(&opus(t / 20), ms(t + 5)).unwrap();
            }
            if t % 30 == 0 && t / 30 < 333 {
                let i = t / 30;
                s.video(&vp8(i % 60 == 0, i), ms(t + 40)).unwrap();
            }
        }
        s.finish().unwrap()
    }

    #[test]
    fn segments_rotate_at_the_first_keyframe_after_their_length() {
        let memory = Memory::default();
        let layout = Layout {
            webm: true,
            per_track: true,
        };
        let tracks = Tracks {
            video: Some(Codec::Vp8),
            audio: true,
        };
        let closed = record(layout, tracks, &memory);
        // Keyframes every 2 s; 3 s segments: cuts at 4 s and 8 s.
        assert_eq!(closed.len(), 3);
        assert_eq!(
            closed[0].files,
            ["seg-00001.webm", "seg-00001.ivf", "seg-00001.ogg"]
        );
        let durations: Vec<u128> = closed.iter().map(|c| c.duration.as_millis()).collect();
        assert!((3960..=4000).contains(&durations[0]), "{durations:?}");
        assert!((3960..=4000).contains(&durations[1]), "{durations:?}");
        let files = memory.0.borrow();
        assert_eq!(files.len(), 9);
        for (name, bytes) in files.iter() {
            assert!(bytes.len() > 100, "{name} has content");
        }
        // Every WebM starts with the EBML header and its first block is a keyframe.
        for c in &closed {
            let webm = &files[&c.files[0]];
            assert!(webm.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]));
            let first_video = webm.windows(3).position(|w| w == [0xA3, 0x80 | 14, 0x81]);
            let at = first_video.expect("a video block");
            assert_eq!(
                webm[at + 5] & 0x80,
                0x80,
                "{}: starts with a keyframe",
                c.files[0]
            );
        }
    }

    #[test]
    fn audio_only_and_h264_recordings_get_their_own_files() {
        let memory = Memory::default();
        let closed = record(
            Layout {
                webm: true,
                per_track: false,
            },
            Tracks {
                video: None,
                audio: true,
            },
            &memory,
        );
        assert_eq!(closed.len(), 4, "audio-only: cut at every 3 s");
        assert!(
            closed
                .iter()
                .all(|c| c.files.len() == 1 && c.files[0].ends_with(".webm"))
        );

        let memory = Memory::default();
        let mut s = Segmenter::new(
            memory.clone(),
            // WebM asked for: H.264 falls back to its own Annex-B file.
            Layout {
                webm: true,
                per_track: false,
            },
            Tracks {
                video: Some(Codec::H264),
                audio: false,
            },
            Duration::from_secs(60),
        );
        let idr = Frame {
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65, 1]),
            keyframe: true,
            ticks: 0,
        };
        s.video(&idr, Duration::ZERO).unwrap();
        let closed = s.finish().unwrap();
        assert_eq!(closed[0].files, ["seg-00001.h264"], "no WebM for H.264");
        assert_eq!(memory.0.borrow()["seg-00001.h264"], [0, 0, 0, 1, 0x65, 1]);
    }
}
