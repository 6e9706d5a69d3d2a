//! Recording: rooms written to files while they are live.
//!
//! Built so far — the file layer, fed by a media tap (`sfu::tap`) and unit-tested without
//! disk:
//! - [`frames`]: RTP packets to whole frames per track (depacketized, keyframe-first, loss
//!   waits for the next keyframe, sequence and timestamp wrap);
//! - [`ivf`]: VP8/VP9/AV1 to IVF, one file per video track;
//! - [`ogg`]: Opus to Ogg, one file per audio track;
//! - [`webm`]: video and audio together in one WebM file per segment (the default);
//! - [`segment`]: one recording's segments: both tracks on one timeline, cut at the first
//!   keyframe after the segment length, each segment's files from a [`segment::FileMaker`];
//! - [`sink`]: a recording running — a room's tap drained into a segmenter on a thread of
//!   its own, ended by its owner, its maximum duration or a failed write;
//! - [`trigger`]: what decides to record (the `recorder` plugins, through
//!   [`trigger::RecordingTrigger`]) and the decision as the host carries it out;
//! - [`service`]: records publish sessions as decided, from `publish.started` to
//!   `publish.ended`, with the `recording.*` events;
//! - [`upload`]: the durable upload queue to S3-compatible storage (the one store's second
//!   user, next to the webhook outbox).

pub mod frames;
pub mod ivf;
pub mod ogg;
pub mod segment;
pub mod service;
pub mod sink;
pub mod trigger;
pub mod upload;
pub mod webm;
