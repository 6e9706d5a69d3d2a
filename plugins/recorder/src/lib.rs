//! Recorder: which publish sessions are recorded, and how — from config alone.
//!
//! ```toml
//! [[plugins]]
//! name = "recorder"
//! path = "target/plugins/recorder.wasm"
//! hooks = ["recorder"]
//! [plugins.config]
//! rooms = ["studio-*", "town-hall"]   # rooms recorded (`*`, `?` patterns); default: every room
//! exclude_rooms = ["*-test"]          # wins over rooms
//! attribute = "record"                # only identities with this attribute ...
//! attribute_values = ["true", "1"]    # ... set to one of these (default: any value)
//! kinds = ["video", "audio"]          # default both
//! container = "webm"                  # webm (default) | per-track (IVF/Ogg) | both
//! segment_secs = 600                  # a new file at the first keyframe after this (default 600)
//! max_duration_secs = 14400           # stop after this (default: until the session ends)
//! key_template = "{room}/{date}/{time}-{subject}/{segment}.{ext}"   # the default
//! storage = "archive"                 # a [[recording.storage]] name (default: the first)
//! ```
//!
//! With an empty config every publish session in every room is recorded as WebM in 10-minute
//! segments. Deployments that record on request put `attribute = "record"` here and the
//! attribute on the identity in their auth plugin (e.g. from a JWT claim).

use serde::Deserialize;
use switchboard_plugin_sdk::{
    Config, Container, Plugin, PublishSession, RecordingPlan, TrackKind, glob,
};

const DEFAULT_KEY_TEMPLATE: &str = "{room}/{date}/{time}-{subject}/{segment}.{ext}";

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    exclude_rooms: Vec<String>,
    #[serde(default)]
    attribute: Option<String>,
    #[serde(default)]
    attribute_values: Vec<String>,
    #[serde(default = "both_kinds")]
    kinds: Vec<Kind>,
    #[serde(default)]
    container: ContainerSetting,
    #[serde(default = "default_segment_secs")]
    segment_secs: u32,
    #[serde(default)]
    max_duration_secs: Option<u32>,
    #[serde(default = "default_key_template")]
    key_template: String,
    #[serde(default)]
    storage: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Video,
    Audio,
}

#[derive(Deserialize, Debug, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum ContainerSetting {
    #[default]
    Webm,
    PerTrack,
    Both,
}

fn both_kinds() -> Vec<Kind> {
    vec![Kind::Video, Kind::Audio]
}

fn default_segment_secs() -> u32 {
    600
}

fn default_key_template() -> String {
    DEFAULT_KEY_TEMPLATE.to_owned()
}

pub struct Recorder {
    settings: Settings,
}

impl Recorder {
    fn from_settings(settings: Settings) -> Result<Self, String> {
        if settings.kinds.is_empty() {
            return Err("kinds: name at least one of \"video\", \"audio\"".into());
        }
        if settings.segment_secs == 0 {
            return Err("segment_secs: must be at least 1".into());
        }
        if settings.max_duration_secs == Some(0) {
            return Err("max_duration_secs: must be at least 1 (leave it out for no limit)".into());
        }
        for needed in ["{segment}", "{ext}"] {
            if !settings.key_template.contains(needed) {
                return Err(format!(
                    "key_template: {:?} needs {needed} (each segment and file its own key)",
                    settings.key_template
                ));
            }
        }
        if settings.attribute.is_none() && !settings.attribute_values.is_empty() {
            return Err("attribute_values: set attribute too".into());
        }
        Ok(Recorder { settings })
    }

    fn wants(&self, session: &PublishSession) -> bool {
        let s = &self.settings;
        let any = |patterns: &[String], room: &str| patterns.iter().any(|p| glob::matches(p, room));
        if !s.rooms.is_empty() && !any(&s.rooms, &session.room) {
            return false;
        }
        if any(&s.exclude_rooms, &session.room) {
            return false;
        }
        match &s.attribute {
            None => true,
            Some(name) => session.identity.attributes.iter().any(|(n, v)| {
                n == name && (s.attribute_values.is_empty() || s.attribute_values.contains(v))
            }),
        }
    }

