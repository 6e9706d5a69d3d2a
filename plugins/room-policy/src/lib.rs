//! Room policy: which room names exist and how many may join them.
//!
//! ```toml
//! [[plugins]]
//! name = "rooms"
//! path = "target/plugins/room-policy.wasm"
//! hooks = ["room-policy"]
//! [plugins.config]
//! allow_rooms = ["lobby", "studio-*"]   # default ["*"]
//! deny_rooms = ["studio-test"]          # wins over allow_rooms
//! max_publishers = 1                    # per room; absent = unlimited
//! max_viewers = 200
//! [[plugins.config.limits]]             # per-room overrides, first match wins
//! room = "studio-vip-*"
//! max_viewers = 20
//! ```
//!
//! Counts come from the host and exclude the caller, so `max_viewers = 2` admits a second
//! viewer and refuses a third.

use serde::Deserialize;
use switchboard_plugin_sdk::{Action, AuthRequest, Config, Deny, Identity, Plugin, glob};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "everything")]
    allow_rooms: Vec<String>,
    #[serde(default)]
    deny_rooms: Vec<String>,
    max_publishers: Option<u32>,
    max_viewers: Option<u32>,
    #[serde(default)]
    limits: Vec<RoomLimits>,
}

fn everything() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RoomLimits {
    /// Room name or pattern this entry applies to.
    room: String,
    max_publishers: Option<u32>,
    max_viewers: Option<u32>,
}

pub struct RoomPolicy {
    settings: Settings,
}

impl RoomPolicy {
    fn from_settings(settings: Settings) -> Result<Self, String> {
        if settings.allow_rooms.is_empty() {
            return Err("allow_rooms: empty list would refuse every room".into());
        }
        for (key, patterns) in [
            ("allow_rooms", &settings.allow_rooms),
            ("deny_rooms", &settings.deny_rooms),
        ] {
            if let Some(i) = patterns.iter().position(|p| p.is_empty()) {
                return Err(format!("{key}[{i}]: empty pattern"));
            }
        }
        for (i, limit) in settings.limits.iter().enumerate() {
            if limit.room.is_empty() {
                return Err(format!("limits[{i}].room: empty pattern"));
            }
        }
        Ok(RoomPolicy { settings })
    }

    /// The limits for `room`: the first matching override, else the top-level values.
    fn limits_for(&self, room: &str) -> (Option<u32>, Option<u32>) {
        let s = &self.settings;
        match s.limits.iter().find(|l| glob::matches(&l.room, room)) {
            Some(l) => (l.max_publishers, l.max_viewers),
            None => (s.max_publishers, s.max_viewers),
        }
    }

    fn decide(&self, req: &AuthRequest) -> Result<(), Deny> {
        let s = &self.settings;
        let room = req.room.as_str();
        let allowed = s.allow_rooms.iter().any(|p| glob::matches(p, room))
            && !s.deny_rooms.iter().any(|p| glob::matches(p, room));
        if !allowed {
            return Err(Deny::forbidden(format!(
                "room `{room}` is not allowed here"
            )));
        }
        let (max_publishers, max_viewers) = self.limits_for(room);
        match req.action {
            Action::Publish => {
                if let Some(max) = max_publishers.filter(|max| req.counts.publishers >= *max) {
                    return Err(Deny::forbidden(format!(
                        "room `{room}` already has {} publisher(s) (max {max})",
                        req.counts.publishers
                    )));
                }
            }
            Action::Play => {
                if let Some(max) = max_viewers.filter(|max| req.counts.viewers >= *max) {
                    return Err(Deny::forbidden(format!(
                        "room `{room}` is full ({max} viewers)"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Plugin for RoomPolicy {
    fn new(config: Config) -> Result<Self, String> {
        Self::from_settings(config.parse()?)
    }

    fn check_room(&self, req: &AuthRequest, _identity: &Identity) -> Result<(), Deny> {
        self.decide(req)
    }
}

switchboard_plugin_sdk::register!(RoomPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::RoomCounts;

    fn policy(config: serde_json::Value) -> Result<RoomPolicy, String> {
        RoomPolicy::new(Config::from_json(config.to_string()))
    }

    fn req(room: &str, action: Action, publishers: u32, viewers: u32) -> AuthRequest {
        AuthRequest {
            room: room.into(),
            action,
            credential: None,
            remote_addr: None,
            counts: RoomCounts {
                publishers,
                viewers,
            },
            replacing: None,
        }
    }

    #[test]
    fn limits_count_existing_sessions() {
        let p = policy(serde_json::json!({ "max_publishers": 1, "max_viewers": 2 })).unwrap();
        assert!(p.decide(&req("r", Action::Publish, 0, 50)).is_ok());
        let d = p.decide(&req("r", Action::Publish, 1, 0)).unwrap_err();
        assert_eq!(d.reason, "room `r` already has 1 publisher(s) (max 1)");
        assert!(p.decide(&req("r", Action::Play, 1, 1)).is_ok());
        assert_eq!(
            p.decide(&req("r", Action::Play, 1, 2)).unwrap_err().reason,
            "room `r` is full (2 viewers)"
        );
    }

    #[test]
    fn patterns_and_overrides() {
        let p = policy(serde_json::json!({
            "allow_rooms": ["lobby", "studio-*"],
            "deny_rooms": ["studio-test"],
            "max_viewers": 100,
            "limits": [ { "room": "studio-vip-*", "max_viewers": 1 }, { "room": "studio-*", "max_publishers": 2 } ]
        }))
        .unwrap();
        assert!(p.decide(&req("lobby", Action::Play, 0, 99)).is_ok());
        assert!(
            p.decide(&req("other", Action::Play, 0, 0))
                .unwrap_err()
                .reason
                .contains("not allowed")
        );
        assert!(p.decide(&req("studio-test", Action::Play, 0, 0)).is_err());
        assert!(p.decide(&req("studio-vip-1", Action::Play, 0, 1)).is_err());
        // The `studio-*` override has no viewer cap (overrides replace, not merge).
        assert!(p.decide(&req("studio-2", Action::Play, 0, 5000)).is_ok());
        assert!(p.decide(&req("studio-2", Action::Publish, 2, 0)).is_err());
        assert_eq!(
            p.decide(&req("x", Action::Play, 0, 0)).unwrap_err().kind,
            switchboard_plugin_sdk::DenyKind::Forbidden
        );
    }

    #[test]
    fn config_errors() {
        assert!(
            policy(serde_json::json!({ "allow_rooms": [] }))
                .err()
                .unwrap()
                .contains("allow_rooms")
        );
        assert!(
            policy(serde_json::json!({ "max_viewer": 1 }))
                .err()
                .unwrap()
                .contains("unknown field")
        );
        assert!(
            policy(serde_json::json!({ "max_viewers": -1 }))
                .err()
                .unwrap()
                .starts_with("max_viewers:")
        );
        assert!(
            policy(serde_json::json!({ "limits": [{ "room": "" }] }))
                .err()
                .unwrap()
                .contains("limits[0].room")
        );
    }
}
