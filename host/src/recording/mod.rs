//! Recording: rooms written to files while they are live.
//!
//! Built so far — the file layer, fed by a media tap (`sfu::tap`) and unit-tested without
//! disk:
//! - [`frames`]: RTP packets to whole frames per track (depacketized, keyframe-first, loss
//!   waits for the next keyframe, sequence and timestamp wrap);
//! - [`ivf`]: VP8/VP9/AV1 to IVF, one file per video track;
//! - [`ogg`]: Opus to Ogg, one file per audio track;
//! - [`webm`]: video and audio together in one WebM file per segment (the default).
//!
//! Still to come (issue: recording decided by a recorder plugin): the recorder hook and
//! plugin, the sink that drives these writers from a tap with segment rotation, and the
//! upload queue to S3-compatible storage.

pub mod frames;
pub mod ivf;
pub mod ogg;
pub mod webm;
