//! What a plugin instance can reach: the per-call store state and the host imports.
//!
//! Every call gets a fresh [`CallState`]. The imports are implemented here for the latest
//! interface version; older versions delegate to them (`abi/v0_1_0.rs`). Grants are checked
//! twice: at load time (`grants.rs`: a component importing an ungranted interface is refused)
//! and here (defence in depth).

use super::abi::latest::switchboard::plugin::{clock, context, crypto, http, kv, log, types};
use super::grants::PluginGrants;
use super::kv::KvStore;
use super::upstream::Upstreams;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Longest log line kept; the rest is cut.
pub const MAX_LOG_BYTES: usize = 2048;
/// Log lines a plugin may emit in a burst, and per second after that.
const LOG_BURST: f64 = 50.0;
const LOG_PER_SEC: f64 = 20.0;

/// State shared by every call of one loaded plugin.
pub struct PluginShared {
    pub name: Arc<str>,
    pub grants: PluginGrants,
    pub kv: Arc<KvStore>,
    pub upstreams: Arc<Upstreams>,
    log: Mutex<LogBucket>,
}

impl PluginShared {
    pub fn new(
        name: &str,
        grants: PluginGrants,
        kv: Arc<KvStore>,
        upstreams: Arc<Upstreams>,
    ) -> Self {
        PluginShared {
            name: name.into(),
            grants,
            kv,
            upstreams,
            log: Mutex::new(LogBucket::new(Instant::now())),
        }
    }
}

/// Token bucket for plugin log lines; counts what it drops so the next line can say so.
struct LogBucket {
    tokens: f64,
    last: Instant,
    dropped: u64,
}

impl LogBucket {
    fn new(now: Instant) -> Self {
        LogBucket {
            tokens: LOG_BURST,
            last: now,
            dropped: 0,
        }
    }

    /// `Some(dropped_since_last_line)` if a line may be written now.
    fn take(&mut self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * LOG_PER_SEC).min(LOG_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            None
        }
    }
}

/// The `T` of every plugin `Store`: one per call.
pub struct CallState {
    pub plugin: Arc<PluginShared>,
    memory_limit: usize,
    /// Set when the plugin hit its memory limit, to report OOM rather than a bare trap.
    pub out_of_memory: bool,
    /// WASI state, created only if a WASI-importing component touches it.
    wasi: Option<(WasiCtx, ResourceTable)>,
    /// This call re-checks a live session (the `context` import tells the plugin).
    pub recheck: bool,
}

impl CallState {
    pub fn new(plugin: Arc<PluginShared>, memory_limit: usize) -> Self {
        CallState {
            plugin,
            memory_limit,
            out_of_memory: false,
            wasi: None,
            recheck: false,
        }
    }
}

impl wasmtime::ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.out_of_memory = true;
            wasmtime::bail!("memory limit of {} MiB exceeded", self.memory_limit >> 20);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 20_000)
    }
}

impl WasiView for CallState {
    /// WASI p2 components load with nothing granted: no environment, arguments, files,
    /// sockets or stdio (clocks and randomness only, which `std` needs to start).
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (ctx, table) = self.wasi.get_or_insert_with(|| {
            let ctx = wasmtime_wasi::WasiCtxBuilder::new()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build();
            (ctx, ResourceTable::new())
        });
        WasiCtxView { ctx, table }
    }
}

impl types::Host for CallState {}

impl log::Host for CallState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if !self.plugin.grants.log {
            return Ok(());
        }
        let Some(dropped) = self.plugin.log.lock().take(Instant::now()) else {
            return Ok(());
        };
        let plugin = &*self.plugin.name;
        let message = sanitize(&message);
        if dropped > 0 {
            tracing::warn!(target: "switchboard::plugin", plugin, dropped, "plugin log lines suppressed by rate limit");
        }
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "switchboard::plugin", plugin, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "switchboard::plugin", plugin, "{message}")
            }
            log::Level::Info => tracing::info!(target: "switchboard::plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "switchboard::plugin", plugin, "{message}"),
            log::Level::Error => {
                tracing::error!(target: "switchboard::plugin", plugin, "{message}")
            }
        }
        Ok(())
    }
}

