//! Static-token auth: the simplest possible swap-in for JWT.
//!
//! ```toml
//! [[plugins]]
//! name = "static-token"
//! path = "target/plugins/static-token.wasm"
//! hooks = ["auth"]
//! [plugins.config]
//! token = "s3cret"                 # any room, publish and play
//! publish_token = "pub-only"       # any room, publish only (optional)
//! play_token = "view-only"         # any room, play only (optional)
//! public_play = false              # true: anyone may play without a token
//! [plugins.config.rooms]
//! lobby = "lobby-token"            # this room, publish and play
//! "studio-*" = { publish_token = "studio-pub", play_token = "studio-view" }
//! ```
//!
//! Tokens are compared as SHA-256 digests with [`subtle`], so neither the position of the first
//! differing byte nor the token length leaks through timing. A token that is valid for another
//! room or action is answered with 403, an unknown token with 401.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;
use switchboard_plugin_sdk::{Action, AuthRequest, Config, Deny, Identity, Plugin, glob};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    token: Option<String>,
    publish_token: Option<String>,
    play_token: Option<String>,
    #[serde(default)]
    public_play: bool,
    #[serde(default)]
    rooms: BTreeMap<String, RoomTokens>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RoomTokens {
    Both(String),
    Split(SplitTokens),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitTokens {
    token: Option<String>,
    publish_token: Option<String>,
    play_token: Option<String>,
}

/// Which rooms a token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Any,
    Room(String),
}

/// One accepted token, kept only as its digest.
struct Grant {
    digest: [u8; 32],
    scope: Scope,
    publish: bool,
    play: bool,
    /// Subject reported for callers using this token (never the token itself).
    label: String,
}

pub struct StaticToken {
    grants: Vec<Grant>,
    public_play: bool,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl StaticToken {
    fn add(
        &mut self,
        key: &str,
        token: Option<String>,
        scope: &Scope,
        publish: bool,
        play: bool,
    ) -> Result<(), String> {
        let Some(token) = token else { return Ok(()) };
        if token.trim().is_empty() {
            return Err(format!("{key}: token must not be empty"));
        }
        let label = match (scope, publish, play) {
            (Scope::Any, true, true) => "token:any".to_string(),
            (Scope::Any, true, false) => "token:any:publish".to_string(),
            (Scope::Any, false, _) => "token:any:play".to_string(),
            (Scope::Room(r), true, true) => format!("token:{r}"),
            (Scope::Room(r), true, false) => format!("token:{r}:publish"),
            (Scope::Room(r), false, _) => format!("token:{r}:play"),
        };
        self.grants.push(Grant {
            digest: digest(&token),
            scope: scope.clone(),
            publish,
            play,
            label,
        });
        Ok(())
    }

    fn from_settings(s: Settings) -> Result<Self, String> {
        let mut this = StaticToken {
            grants: Vec::new(),
            public_play: s.public_play,
        };
        this.add("token", s.token, &Scope::Any, true, true)?;
        this.add("publish_token", s.publish_token, &Scope::Any, true, false)?;
        this.add("play_token", s.play_token, &Scope::Any, false, true)?;
        for (room, tokens) in s.rooms {
            if room.is_empty() {
                return Err("rooms: room name must not be empty".into());
            }
            let scope = Scope::Room(room.clone());
            match tokens {
                RoomTokens::Both(t) => {
                    this.add(&format!("rooms.{room}"), Some(t), &scope, true, true)?
                }
                RoomTokens::Split(t) => {
                    this.add(&format!("rooms.{room}.token"), t.token, &scope, true, true)?;
                    this.add(
                        &format!("rooms.{room}.publish_token"),
                        t.publish_token,
                        &scope,
                        true,
                        false,
                    )?;
                    this.add(
                        &format!("rooms.{room}.play_token"),
                        t.play_token,
                        &scope,
                        false,
                        true,
                    )?;
                }
            }
        }
        if this.grants.is_empty() && !this.public_play {
            return Err(
                "no token configured: set `token`, `publish_token`, `play_token` or `rooms`".into(),
            );
        }
        Ok(this)
    }

    fn decide(&self, req: &AuthRequest) -> Result<Identity, Deny> {
        let public = self.public_play && req.action == Action::Play;
        let Some(credential) = req.credential.as_deref().filter(|c| !c.is_empty()) else {
            return if public {
                Ok(Identity::new("anonymous"))
            } else {
                Err(Deny::unauthorized("missing token"))
            };
        };
        let presented = digest(credential);
        // Compare against every grant before deciding, so timing does not reveal which
        // (or how many) tokens exist.
        let mut fits: Option<&Grant> = None;
        let mut known = false;
        for grant in &self.grants {
            let equal: bool = grant.digest.ct_eq(&presented).into();
            known |= equal;
            let allowed = match req.action {
                Action::Publish => grant.publish,
                Action::Play => grant.play,
            } && match &grant.scope {
                Scope::Any => true,
                Scope::Room(pattern) => glob::matches(pattern, &req.room),
            };
            if equal && allowed && fits.is_none() {
                fits = Some(grant);
            }
        }
        match fits {
            Some(grant) => Ok(Identity::new(grant.label.clone())),
            None if public => Ok(Identity::new("anonymous")),
            None if known => Err(Deny::forbidden(format!(
                "token does not allow {} in room `{}`",
                req.action.as_str(),
                req.room
            ))),
            None => Err(Deny::unauthorized("invalid token")),
        }
    }
}

impl Plugin for StaticToken {
    fn new(config: Config) -> Result<Self, String> {
        Self::from_settings(config.parse()?)
    }

