//! The `recorder` plugins as the recorder's [`RecordingTrigger`]: the plugins serving the
//! hook are asked in config order when a publish session starts; the first plan wins. A
//! failure — trap, timeout, memory, or a plan the host cannot carry out — is reported as the
//! plugin's and ends the asking: nothing is recorded, nothing else is affected.
//!
//! Calls run on the plugin threads (`engine::plugin_threads`), never on the workers that
//! forward media, with the plugin's own limits.

use super::abi::latest::exports::switchboard::plugin::recorder::{
    Container, PublishSession, RecordingPlan, Track, TrackKind,
};
use super::abi::latest::switchboard::plugin::types::Identity;
use super::engine;
use super::error::CallFailure;
use super::gate::PluginGate;
use super::hooks::recorder::{self, Trigger};
use super::plugin::Budget;
use crate::recording::segment::Layout;
use crate::recording::trigger::{PublishInfo, RecordingDecision, RecordingTrigger, TriggerFailure};
use std::time::Duration;

/// Bounds on a plan: segments from 1 s to 6 h, keys up to 1024 bytes.
pub const MAX_SEGMENT_SECS: u32 = 6 * 3600;
pub const MAX_KEY_TEMPLATE_BYTES: usize = 1024;

#[async_trait::async_trait]
impl RecordingTrigger for PluginGate {
    fn active(&self) -> bool {
        self.serves(recorder::HOOK)
    }

    async fn publish_started(
        &self,
        info: PublishInfo,
    ) -> Result<Option<RecordingDecision>, TriggerFailure> {
        let (plugins, events) = self.serving_now(recorder::HOOK);
        if plugins.is_empty() {
            return Ok(None);
        }
        let session = PublishSession {
            room: info.room,
            session: info.session,
            identity: Identity {
                subject: info.subject,
                attributes: info.attributes,
                expires_at: None,
                recheck_every_secs: None,
            },
            tracks: info
                .tracks
                .into_iter()
                .map(|(video, codec)| Track {
                    kind: if video {
                        TrackKind::Video
                    } else {
                        TrackKind::Audio
                    },
                    codec,
                })
                .collect(),
        };
        let asked = engine::plugin_threads().spawn(async move {
            for plugin in &plugins {
                let plan = plugin
                    .run(
                        recorder::HOOK,
                        Budget::Admission,
                        async |t: &Trigger, store, instance| {
                            t.publish_started(store, instance, &session).await
                        },
                    )
                    .await
                    .and_then(|plan| plan.map(check).transpose());
                match plan {
                    Ok(None) => continue,
                    Ok(Some(decision)) => return Ok(Some(decision)),
                    Err(failure) => {
                        events.failed(plugin.name(), recorder::HOOK.name(), &failure.to_string());
                        return Err(TriggerFailure {
                            who: plugin.name().to_owned(),
                            why: failure.to_string(),
                        });
                    }
                }
            }
            Ok(None)
        });
        asked.await.unwrap_or_else(|e| {
            Err(TriggerFailure {
                who: "plugin runtime".into(),
                why: e.to_string(),
            })
        })
    }

    async fn publish_ended(&self, room: String, session: String) {
        let (plugins, events) = self.serving_now(recorder::HOOK);
        if plugins.is_empty() {
            return;
        }
        let _ = engine::plugin_threads()
            .spawn(async move {
                for plugin in &plugins {
                    let told = plugin
                        .run(
                            recorder::HOOK,
                            Budget::Admission,
                            async |t: &Trigger, store, instance| {
                                t.publish_ended(store, instance, &room, &session).await
                            },
                        )
                        .await;
                    if let Err(failure) = told {
                        events.failed(plugin.name(), recorder::HOOK.name(), &failure.to_string());
                    }
                }
            })
            .await;
    }
}

/// A plan the host can carry out, or `BadOutput` saying why not.
fn check(plan: RecordingPlan) -> Result<RecordingDecision, CallFailure> {
    let bad = |why: String| Err(CallFailure::BadOutput(why));
    if plan.kinds.is_empty() {
        return bad("a recording plan with no track kinds".into());
    }
    if plan.segment_secs == 0 || plan.segment_secs > MAX_SEGMENT_SECS {
        return bad(format!(
            "segment-secs {} (expected 1 to {MAX_SEGMENT_SECS})",
            plan.segment_secs
        ));
    }
    if plan.max_duration_secs == Some(0) {
        return bad("max-duration-secs 0 (leave it out to record until the session ends)".into());
    }
    let template = plan.key_template.trim();
    if template.is_empty()
        || template.len() > MAX_KEY_TEMPLATE_BYTES
        || !template.contains("{segment}")
        || !template.contains("{ext}")
    {
        return bad(format!(
            "key-template {:?}: needs {{segment}} and {{ext}}, at most {MAX_KEY_TEMPLATE_BYTES} bytes",
            plan.key_template
        ));
    }
    Ok(RecordingDecision {
        video: plan.kinds.contains(&TrackKind::Video),
        audio: plan.kinds.contains(&TrackKind::Audio),
        layout: match plan.container {
            Container::Webm => Layout {
                webm: true,
                per_track: false,
            },
            Container::PerTrack => Layout {
                webm: false,
                per_track: true,
            },
            Container::Both => Layout {
                webm: true,
                per_track: true,
            },
        },
        key_template: template.to_owned(),
        max_duration: plan
            .max_duration_secs
            .map(|s| Duration::from_secs(s as u64)),
        segment_length: Duration::from_secs(plan.segment_secs as u64),
        storage: plan.storage,
    })
}
