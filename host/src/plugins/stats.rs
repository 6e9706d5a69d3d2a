//! Call statistics per plugin and hook: calls by outcome, time spent, the last failure. Read by
//! the admin API (`GET /admin/plugins`), readiness (`/readyz`) and `/metrics`.
//!
//! Kept by plugin name across reloads, like the key-value stores, so the counters never go
//! backwards. Recorded once per call in `LoadedPlugin::run` — plugin calls happen per request
//! or re-check, never per packet — as a few relaxed atomic adds and, once metrics are
//! attached, one histogram sample.

use super::error::CallFailure;
use super::hooks::{self, Hook};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// Every outcome a call can have, as metric labels and admin keys: a decision (`allowed`,
/// `denied`) or a failure (see [`CallFailure::label`]).
pub const OUTCOMES: [&str; 8] = [
    "allowed",
    "denied",
    "timeout",
    "out_of_memory",
    "trap",
    "misconfigured",
    "bad_output",
    "not_served",
];

/// Makes the latency histogram of one plugin's hook (`metrics` attaches it; see
/// `crate::metrics`). The plugin runtime itself knows no metric names.
pub type LatencyHistograms = Arc<dyn Fn(&str, Hook) -> metrics::Histogram + Send + Sync>;

/// What a call decided, for its statistics: a denial is a decision, not a failure.
pub trait Verdict {
    fn denied(&self) -> bool;
}

impl<A, B> Verdict for Result<A, B> {
    fn denied(&self) -> bool {
        self.is_err()
    }
}

/// One plugin's statistics, one entry per hook of the registry.
pub struct PluginStats {
    name: String,
    hooks: Vec<(Hook, HookStats)>,
}

/// One hook of one plugin.
#[derive(Default)]
pub struct HookStats {
    outcomes: [AtomicU64; OUTCOMES.len()],
    nanos: AtomicU64,
    /// Failures since the last call that decided; > 0 means the last call failed.
    consecutive_failures: AtomicU64,
    last_failure: Mutex<Option<(SystemTime, String)>>,
    latency: OnceLock<metrics::Histogram>,
}

/// A copy of one hook's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct HookSnapshot {
    pub hook: Hook,
    /// Calls by outcome, in [`OUTCOMES`] order.
    pub outcomes: [u64; OUTCOMES.len()],
    /// Time spent in calls, permit wait included (what callers waited).
    pub total: Duration,
    pub consecutive_failures: u64,
    pub last_failure: Option<(SystemTime, String)>,
}

impl HookSnapshot {
    pub fn calls(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    /// Calls that produced no decision.
    pub fn failures(&self) -> u64 {
        self.outcomes[2..].iter().sum()
    }
}

impl PluginStats {
    pub fn new(name: &str) -> Self {
        PluginStats {
            name: name.to_owned(),
            hooks: hooks::REGISTRY
                .iter()
                .map(|&h| (h, HookStats::default()))
                .collect(),
        }
    }

    fn hook(&self, hook: Hook) -> Option<&HookStats> {
        self.hooks.iter().find(|(h, _)| *h == hook).map(|(_, s)| s)
    }

    /// Record one call of `hook` that took `took`.
    pub fn record(&self, hook: Hook, took: Duration, outcome: Result<bool, &CallFailure>) {
        let Some(stats) = self.hook(hook) else { return };
        let index = match outcome {
            Ok(false) => 0,
            Ok(true) => 1,
            Err(failure) => OUTCOMES
                .iter()
                .position(|o| *o == failure.label())
                .unwrap_or(4),
        };
        stats.outcomes[index].fetch_add(1, Relaxed);
        stats
            .nanos
            .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
        if let Some(h) = stats.latency.get() {
            h.record(took.as_secs_f64());
        }
        match outcome {
            Ok(_) => stats.consecutive_failures.store(0, Relaxed),
            Err(failure) => {
                stats.consecutive_failures.fetch_add(1, Relaxed);
                *stats.last_failure.lock() = Some((SystemTime::now(), failure.to_string()));
            }
        }
    }

    /// Give every hook its latency histogram (once; later calls change nothing).
    pub fn attach(&self, histograms: &LatencyHistograms) {
        for (hook, stats) in &self.hooks {
            let _ = stats.latency.set(histograms(&self.name, *hook));
        }
    }

    /// The hooks in `serving` (the plugin's configured hooks), in that order.
    pub fn snapshot(&self, serving: &[Hook]) -> Vec<HookSnapshot> {
        serving
            .iter()
            .filter_map(|&hook| {
                let s = self.hook(hook)?;
                Some(HookSnapshot {
                    hook,
                    outcomes: std::array::from_fn(|i| s.outcomes[i].load(Relaxed)),
                    total: Duration::from_nanos(s.nanos.load(Relaxed)),
                    consecutive_failures: s.consecutive_failures.load(Relaxed),
                    last_failure: s.last_failure.lock().clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_and_the_last_failure_kept() {
        let stats = PluginStats::new("p");
        let hook = hooks::REGISTRY[0];
        stats.record(hook, Duration::from_millis(2), Ok(false));
        stats.record(hook, Duration::from_millis(2), Ok(true));
        let failure = CallFailure::Timeout(100);
        stats.record(hook, Duration::from_millis(100), Err(&failure));
        stats.record(hook, Duration::from_millis(100), Err(&failure));
        let snap = &stats.snapshot(&[hook])[0];
        assert_eq!(snap.calls(), 4);
        assert_eq!(snap.failures(), 2);
        assert_eq!(snap.outcomes[0..3], [1, 1, 2]);
        assert_eq!(snap.total, Duration::from_millis(204));
        assert_eq!(snap.consecutive_failures, 2);
        assert!(snap.last_failure.as_ref().unwrap().1.contains("timed out"));
        stats.record(hook, Duration::from_millis(1), Ok(false));
        assert_eq!(stats.snapshot(&[hook])[0].consecutive_failures, 0);
        for f in [
            CallFailure::Timeout(1),
            CallFailure::OutOfMemory(1),
            CallFailure::Trap("x".into()),
            CallFailure::Configure("x".into()),
            CallFailure::BadOutput("x".into()),
            CallFailure::NotServed("auth"),
        ] {
            assert!(OUTCOMES.contains(&f.label()), "{f:?}");
        }
    }
}
