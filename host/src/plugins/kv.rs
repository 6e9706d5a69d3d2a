//! The per-plugin key-value store behind `switchboard:plugin/kv`.
//!
//! In memory, one store per plugin name, kept across reloads (replay-protection state must
//! survive a config change) but not across restarts. Bounded in key size, value size, entry
//! count and total bytes so a plugin cannot exhaust the host. Expired entries are dropped on
//! access and swept when the store fills up.

use super::abi::latest::switchboard::plugin::kv::KvError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_ENTRIES: usize = 100_000;
pub const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

#[derive(Default)]
pub struct KvStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    bytes: usize,
}

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

fn entry_size(key: &str, value: &[u8]) -> usize {
    key.len() + value.len()
}

impl Inner {
    fn get_live(&mut self, key: &str, now: Instant) -> Option<&Entry> {
        if self.map.get(key).is_some_and(|e| !e.live(now)) {
            self.remove(key);
        }
        self.map.get(key)
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.map.remove(key) {
            Some(e) => {
                self.bytes -= entry_size(key, &e.value);
                true
            }
            None => false,
        }
    }

    fn sweep(&mut self, now: Instant) {
        let mut freed = 0;
        self.map.retain(|k, e| {
            let keep = e.live(now);
            if !keep {
                freed += entry_size(k, &e.value);
            }
            keep
        });
        self.bytes -= freed;
    }

    fn put(
        &mut self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<(), KvError> {
        let new = entry_size(key, value);
        let fits = |inner: &Inner| {
            let existing = inner.map.get(key).map(|e| entry_size(key, &e.value));
            let entries = inner.map.len() + usize::from(existing.is_none());
            entries <= MAX_ENTRIES && inner.bytes - existing.unwrap_or(0) + new <= MAX_TOTAL_BYTES
        };
        if !fits(self) {
            self.sweep(now);
            if !fits(self) {
                return Err(KvError::Full);
            }
        }
        self.remove(key);
        self.bytes += new;
        self.map.insert(
            key.to_string(),
            Entry {
                value: value.to_vec(),
                expires: ttl.and_then(|t| now.checked_add(t)),
            },
        );
        Ok(())
    }
}

fn check_sizes(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES || value.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(KvError::TooLarge);
    }
    Ok(())
}

impl KvStore {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.get_at(key, Instant::now())
    }

    pub fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.set_at(key, value, ttl, Instant::now())
    }

    /// Replace the live value `expected` (`None` = absent or expired) with `value`.
    pub fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        self.compare_and_set_at(key, expected, value, ttl, Instant::now())
    }

    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_sizes(key, None)?;
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let existed = inner.get_live(key, now).is_some();
        inner.remove(key);
        Ok(existed)
    }

    /// Number of live entries (for tests and diagnostics).
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.inner
            .lock()
            .map
            .values()
            .filter(|e| e.live(now))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get_at(&self, key: &str, now: Instant) -> Result<Option<Vec<u8>>, KvError> {
        check_sizes(key, None)?;
        Ok(self
            .inner
            .lock()
            .get_live(key, now)
            .map(|e| e.value.clone()))
    }

    fn set_at(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<(), KvError> {
        check_sizes(key, Some(value))?;
        self.inner.lock().put(key, value, ttl, now)
    }

    fn compare_and_set_at(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<bool, KvError> {
        check_sizes(key, Some(value))?;
        let mut inner = self.inner.lock();
        let current = inner.get_live(key, now).map(|e| e.value.as_slice());
        if current != expected {
            return Ok(false);
        }
        inner.put(key, value, ttl, now)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_expires_entries() {
        let kv = KvStore::default();
        let t0 = Instant::now();
        kv.set_at("a", b"1", Some(Duration::from_secs(10)), t0)
            .unwrap();
        kv.set_at("b", b"2", None, t0).unwrap();
        assert_eq!(
            kv.get_at("a", t0 + Duration::from_secs(9)).unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(kv.get_at("a", t0 + Duration::from_secs(10)).unwrap(), None);
        assert_eq!(
            kv.get_at("b", t0 + Duration::from_secs(1_000_000)).unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(kv.inner.lock().bytes, 2);
    }

    #[test]
    fn compare_and_set_is_exact() {
        let kv = KvStore::default();
        let t0 = Instant::now();
        // Absent -> set.
        assert!(
            kv.compare_and_set_at("jti", None, b"used", Some(Duration::from_secs(5)), t0)
                .unwrap()
        );
        // Present: a second "first use" fails (replay).
        assert!(
            !kv.compare_and_set_at("jti", None, b"used", None, t0)
                .unwrap()
        );
        // Wrong expected value fails; right one swaps.
        assert!(
            !kv.compare_and_set_at("jti", Some(b"x"), b"y", None, t0)
                .unwrap()
        );
        assert!(
            kv.compare_and_set_at("jti", Some(b"used"), b"again", None, t0)
                .unwrap()
        );
        assert_eq!(kv.get_at("jti", t0).unwrap(), Some(b"again".to_vec()));
        // After expiry the key counts as absent again.
        assert!(
            kv.compare_and_set_at("n", None, b"1", Some(Duration::from_millis(1)), t0)
                .unwrap()
        );
        assert!(
            kv.compare_and_set_at("n", None, b"1", None, t0 + Duration::from_millis(2))
                .unwrap()
        );
    }

    #[test]
    fn limits_are_enforced() {
        let kv = KvStore::default();
        let big_key = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(kv.set(&big_key, b"v", None), Err(KvError::TooLarge));
        assert_eq!(
            kv.set("k", &vec![0; MAX_VALUE_BYTES + 1], None),
            Err(KvError::TooLarge)
        );
        assert!(!kv.delete("k").unwrap());
        kv.set("k", b"v", None).unwrap();
        assert!(kv.delete("k").unwrap());
        assert!(kv.is_empty());

        // Fill the entry budget with expiring entries: a later insert sweeps them.
        let t0 = Instant::now();
        {
            let mut inner = kv.inner.lock();
            for i in 0..MAX_ENTRIES {
                inner
                    .put(&i.to_string(), b"", Some(Duration::from_secs(1)), t0)
                    .unwrap();
            }
        }
        assert_eq!(kv.set_at("late", b"v", None, t0), Err(KvError::Full));
        kv.set_at("late", b"v", None, t0 + Duration::from_secs(2))
            .unwrap();
        assert_eq!(kv.inner.lock().map.len(), 1);
    }
}