/// Cut to [`MAX_LOG_BYTES`] and escape control characters, so a plugin cannot forge log lines.
fn sanitize(message: &str) -> String {
    let mut end = message.len().min(MAX_LOG_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = message[..end]
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if end < message.len() {
        out.push_str(" [truncated]");
    }
    out
}

impl clock::Host for CallState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        if !self.plugin.grants.clock {
            wasmtime::bail!("clock is not granted to plugin `{}`", self.plugin.name);
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

impl context::Host for CallState {
    fn is_recheck(&mut self) -> wasmtime::Result<bool> {
        Ok(self.recheck)
    }
}

impl crypto::Host for CallState {
    fn verify(
        &mut self,
        algorithm: crypto::SignatureAlgorithm,
        public_key: Vec<u8>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        self.check_crypto()?;
        use ring::signature as sig;
        let scheme: &dyn sig::VerificationAlgorithm = match algorithm {
            crypto::SignatureAlgorithm::RsaPkcs1Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            crypto::SignatureAlgorithm::EcdsaP256Sha256 => &sig::ECDSA_P256_SHA256_FIXED,
            crypto::SignatureAlgorithm::Ed25519 => &sig::ED25519,
        };
        Ok(sig::UnparsedPublicKey::new(scheme, &public_key)
            .verify(&message, &signature)
            .is_ok())
    }

    fn verify_sr25519(
        &mut self,
        public_key: Vec<u8>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        self.check_crypto()?;
        Ok(super::wallet::verify_sr25519(
            &public_key,
            &message,
            &signature,
        ))
    }

    fn recover_secp256k1(
        &mut self,
        prehash: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.check_crypto()?;
        Ok(super::wallet::recover_secp256k1(&prehash, &signature))
    }

    fn keccak256(&mut self, data: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        self.check_crypto()?;
        Ok(super::wallet::keccak256(&data).to_vec())
    }

    fn blake2b(&mut self, data: Vec<u8>, out_len: u8) -> wasmtime::Result<Vec<u8>> {
        self.check_crypto()?;
        Ok(super::wallet::blake2b(&data, out_len))
    }
}

impl CallState {
    fn check_crypto(&self) -> wasmtime::Result<()> {
        if !self.plugin.grants.crypto {
            wasmtime::bail!("crypto is not granted to plugin `{}`", self.plugin.name);
        }
        Ok(())
    }
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

impl kv::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::KvError>> {
        if !self.plugin.grants.kv {
            return Ok(Err(kv::KvError::NotGranted));
        }
        Ok(self.plugin.kv.get(&key))
    }

    fn set_with_ttl(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), kv::KvError>> {
        if !self.plugin.grants.kv {
            return Ok(Err(kv::KvError::NotGranted));
        }
        Ok(self.plugin.kv.set(&key, &value, ttl(ttl_ms)))
    }

    fn compare_and_set(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<bool, kv::KvError>> {
        if !self.plugin.grants.kv {
            return Ok(Err(kv::KvError::NotGranted));
        }
        Ok(self
            .plugin
            .kv
            .compare_and_set(&key, expected.as_deref(), &value, ttl(ttl_ms)))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, kv::KvError>> {
        if !self.plugin.grants.kv {
            return Ok(Err(kv::KvError::NotGranted));
        }
        Ok(self.plugin.kv.delete(&key))
    }
}

impl http::Host for CallState {
    async fn fetch(&mut self, req: http::Request) -> Result<http::Response, http::HttpError> {
        let plugin = self.plugin.clone();
        plugin.upstreams.fetch(&plugin.grants.http, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_bucket_limits_and_counts_drops() {
        let t0 = Instant::now();
        let mut bucket = LogBucket::new(t0);
        for _ in 0..LOG_BURST as usize {
            assert_eq!(bucket.take(t0), Some(0));
        }
        assert_eq!(bucket.take(t0), None);
        assert_eq!(bucket.take(t0), None);
        // One second refills LOG_PER_SEC tokens; the first line reports the two drops.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(bucket.take(t1), Some(2));
        assert_eq!(bucket.take(t1), Some(0));
    }

    #[test]
    fn sanitize_escapes_and_truncates() {
        assert_eq!(sanitize("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        let long = "é".repeat(MAX_LOG_BYTES);
        let out = sanitize(&long);
        assert!(out.ends_with(" [truncated]"));
        assert!(out.len() <= MAX_LOG_BYTES + " [truncated]".len());
    }
}
