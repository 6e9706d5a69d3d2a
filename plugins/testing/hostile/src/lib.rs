//! A plugin that misbehaves on purpose, for the host's failure-policy tests. Never deploy it.
//!
//! `config.mode` picks the misbehaviour; `config.phase` picks when (`call`, the default, or
//! `configure`). Mode `ok` behaves, so a test can check the same binary loads fine.

use serde::Deserialize;
use switchboard_plugin_sdk::{AuthRequest, Config, Deny, Identity, Plugin};

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
    /// Return an identity whose subject is megabytes long.
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
}

pub struct Hostile {
    mode: Mode,
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
        Ok(Hostile { mode: s.mode })
    }

    fn authenticate(&self, _req: &AuthRequest) -> Result<Identity, Deny> {
        misbehave(self.mode)
    }

    fn check_room(&self, _req: &AuthRequest, _identity: &Identity) -> Result<(), Deny> {
        misbehave(self.mode).map(|_| ())
    }
}

switchboard_plugin_sdk::register!(Hostile);
