//! What the plugin runtime tells the event bus: plugins loaded and reloaded, and plugin
//! failures — at most one `plugin.failed` per plugin per [`PLUGIN_FAILURE_EVERY`], folding the
//! failures in between into its count, so a plugin failing under load is not an event storm.

use crate::events::{EventBus, EventData, PLUGIN_FAILURE_EVERY};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::time::Instant;

#[derive(Default)]
pub struct PluginEvents {
    bus: RwLock<Option<EventBus>>,
    /// Per plugin: when the last `plugin.failed` went out, failures since.
    failures: Mutex<HashMap<String, (Option<Instant>, u64)>>,
}

impl PluginEvents {
    /// Start publishing to `bus`.
    pub fn attach(&self, bus: EventBus) {
        *self.bus.write() = Some(bus);
    }

    fn publish(&self, data: EventData) {
        if let Some(bus) = self.bus.read().as_ref() {
            bus.publish(None, data);
        }
    }

    pub fn loaded(&self, plugin: &str, hooks: Vec<String>) {
        self.publish(EventData::PluginLoaded {
            plugin: plugin.to_owned(),
            hooks,
        });
    }

    pub fn reloaded(&self, plugins: Vec<String>) {
        self.publish(EventData::PluginReloaded { plugins });
    }

    /// A call of `plugin` for `hook` failed with `failure`.
    pub fn failed(&self, plugin: &str, hook: &str, failure: &str) {
        let now = Instant::now();
        let report = {
            let mut failures = self.failures.lock();
            let (last, count) = failures.entry(plugin.to_owned()).or_insert((None, 0));
            *count += 1;
            match last {
                Some(at) if now.saturating_duration_since(*at) < PLUGIN_FAILURE_EVERY => None,
                _ => {
                    *last = Some(now);
                    Some(std::mem::take(count))
                }
            }
        };
        if let Some(failures) = report {
            self.publish(EventData::PluginFailed {
                plugin: plugin.to_owned(),
                hook: hook.to_owned(),
                failure: failure.to_owned(),
                failures,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_folded_per_plugin() {
        let events = PluginEvents::default();
        let bus = EventBus::default();
        let mut rx = bus.subscribe();
        events.attach(bus);
        for _ in 0..100 {
            events.failed("a", "auth", "timed out after 100 ms");
        }
        events.failed("b", "auth", "trapped");
        let first = rx.try_recv().unwrap();
        assert!(
            matches!(&first.data, EventData::PluginFailed { plugin, failures: 1, .. } if plugin == "a")
        );
        let second = rx.try_recv().unwrap();
        assert!(matches!(&second.data, EventData::PluginFailed { plugin, .. } if plugin == "b"));
        assert!(
            rx.try_recv().is_err(),
            "the other 99 are folded into the next report"
        );
    }
}