    fn plan(&self, session: &PublishSession) -> Option<RecordingPlan> {
        if !self.wants(session) {
            return None;
        }
        let s = &self.settings;
        let kinds: Vec<TrackKind> = s
            .kinds
            .iter()
            .map(|k| match k {
                Kind::Video => TrackKind::Video,
                Kind::Audio => TrackKind::Audio,
            })
            .filter(|k| session.tracks.iter().any(|t| t.kind == *k))
            .collect();
        if kinds.is_empty() {
            return None; // nothing of what we record is sent
        }
        Some(RecordingPlan {
            kinds,
            container: match s.container {
                ContainerSetting::Webm => Container::Webm,
                ContainerSetting::PerTrack => Container::PerTrack,
                ContainerSetting::Both => Container::Both,
            },
            key_template: s.key_template.clone(),
            max_duration_secs: s.max_duration_secs,
            segment_secs: s.segment_secs,
            storage: s.storage.clone(),
        })
    }
}

impl Plugin for Recorder {
    fn new(config: Config) -> Result<Self, String> {
        Self::from_settings(config.parse()?)
    }

    fn recording_plan(&self, session: &PublishSession) -> Option<RecordingPlan> {
        self.plan(session)
    }
}

switchboard_plugin_sdk::register!(Recorder);

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::{Identity, Track};

    fn recorder(json: serde_json::Value) -> Result<Recorder, String> {
        Recorder::new(Config::from_json(json.to_string()))
    }

    fn session(room: &str, attributes: &[(&str, &str)], kinds: &[TrackKind]) -> PublishSession {
        PublishSession {
            room: room.into(),
            session: "s1".into(),
            identity: Identity {
                subject: "alice".into(),
                attributes: attributes
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                expires_at: None,
                recheck_every_secs: None,
            },
            tracks: kinds
                .iter()
                .map(|k| Track {
                    kind: *k,
                    codec: match k {
                        TrackKind::Video => "video/VP8".into(),
                        TrackKind::Audio => "audio/opus".into(),
                    },
                })
                .collect(),
        }
    }

    const AV: &[TrackKind] = &[TrackKind::Video, TrackKind::Audio];

    #[test]
    fn an_empty_config_records_everything_as_webm() {
        let r = recorder(serde_json::json!({})).unwrap();
        let plan = r.plan(&session("any", &[], AV)).unwrap();
        assert_eq!(plan.kinds, [TrackKind::Video, TrackKind::Audio]);
        assert_eq!(plan.container, Container::Webm);
        assert_eq!(plan.segment_secs, 600);
        assert_eq!(plan.key_template, DEFAULT_KEY_TEMPLATE);
        assert_eq!(plan.max_duration_secs, None);
    }

    #[test]
    fn rooms_and_attributes_select_sessions() {
        let r = recorder(serde_json::json!({
            "rooms": ["studio-*"], "exclude_rooms": ["*-test"],
            "attribute": "record", "attribute_values": ["true"],
            "kinds": ["audio"], "container": "per-track", "segment_secs": 60,
            "max_duration_secs": 3600, "storage": "archive"
        }))
        .unwrap();
        let yes = [("record", "true")];
        assert!(
            r.plan(&session("lobby", &yes, AV)).is_none(),
            "room not listed"
        );
        assert!(
            r.plan(&session("studio-test", &yes, AV)).is_none(),
            "excluded"
        );
        assert!(
            r.plan(&session("studio-1", &[], AV)).is_none(),
            "no attribute"
        );
        assert!(
            r.plan(&session("studio-1", &[("record", "no")], AV))
                .is_none()
        );
        let plan = r.plan(&session("studio-1", &yes, AV)).unwrap();
        assert_eq!(plan.kinds, [TrackKind::Audio]);
        assert_eq!(plan.container, Container::PerTrack);
        assert_eq!(
            (plan.segment_secs, plan.max_duration_secs),
            (60, Some(3600))
        );
        assert_eq!(plan.storage.as_deref(), Some("archive"));
        assert!(
            r.plan(&session("studio-1", &yes, &[TrackKind::Video]))
                .is_none(),
            "nothing of what is recorded is sent"
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        for (json, key) in [
            (serde_json::json!({"kinds": []}), "kinds"),
            (serde_json::json!({"segment_secs": 0}), "segment_secs"),
            (
                serde_json::json!({"key_template": "{room}.webm"}),
                "key_template",
            ),
            (
                serde_json::json!({"attribute_values": ["x"]}),
                "attribute_values",
            ),
            (serde_json::json!({"container": "mp3"}), "container"),
            (serde_json::json!({"colour": "red"}), "colour"),
        ] {
            let err = recorder(json).err().expect("refused");
            assert!(err.contains(key), "{err}");
        }
    }
}
