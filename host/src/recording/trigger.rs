//! What starts a recording: the interface the recorder asks when a publish session starts
//! (implemented by the plugin runtime with the `recorder` hook; this module knows nothing of
//! plugins), and the decision as the host carries it out.

use super::segment::Layout;
use std::time::Duration;

/// A publish session that just started, as the trigger sees it.
#[derive(Debug, Clone)]
pub struct PublishInfo {
    pub room: String,
    pub session: String,
    pub subject: String,
    /// What the publisher's auth plugin attached to its identity.
    pub attributes: Vec<(String, String)>,
    /// (is video, MIME type) of each track the publisher sends.
    pub tracks: Vec<(bool, String)>,
}

/// A decision to record, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingDecision {
    pub video: bool,
    pub audio: bool,
    pub layout: Layout,
    /// Object key per file, with `{room}`, `{subject}`, `{session}`, `{date}`, `{time}`,
    /// `{segment}`, `{ext}`.
    pub key_template: String,
    pub max_duration: Option<Duration>,
    pub segment_length: Duration,
    /// The storage to upload to; `None`: the first configured.
    pub storage: Option<String>,
}

/// A trigger that could not decide: nothing is recorded, the failure is reported.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{who}: {why}")]
pub struct TriggerFailure {
    pub who: String,
    pub why: String,
}

/// Decides what to record of each publish session.
#[async_trait::async_trait]
pub trait RecordingTrigger: Send + Sync {
    /// Whether anything decides at all (no recorder configured: never record).
    fn active(&self) -> bool;

    /// Whether and how to record `session`.
    async fn publish_started(
        &self,
        session: PublishInfo,
    ) -> Result<Option<RecordingDecision>, TriggerFailure>;

    /// `session` in `room` ended (recorded or not).
    async fn publish_ended(&self, room: String, session: String);
}
