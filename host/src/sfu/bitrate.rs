//! A cap on what one publisher may send, since every byte it sends leaves the server once per
//! viewer.
//!
//! Two parts: the publisher is told the cap (a REMB, "receiver estimated maximum bitrate",
//! every [`REMB_EVERY`] on its video, which browsers and libwebrtc-based encoders obey as an
//! upper bound), and what arrives beyond [`TOLERANCE`] times the cap (averaged over a
//! [`BURST`] bucket) is dropped before forwarding, counted in [`over_cap_dropped`]. A publisher
//! that follows the REMB never hits the second part.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the cap is repeated to the publisher.
pub const REMB_EVERY: Duration = Duration::from_secs(1);
/// Dropping starts above this many times the cap: encoders overshoot briefly (keyframes).
pub const TOLERANCE: f64 = 1.5;
/// The bucket holds this much of the (tolerated) rate, so a keyframe burst passes.
pub const BURST: Duration = Duration::from_secs(2);

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Publisher packets dropped for exceeding the cap since start.
pub fn over_cap_dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A byte bucket for one publisher, shared by its tracks' readers.
pub struct BitrateCap {
    /// The cap in bits per second (what the REMB says).
    pub bits_per_sec: u64,
    bytes_per_sec: f64,
    capacity: f64,
    state: parking_lot::Mutex<(f64, Instant)>,
}

impl BitrateCap {
    pub fn new(kbps: u64, now: Instant) -> BitrateCap {
        let bits_per_sec = kbps * 1000;
        let bytes_per_sec = bits_per_sec as f64 / 8.0 * TOLERANCE;
        let capacity = bytes_per_sec * BURST.as_secs_f64();
        BitrateCap {
            bits_per_sec,
            bytes_per_sec,
            capacity,
            state: parking_lot::Mutex::new((capacity, now)),
        }
    }

    /// Whether a packet of `bytes` may be forwarded now; refused ones are counted.
    #[inline]
    pub fn admit(&self, bytes: usize, now: Instant) -> bool {
        let mut state = self.state.lock();
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *last = now;
        *tokens = (*tokens + elapsed * self.bytes_per_sec).min(self.capacity);
        if *tokens >= bytes as f64 {
            *tokens -= bytes as f64;
            true
        } else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_tolerated_rate_and_drops_beyond() {
        let t0 = Instant::now();
        let cap = BitrateCap::new(800, t0); // 100 kB/s, tolerated 150 kB/s, bucket 300 kB
        // 10 s at 2 Mbit/s (250 kB/s) in 1000-byte packets.
        let mut passed = 0u64;
        for i in 0..2500u64 {
            let now = t0 + Duration::from_micros(i * 4000);
            if cap.admit(1000, now) {
                passed += 1000;
            }
        }
        let expected = 150_000.0 * 10.0 + 300_000.0;
        assert!(
            (passed as f64 - expected).abs() < expected * 0.02,
            "{passed} vs {expected}"
        );
        // Under the cap nothing is dropped.
        let slow = BitrateCap::new(800, t0);
        assert!((0..1000u64).all(|i| slow.admit(1000, t0 + Duration::from_millis(i * 10))));
    }
}