    fn authenticate(&self, req: &AuthRequest) -> Result<Identity, Deny> {
        self.decide(req)
    }
}

switchboard_plugin_sdk::register!(StaticToken);

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::{DenyKind, RoomCounts};

    fn plugin(json: serde_json::Value) -> Result<StaticToken, String> {
        StaticToken::new(Config::from_json(json.to_string()))
    }

    fn req(room: &str, action: Action, credential: Option<&str>) -> AuthRequest {
        AuthRequest {
            room: room.into(),
            action,
            credential: credential.map(Into::into),
            remote_addr: None,
            counts: RoomCounts {
                publishers: 0,
                viewers: 0,
            },
            replacing: None,
        }
    }

    fn kind(r: Result<Identity, Deny>) -> Option<DenyKind> {
        r.err().map(|d| d.kind)
    }

    #[test]
    fn global_and_room_tokens() {
        let p = plugin(serde_json::json!({
            "token": "global",
            "play_token": "viewer",
            "rooms": { "lobby": "lobby-tok", "studio-*": { "publish_token": "studio-pub" } }
        }))
        .unwrap();
        assert_eq!(
            p.decide(&req("any", Action::Publish, Some("global")))
                .unwrap()
                .subject,
            "token:any"
        );
        assert_eq!(
            p.decide(&req("any", Action::Play, Some("viewer")))
                .unwrap()
                .subject,
            "token:any:play"
        );
        assert_eq!(
            kind(p.decide(&req("any", Action::Publish, Some("viewer")))),
            Some(DenyKind::Forbidden)
        );
        assert_eq!(
            p.decide(&req("lobby", Action::Publish, Some("lobby-tok")))
                .unwrap()
                .subject,
            "token:lobby"
        );
        assert_eq!(
            kind(p.decide(&req("other", Action::Play, Some("lobby-tok")))),
            Some(DenyKind::Forbidden)
        );
        assert_eq!(
            p.decide(&req("studio-9", Action::Publish, Some("studio-pub")))
                .unwrap()
                .subject,
            "token:studio-*:publish"
        );
        assert_eq!(
            kind(p.decide(&req("studio-9", Action::Play, Some("studio-pub")))),
            Some(DenyKind::Forbidden)
        );
        assert_eq!(
            kind(p.decide(&req("lobby", Action::Play, Some("nope")))),
            Some(DenyKind::Unauthorized)
        );
        assert_eq!(
            kind(p.decide(&req("lobby", Action::Play, None))),
            Some(DenyKind::Unauthorized)
        );
        assert_eq!(
            kind(p.decide(&req("lobby", Action::Play, Some("")))),
            Some(DenyKind::Unauthorized)
        );
    }

    #[test]
    fn public_play() {
        let p = plugin(serde_json::json!({ "publish_token": "pub", "public_play": true })).unwrap();
        assert_eq!(
            p.decide(&req("r", Action::Play, None)).unwrap().subject,
            "anonymous"
        );
        assert_eq!(
            p.decide(&req("r", Action::Play, Some("junk")))
                .unwrap()
                .subject,
            "anonymous"
        );
        assert_eq!(
            kind(p.decide(&req("r", Action::Publish, None))),
            Some(DenyKind::Unauthorized)
        );
        assert!(p.decide(&req("r", Action::Publish, Some("pub"))).is_ok());
    }

    #[test]
    fn config_errors() {
        assert!(
            plugin(serde_json::json!({}))
                .err()
                .expect("config error")
                .contains("no token configured")
        );
        assert!(
            plugin(serde_json::json!({ "token": " " }))
                .err()
                .expect("config error")
                .contains("token: token must not be empty")
        );
        assert!(
            plugin(serde_json::json!({ "tokn": "x" }))
                .err()
                .expect("config error")
                .contains("unknown field `tokn`")
        );
    }
}
