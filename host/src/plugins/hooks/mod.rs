//! Hooks: the decisions a plugin can be configured for, as a registry.
//!
//! Each hook is one file owning its config name, how it binds to a component's exports for
//! each interface version (a hook new in a version binds only there), its trial at load and
//! its typed call:
//! - [`auth`]: `"auth"` — who is the caller? (`authenticator.authenticate`)
//! - [`policy`]: `"room-policy"` — may this identity do this in this room now?
//!   (`policy.check`)
//! - [`webhook`]: `"webhook"` — which endpoints get an event, with which body?
//!   (`webhook-router.route`, new in 0.2.0)
//! - [`recorder`]: `"recorder"` — what to record of a publish session?
//!   (`recorder.publish-started` / `publish-ended`, new in 0.2.0)
//! - `kind`: the [`Hook`] handle and the traits every hook file implements.
//!
//! Adding a hook: add its world to the newest WIT, write
//! `hooks/<name>.rs` implementing `HookKind` and `Bound` with a `HOOK` constant, and list
//! it in [`REGISTRY`]. Config validation, loading and the trial pick it up from there; its
//! caller runs it with `LoadedPlugin::run(<name>::HOOK, ...)`.

pub mod auth;
mod kind;
pub mod policy;
pub mod recorder;
pub mod webhook;

pub use kind::Hook;
pub(crate) use kind::{BindError, Bound};

/// Every hook this host serves, in the order messages list them. One line per hook.
pub static REGISTRY: &[Hook] = &[auth::HOOK, policy::HOOK, webhook::HOOK, recorder::HOOK];

impl Hook {
    /// The registered hook called `name`.
    pub fn named(name: &str) -> Option<Hook> {
        REGISTRY.iter().copied().find(|h| h.name() == name)
    }

    /// Every registered hook.
    pub fn all() -> &'static [Hook] {
        REGISTRY
    }
}

/// The registry's names for messages: `"auth", "room-policy", "webhook", "recorder"`.
pub fn known_names() -> String {
    REGISTRY
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `hooks = [...]` entry that names no registered hook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hook \"{name}\"; known hooks: {}", known_names())]
pub struct UnknownHook {
    pub name: String,
}

impl std::str::FromStr for Hook {
    type Err = UnknownHook;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Hook::named(name).ok_or_else(|| UnknownHook { name: name.into() })
    }
}

impl<'de> serde::Deserialize<'de> for Hook {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_registry() {
        assert_eq!(Hook::named("auth"), Some(auth::HOOK));
        assert_eq!("room-policy".parse::<Hook>(), Ok(policy::HOOK));
        assert_eq!(
            "authz".parse::<Hook>().unwrap_err().to_string(),
            "unknown hook \"authz\"; known hooks: \"auth\", \"room-policy\", \"webhook\", \"recorder\""
        );
        let mut names: Vec<&str> = Hook::all().iter().map(|h| h.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len(), "hook names are unique");
    }
}
