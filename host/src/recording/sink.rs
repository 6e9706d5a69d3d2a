//! A recording running: a room's media tap drained into a [`Segmenter`] on a thread of its own.
//!
//! The thread owns everything that touches the disk, so a slow or full disk never holds a
//! tokio worker (and so never a viewer's driver): the tap's bounded queue fills and the
//! recording loses its own packets, counted by the tap, while forwarding goes on. The thread
//! drains the queue, sleeps up to [`IDLE_WAIT`] when it is empty, and stops when asked, when
//! the maximum duration is reached or when a write fails (the disk is full); it always
//! closes the open segment, so every file it leaves plays.

use super::frames::{AssemblerStats, Codec, FrameAssembler};
use super::segment::{ClosedSegment, FileMaker, Layout, Segmenter, Tracks};
use crate::sfu::tap::MediaTap;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest the thread sleeps with an empty queue before looking again (and at its stop flag).
pub const IDLE_WAIT: Duration = Duration::from_millis(10);
/// Packets the tap holds for the thread: a few seconds of a 2.5 Mbit/s stream, so a disk
/// that stalls for that long loses nothing.
pub const TAP_QUEUE: usize = 2048;
/// How long a recording that wants video waits for it before recording audio alone.
pub const VIDEO_WAIT: Duration = Duration::from_secs(3);

/// Recordings running now, segments closed and packets recordings lost since start (for
/// `/metrics`).
static ACTIVE: AtomicU64 = AtomicU64::new(0);
static SEGMENTS: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// (recordings running, segments closed, packets recordings dropped) since start.
pub fn counters() -> (u64, u64, u64) {
    (
        ACTIVE.load(Ordering::Relaxed),
        SEGMENTS.load(Ordering::Relaxed),
        DROPPED.load(Ordering::Relaxed),
    )
}

/// What to record and how.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    pub segment_length: Duration,
    /// Stop after this long (timeline time); `None`: until stopped.
    pub max_duration: Option<Duration>,
    /// Record video / audio (when the publisher sends them).
    pub video: bool,
    pub audio: bool,
    /// The segments' directory (created if missing).
    pub dir: PathBuf,
}

/// Why a recording ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Stopped by its owner (stop, publisher gone, replaced, shutdown).
    Stopped,
    /// The plan's maximum duration was reached.
    MaxDuration,
    /// A write failed (e.g. the disk is full): what the OS said.
    WriteFailed(String),
}

/// What a finished recording left.
#[derive(Debug)]
pub struct Summary {
    pub ended: Ended,
    pub segments: Vec<ClosedSegment>,
    /// Packets the tap dropped because the thread fell behind.
    pub tap_dropped: u64,
    pub video: AssemblerStats,
    pub audio: AssemblerStats,
}

/// Told of each file a recording creates (segment index, file name), once it exists: the
/// upload queue records it then, so a crash cannot orphan it.
pub type OnOpened = Box<dyn FnMut(u32, &str) + Send>;

/// Files in a directory on disk, buffered.
struct Disk {
    dir: PathBuf,
    on_opened: OnOpened,
}

impl FileMaker for Disk {
    type File = BufWriter<std::fs::File>;
    fn create(&mut self, index: u32, name: &str) -> io::Result<Self::File> {
        let file = std::fs::File::create(self.dir.join(name))?;
        (self.on_opened)(index, name);
        Ok(BufWriter::with_capacity(64 * 1024, file))
    }
}

/// A running recording; [`Recording::stop`] ends it and returns what it wrote.
pub struct Recording {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Summary>,
    /// Set by the thread as it ends, whatever ended it.
    finished: tokio::sync::watch::Receiver<bool>,
}

impl Recording {
    /// Start recording `tap` by `plan`; each file is handed to `on_opened` once created, each
    /// segment to `on_closed` as it closes.
    pub fn start(
        tap: MediaTap,
        plan: Plan,
        on_opened: OnOpened,
        on_closed: impl FnMut(ClosedSegment) + Send + 'static,
    ) -> io::Result<Recording> {
        std::fs::create_dir_all(&plan.dir)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (done, finished) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("recording".into())
            .spawn(move || {
                let summary = run(tap, plan, flag, on_opened, on_closed);
                let _ = done.send(true);
                summary
            })?;
        Ok(Recording {
            stop,
            thread,
            finished,
        })
    }

