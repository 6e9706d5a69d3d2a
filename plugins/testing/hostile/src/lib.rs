//! A plugin that misbehaves on purpose, for the host's failure-policy tests. Never deploy it.
//!
//! `config.mode` picks the misbehaviour; `config.phase` picks when (`call`, the default, or
//! `configure`); `config.only_room` (a pattern) limits it to matching rooms, so one server can
//! host a hostile room next to healthy ones. Mode `ok` behaves.
//!
//! Served as a `webhook` plugin it misbehaves on events (of rooms matching `only_room`):
//! `oversized` reshapes into a body of megabytes, `empty-subject` names an endpoint that is not
//! offered (bad output); the other modes loop, allocate or trap. Served as a `recorder` plugin
//! it answers every publish session with a plan the host cannot carry out (`oversized`: a key
//! template of megabytes, `empty-subject`: no track kinds) or loops, allocates or traps.

use serde::Deserialize;
use switchboard_plugin_sdk::{
    AuthRequest, Config, Container, Deny, Identity, Plugin, PublishSession, RecordingPlan,
    TrackKind, WebhookDecision, WebhookEvent, glob,
};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Ok,
    /// Spin forever.
    Loop,
    /// Allocate until the memory limit stops it.
    Memory,
    /// Hit `unreachable`.
    Trap,
    /// Return an identity (auth) or a denial reason (room policy) megabytes long.
    Oversized,
    /// Return an empty subject.
    EmptySubject,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
enum Phase {
    #[default]
    Call,
    Configure,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: Mode,
    #[serde(default)]
    phase: Phase,
    only_room: Option<String>,
}

pub struct Hostile {
    mode: Mode,
    only_room: Option<String>,
}

impl Hostile {
    fn mode_for(&self, room: &str) -> Mode {
        match &self.only_room {
            Some(pattern) if !glob::matches(pattern, room) => Mode::Ok,
            _ => self.mode,
        }
    }
}

fn misbehave(mode: Mode) -> Result<Identity, Deny> {
    match mode {
        Mode::Ok => Ok(Identity::new("hostile-ok")),
        Mode::Loop => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Mode::Memory => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so the memory is really committed.
                hoard.push(vec![0xA5; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Mode::Trap => std::process::abort(),
        Mode::Oversized => Ok(Identity::new("x".repeat(4 << 20))),
        Mode::EmptySubject => Ok(Identity::new("")),
    }
}

impl Plugin for Hostile {
    fn new(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        if s.phase == Phase::Configure {
            misbehave(s.mode).map_err(|d| d.reason)?;
        }
        Ok(Hostile {
            mode: s.mode,
            only_room: s.only_room,
        })
    }

    fn authenticate(&self, req: &AuthRequest) -> Result<Identity, Deny> {
        misbehave(self.mode_for(&req.room))
    }

    fn check_room(&self, req: &AuthRequest, _identity: &Identity) -> Result<(), Deny> {
        match self.mode_for(&req.room) {
            // Room policy returns no identity: oversize the denial reason instead.
            Mode::Oversized => Err(Deny::forbidden("x".repeat(4 << 20))),
            mode => misbehave(mode).map(|_| ()),
        }
    }

    fn recording_plan(&self, session: &PublishSession) -> Option<RecordingPlan> {
        self.bad_plan(session)
    }

    fn route_webhook(&self, event: &WebhookEvent) -> WebhookDecision {
        match self.mode_for(event.room.as_deref().unwrap_or_default()) {
            Mode::Oversized => WebhookDecision::reshaped(format!("\"{}\"", "x".repeat(4 << 20))),
            Mode::EmptySubject => WebhookDecision::as_is().to(["no-such-endpoint"]),
            mode => {
                let _ = misbehave(mode);
                WebhookDecision::as_is()
            }
        }
    }
}

impl Hostile {
    fn bad_plan(&self, session: &PublishSession) -> Option<RecordingPlan> {
        let plan = |kinds: Vec<TrackKind>, key_template: String| RecordingPlan {
            kinds,
            container: Container::Webm,
            key_template,
            max_duration_secs: None,
            segment_secs: 60,
            storage: None,
        };
        match self.mode_for(&session.room) {
            Mode::Ok => None,
            Mode::Oversized => Some(plan(vec![TrackKind::Video], "x".repeat(4 << 20))),
            Mode::EmptySubject => Some(plan(vec![], "{segment}.{ext}".into())),
            mode => {
                let _ = misbehave(mode);
                None
            }
        }
    }
}

switchboard_plugin_sdk::register!(Hostile);
