//! A plugin as written before `switchboard:plugin@0.2.0`: built with the frozen 0.1.0 SDK
//! (`plugins/testing/sdk-v0_1_0`), so its component imports and exports the 0.1.0
//! interfaces. The host's tests load it next to 0.2.0 plugins to prove released components
//! keep working unchanged. Never deploy it.
//!
//! Auth: `token` admits (subject `legacy:<room>`, expiring `ttl_secs` from now, re-checked
//! every `recheck_every_secs`), anything else is `unauthorized`, so an auth chain moves on.
//! Room policy: with `max_viewers`, a viewer is refused once the room holds that many.

use serde::Deserialize;
use switchboard_plugin_sdk::{Action, AuthRequest, Config, Deny, Identity, Plugin, clock};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Legacy {
    token: String,
    #[serde(default = "minute")]
    ttl_secs: u64,
    recheck_every_secs: Option<u32>,
    max_viewers: Option<u32>,
}

fn minute() -> u64 {
    60
}

impl Legacy {
    fn decide(&self, req: &AuthRequest, now_ms: u64) -> Result<Identity, Deny> {
        match req.credential.as_deref() {
            None | Some("") => Err(Deny::unauthorized("legacy: missing token")),
            Some(token) if token == self.token => {
                let mut id = Identity::new(format!("legacy:{}", req.room))
                    .expires_at_ms(now_ms + self.ttl_secs * 1000);
                if let Some(secs) = self.recheck_every_secs {
                    id = id.recheck_every_secs(secs);
                }
                Ok(id)
            }
            Some(_) => Err(Deny::unauthorized("legacy: invalid token")),
        }
    }
}

impl Plugin for Legacy {
    fn new(config: Config) -> Result<Self, String> {
        let legacy: Legacy = config.parse()?;
        if legacy.token.is_empty() {
            return Err("token: must not be empty".into());
        }
        Ok(legacy)
    }

    fn authenticate(&self, req: &AuthRequest) -> Result<Identity, Deny> {
        self.decide(req, clock::now_ms())
    }

    fn check_room(&self, req: &AuthRequest, identity: &Identity) -> Result<(), Deny> {
        match self.max_viewers {
            Some(max) if req.action == Action::Play && req.counts.viewers >= max => {
                Err(Deny::forbidden(format!(
                    "legacy: room `{}` is full ({max} viewers; {} may not join)",
                    req.room, identity.subject
                )))
            }
            _ => Ok(()),
        }
    }
}

switchboard_plugin_sdk::register!(Legacy);

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::{DenyKind, RoomCounts};

    fn req(credential: Option<&str>, viewers: u32) -> AuthRequest {
        AuthRequest {
            room: "lobby".into(),
            action: Action::Play,
            credential: credential.map(Into::into),
            remote_addr: None,
            counts: RoomCounts {
                publishers: 0,
                viewers,
            },
        }
    }

    #[test]
    fn token_room_and_limits() {
        let p = Legacy::new(Config::from_json(
            serde_json::json!({ "token": "old", "max_viewers": 1 }).to_string(),
        ))
        .unwrap();
        let id = p.decide(&req(Some("old"), 0), 1_000).unwrap();
        assert_eq!(id.subject, "legacy:lobby");
        assert_eq!(id.expires_at, Some(61_000));
        let deny = p.decide(&req(Some("new"), 0), 0).unwrap_err();
        assert_eq!(deny.kind, DenyKind::Unauthorized);
        assert!(p.check_room(&req(None, 0), &id).is_ok());
        assert_eq!(
            p.check_room(&req(None, 1), &id).unwrap_err().kind,
            DenyKind::Forbidden
        );
    }
}