    /// Wait until the recording ends by itself (maximum duration, write failure) or is
    /// stopped.
    pub async fn finished(&self) {
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// Whether the recording ended by itself (maximum duration, write failure).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// End the recording (closing its segment) and wait for its thread.
    pub async fn stop(self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(Summary {
                ended: Ended::WriteFailed("the recording thread panicked".into()),
                segments: Vec::new(),
                tap_dropped: 0,
                video: AssemblerStats::default(),
                audio: AssemblerStats::default(),
            })
    }
}

fn run(
    mut tap: MediaTap,
    plan: Plan,
    stop: Arc<AtomicBool>,
    on_opened: OnOpened,
    mut on_closed: impl FnMut(ClosedSegment),
) -> Summary {
    let mut on_opened = Some(on_opened);
    let started = Instant::now();
    ACTIVE.fetch_add(1, Ordering::Relaxed);
    let mut dropped_seen = 0;
    // The codec of each track is the one its first packet carries.
    let codec_of = |tap: &MediaTap, kind, pt: u8| {
        tap.codecs(kind)
            .iter()
            .find(|c| c.payload_type == pt)
            .and_then(|c| Codec::from_mime(&c.rtp_codec.mime_type))
    };
    let mut video: Option<FrameAssembler> = None;
    let mut audio: Option<FrameAssembler> = None;
    let mut segmenter: Option<Segmenter<Disk>> = None;
    let mut frames = Vec::new();
    let mut segments = Vec::new();
    let ended = 'record: loop {
        let mut idle = true;
        while let Some(item) = tap.try_recv() {
            idle = false;
            let at = started.elapsed();
            let (is_video, slot) = match item.kind {
                RtpCodecKind::Video if plan.video => (true, &mut video),
                RtpCodecKind::Audio if plan.audio => (false, &mut audio),
                _ => continue,
            };
            if slot.is_none() {
                let pt = item.packet.header.payload_type;
                match codec_of(&tap, item.kind, pt) {
                    Some(codec) if codec.is_video() == is_video => {
                        *slot = Some(FrameAssembler::new(codec));
                    }
                    _ => continue, // a codec we do not record
                }
            }
            let assembler = slot.as_mut().expect("set above");
            assembler.push(&item.packet, &mut frames);
            if frames.is_empty() {
                continue;
            }
            // The tracks are settled when the files open: at the first video frame, or at
            // the first audio frame of a recording without video (none wanted, or none sent
            // within VIDEO_WAIT).
            let settled = is_video || !plan.video || (video.is_none() && at >= VIDEO_WAIT);
            if segmenter.is_none() && !settled {
                frames.clear();
                continue;
            }
            let segmenter = segmenter.get_or_insert_with(|| {
                let tracks = Tracks {
                    video: video.as_ref().map(|v| v.codec()),
                    audio: plan.audio,
                };
                let disk = Disk {
                    dir: plan.dir.clone(),
                    on_opened: on_opened.take().unwrap_or_else(|| Box::new(|_, _| {})),
                };
                Segmenter::new(disk, plan.layout, tracks, plan.segment_length)
            });
            for frame in frames.drain(..) {
                let written = if is_video {
                    segmenter.video(&frame, at)
                } else {
                    segmenter.audio(&frame, at)
                };
                if let Err(e) = written {
                    break 'record Ended::WriteFailed(e.to_string());
                }
            }
            for closed in segmenter.take_closed() {
                SEGMENTS.fetch_add(1, Ordering::Relaxed);
                segments.push(closed.clone());
                on_closed(closed);
            }
            if plan.max_duration.is_some_and(|max| at >= max) {
                break 'record Ended::MaxDuration;
            }
        }
        let dropped = tap.dropped();
        DROPPED.fetch_add(dropped - dropped_seen, Ordering::Relaxed);
        dropped_seen = dropped;
        if stop.load(Ordering::Relaxed) {
            break Ended::Stopped;
        }
        if idle {
            std::thread::park_timeout(IDLE_WAIT);
        }
    };
    let mut ended = ended;
    if let Some(segmenter) = segmenter {
        match segmenter.finish() {
            Ok(closed) => {
                for c in closed {
                    SEGMENTS.fetch_add(1, Ordering::Relaxed);
                    segments.push(c.clone());
                    on_closed(c);
                }
            }
            Err(e) if ended == Ended::Stopped || ended == Ended::MaxDuration => {
                ended = Ended::WriteFailed(e.to_string());
            }
            Err(_) => {}
        }
    }
    ACTIVE.fetch_sub(1, Ordering::Relaxed);
    DROPPED.fetch_add(tap.dropped() - dropped_seen, Ordering::Relaxed);
    Summary {
        ended,
        segments,
        tap_dropped: tap.dropped(),
        video: video.map(|v| v.stats()).unwrap_or_default(),
        audio: audio.map(|a| a.stats()).unwrap_or_default(),
    }
}
