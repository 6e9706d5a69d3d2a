//! The process-wide wasmtime engine, its linker, and the compiled-component cache.
//!
//! One [`Engine`] serves every plugin (compiled code and the instance pool are shared), with
//! epoch interruption driven by a ticker thread so a runaway plugin is stopped after its
//! deadline, and the pooling allocator so a fresh instance per call costs microseconds. One
//! [`Linker`] holds the host imports of every interface version (`abi`), side by side.
//! Compilation runs on the blocking pool and is cached twice: in memory by content hash
//! (reloads of unchanged plugins are free) and on disk by wasmtime's cache (restarts are fast).

use super::abi;
use super::config::MAX_MEMORY_MIB;
use super::error::PluginError;
use super::imports::CallState;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Epoch tick: the granularity of plugin deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Plugin calls for new requests (admission) allowed at once; more wait within their deadline.
pub const ADMISSION_CALLS: usize = 448;
/// Plugin calls re-checking live sessions allowed at once: a budget of their own, so a flood
/// of unauthenticated requests cannot starve the re-checks of paying users' sessions.
pub const RECHECK_CALLS: usize = 64;
/// Plugin calls allowed at once across the process (sizes the instance pool).
pub const MAX_CONCURRENT_CALLS: usize = ADMISSION_CALLS + RECHECK_CALLS;
/// Linear memory kept mapped between uses of a pool slot (see [`pooling`]).
const KEEP_RESIDENT: usize = 4 << 20;
/// Compiled components kept in memory.
const MEMORY_CACHE_ENTRIES: usize = 64;
/// Environment variable pointing wasmtime's on-disk cache elsewhere (`off` disables it).
pub const CACHE_DIR_ENV: &str = "SWITCHBOARD_PLUGIN_CACHE_DIR";

pub type ContentHash = [u8; 32];

/// Everything plugins share within the process.
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<CallState>,
    /// Bound concurrent instances so bursts queue instead of exhausting the pool: one budget
    /// for admissions, one for re-checks of live sessions.
    pub admission_permits: Semaphore,
    pub recheck_permits: Semaphore,
    compiled: Mutex<HashMap<ContentHash, Component>>,
}

static RUNTIME: OnceLock<Result<Arc<Runtime>, String>> = OnceLock::new();

/// Threads plugin calls run on (at most this many).
const PLUGIN_THREADS: usize = 2;

/// The async runtime plugin calls run on: threads of their own, so a plugin — even one that
/// spins until its deadline (yielding every epoch tick) — never occupies a worker that
/// forwards media or answers `/healthz`. The operating system shares the cores fairly.
pub fn plugin_threads() -> &'static tokio::runtime::Handle {
    static THREADS: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    THREADS
        .get_or_init(|| {
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(PLUGIN_THREADS);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("plugin")
                .enable_all()
                .build()
                .expect("the plugin threads start")
        })
        .handle()
}

/// The process-wide runtime, created on first use.
pub fn runtime() -> Result<Arc<Runtime>, PluginError> {
    RUNTIME
        .get_or_init(|| Runtime::new().map(Arc::new))
        .clone()
        .map_err(PluginError::Engine)
}

fn base_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}

fn pooling() -> PoolingAllocationConfig {
    let slots = MAX_CONCURRENT_CALLS as u32 + 64;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        // A Rust component is one core module plus wit-component's small shim modules.
        .total_core_instances(slots * 4)
        .max_core_instances_per_component(16)
        .total_memories(slots)
        .max_memories_per_component(2)
        .total_tables(slots * 4)
        .total_stacks(slots)
        .max_memory_size((MAX_MEMORY_MIB as usize) << 20)
        // A fresh instance per call is only cheap if reusing a slot does not page-fault the
        // plugin's heap back in: keep the low pages resident and reset only the dirty ones
        // (PAGEMAP_SCAN, Linux 6.7+; plain memset otherwise).
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// wasmtime's on-disk compilation cache directory: `$SWITCHBOARD_PLUGIN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/switchboard/wasmtime`, else `~/.cache/switchboard/wasmtime`.
fn disk_cache_dir() -> Option<PathBuf> {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(v) if v == "off" || v.is_empty() => return None,
        Some(v) => return Some(PathBuf::from(v)),
        None => {}
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("switchboard").join("wasmtime"))
}

fn with_disk_cache(config: &mut wasmtime::Config) -> Option<PathBuf> {
    let dir = disk_cache_dir()?;
    let mut cache_config = wasmtime::CacheConfig::new();
    cache_config.with_directory(&dir);
    match wasmtime::Cache::new(cache_config) {
        Ok(cache) => {
            config.cache(Some(cache));
            Some(dir)
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "plugin compilation cache disabled");
            None
        }
    }
}

impl Runtime {
    fn new() -> Result<Self, String> {
        let mut config = base_config();
        let disk_cache = with_disk_cache(&mut config);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling()));
        let (engine, pooling) = match Engine::new(&config) {
            Ok(engine) => (engine, true),
            Err(e) => {
                // Some hosts cap virtual memory; fall back rather than refuse to start.
                tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand instance allocation");
                let mut config = base_config();
                with_disk_cache(&mut config);
                let engine = Engine::new(&config)
                    .map_err(|e| format!("cannot create the wasm engine: {e}"))?;
                (engine, false)
            }
        };

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e}"))?;
        // Every released interface version, side by side (their names differ).
        abi::add_to_linker(&mut linker).map_err(|e| format!("cannot link host imports: {e}"))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;

        tracing::info!(
            pooling_allocator = pooling,
            compile_cache = %disk_cache.as_deref().map_or("off".into(), |d| d.display().to_string()),
            "plugin engine ready"
        );
        Ok(Runtime {
            engine,
            linker,
            admission_permits: Semaphore::new(ADMISSION_CALLS),
            recheck_permits: Semaphore::new(RECHECK_CALLS),
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// Compile `bytes` (off the async runtime), reusing an earlier compilation of the same
    /// content. Returns the component and whether it came from the in-memory cache.
    pub async fn compile(&self, bytes: Vec<u8>) -> Result<(Component, ContentHash, bool), String> {
        let hash: ContentHash = Sha256::digest(&bytes).into();
        if let Some(component) = self.compiled.lock().get(&hash) {
            return Ok((component.clone(), hash, true));
        }
        let engine = self.engine.clone();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| format!("compiler task failed: {e}"))?
            .map_err(|e| format!("{e:#}"))?;
        let mut compiled = self.compiled.lock();
        if compiled.len() >= MEMORY_CACHE_ENTRIES {
            let evict = *compiled.keys().next().expect("cache is non-empty");
            compiled.remove(&evict);
        }
        compiled.insert(hash, component.clone());
        Ok((component, hash, false))
    }
}
