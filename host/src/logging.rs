//! Log output of the server binary: the configured filter and format (`log.format`: text
//! lines, or one JSON object per line for log pipelines), and a rate limit on what the WebRTC
//! library logs.
//!
//! webrtc-rs logs per packet in some paths: a session whose client never sent candidates
//! logged ~47 warnings a second ("IceHandler.handle_read got error: password is empty"), so a
//! few such clients could fill a disk and bury everything else. Each library log call site
//! (targets `rtc*`, `webrtc*`) may emit [`LIBRARY_BURST`] lines and then [`LIBRARY_PER_SEC`] a
//! second; what is held back is counted ([`suppressed`], printed at shutdown). Our own lines
//! are never limited.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::callsite::Identifier;
use tracing::{Metadata, subscriber::Interest};
use tracing_subscriber::layer::{Context, Filter};

/// Lines one library call site may log at once...
pub const LIBRARY_BURST: f64 = 10.0;
/// ...and per second after that.
pub const LIBRARY_PER_SEC: f64 = 1.0;

static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Library log lines held back by the rate limit since start.
pub fn suppressed() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}

/// Install the binary's subscriber: `log.filter` (an `EnvFilter` directive string, `RUST_LOG`
/// wins), in `log.format`, library lines rate-limited, to stderr.
pub fn init(config: &crate::config::LogConfig) {
    use tracing_subscriber::prelude::*;
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match config.format {
        crate::config::LogFormat::Text => fmt.boxed(),
        // One object per line: timestamp, level, target, fields, and the spans around it.
        crate::config::LogFormat::Json => fmt.json().with_current_span(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(
            fmt.with_filter(env)
                .with_filter(LibraryRateLimit::default()),
        )
        .init();
}

/// Whether a target belongs to the WebRTC library rather than to us.
fn is_library(target: &str) -> bool {
    target.starts_with("rtc") || target.starts_with("webrtc")
}

/// The library lines this limit applies to: events at `info` and above. Trace and debug call
/// sites — some on the per-packet path — keep their static interest, so when the filter
/// excludes them (the default) they cost nothing; asking per event about them cost 9 % of the
/// server's CPU at 200 viewers (measured: 7.1 instead of 5.6 µs per forwarded packet).
fn is_limited(meta: &Metadata<'_>) -> bool {
    meta.is_event() && *meta.level() <= tracing::Level::INFO && is_library(meta.target())
}

/// Per call site token buckets for library log lines.
#[derive(Default)]
pub struct LibraryRateLimit {
    buckets: Mutex<HashMap<Identifier, Bucket>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl LibraryRateLimit {
    /// Whether a line from call site `id` may be written at `now`.
    pub fn allow(&self, id: Identifier, now: Instant) -> bool {
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(id).or_insert(Bucket {
            tokens: LIBRARY_BURST,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.last = now;
        bucket.tokens = (bucket.tokens + elapsed * LIBRARY_PER_SEC).min(LIBRARY_BURST);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

impl<S> Filter<S> for LibraryRateLimit {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        if !is_limited(meta) {
            return true;
        }
        self.allow(meta.callsite(), Instant::now())
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_limited(meta) {
            Interest::sometimes() // decided per event
        } else {
            Interest::always()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn library_call_sites_are_limited_each_on_its_own() {
        // Not zero-sized: two zero-sized statics may share an address, and call sites are
        // told apart by address.
        struct A(#[allow(dead_code)] u8);
        struct B(#[allow(dead_code)] u8);
        static CA: A = A(0);
        static CB: B = B(0);
        impl tracing::callsite::Callsite for A {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unimplemented!()
            }
        }
        impl tracing::callsite::Callsite for B {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unimplemented!()
            }
        }
        let limit = LibraryRateLimit::default();
        let t0 = Instant::now();
        let before = suppressed();
        // A noisy call site: 47 lines in one second, as the ICE handler logged per session.
        let allowed = (0..47)
            .filter(|i| limit.allow(Identifier(&CA), t0 + Duration::from_millis(i * 21)))
            .count();
        assert_eq!(
            allowed, LIBRARY_BURST as usize,
            "the burst, then ~1 a second"
        );
        assert!(suppressed() - before >= 36);
        // Another call site is not affected, and the first one recovers.
        assert!(limit.allow(Identifier(&CB), t0));
        assert!(limit.allow(Identifier(&CA), t0 + Duration::from_secs(3)));
        // Only info and above are limited; per-packet trace call sites keep their static
        // interest (never, when filtered out).
        static TRACE: tracing::callsite::DefaultCallsite =
            tracing::callsite::DefaultCallsite::new(&TRACE_META);
        static TRACE_META: Metadata<'static> = tracing::metadata!(
            name: "trace",
            target: "rtc::rtp_transceiver",
            level: tracing::Level::TRACE,
            fields: &[],
            callsite: &TRACE,
            kind: tracing::metadata::Kind::EVENT,
        );
        assert!(!is_limited(&TRACE_META));
        assert!(is_library("rtc::peer_connection::handler"));
        assert!(is_library("webrtc::peer_connection"));
        assert!(!is_library("switchboard::sfu"));
    }
}
