//! Plugin overhead benchmark (not a test): per-call latency of auth plugins and concurrent
//! auth throughput, through the same `PluginGate` the server uses.
//!
//! ```text
//! cargo xtask plugins
//! cargo run --release -p switchboard --example plugin_bench [-- --calls 5000 --secs 3 --chain-calls 2000]
//! ```
//!
//! Every call is the full production path: fresh store, instantiate, `configure` with the
//! plugin's config, the hook, output validation. Tokens come from PyJWT
//! (`host/tests/support/mint_jwt.py`; `pip install pyjwt cryptography`).
//!
//! `chain-auth` rows (sr25519, ed25519, eip191): each signature admits one session, so every
//! call gets a token of its own, all signed before timing by the wallets' libraries
//! (`host/tests/chain/sign.mjs --count`; `npm ci` in `host/tests/chain`). The wallet owns the
//! room in the plugin's config, so no chain lookup: signature check, timestamp window, replay
//! check and claim in the kv store, role from config.
//!
//! Besides latency, each row reports the process's CPU time per call (user + system, and the
//! system part alone, from `getrusage(RUSAGE_SELF)`, all threads: the caller, tokio's workers
//! and the epoch ticker), which is what a call costs the server whatever the wall clock says.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard::auth::{Action, AdmitRequest, Gatekeeper, RoomCounts};
use switchboard::plugins::{Hook, PluginConfig, PluginGate, PluginGrants, PluginLimits};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
/// The room every request asks for (and every chain-auth token is signed for).
const ROOM: &str = "bench";
/// Warm-up calls before each latency row.
const WARMUP: usize = 200;
/// chain-auth wallets: a secret URI for the Polkadot schemes; for eip191 the private key of
/// ganache's first deterministic account (`ACCOUNTS[0]` in `host/tests/support/chain.rs`).
const WALLETS: [(&str, &str); 3] = [
    ("sr25519", "//Alice"),
    ("ed25519", "//Alice"),
    (
        "eip191",
        "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d",
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn component(name: &str) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    };
    let path = target.join("plugins").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} missing: run `cargo xtask plugins`",
        path.display()
    );
    path
}

fn plugin(file: &str, config: Value) -> PluginConfig {
    PluginConfig {
        name: file.into(),
        path: component(file),
        hooks: vec![Hook::named("auth").expect("the auth hook is registered")],
        config: config.as_object().cloned().unwrap_or_default(),
        limits: PluginLimits::default(),
        grants: PluginGrants::default(),
    }
}

fn mint() -> Value {
    let claims = json!({ "sub": "bench", "aud": "switchboard", "exp": "$now+3600", "room": "*", "role": ["publish", "play"] });
    let spec = json!({ "secret": SECRET, "tokens": {
        "HS256": { "alg": "HS256", "claims": claims },
        "ES256": { "alg": "ES256", "claims": claims },
        "EdDSA": { "alg": "EdDSA", "claims": claims },
        "RS256": { "alg": "RS256", "claims": claims },
    }});
    let mut child = Command::new("python3")
        .arg(root().join("host/tests/support/mint_jwt.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(spec.to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mint_jwt.py failed (pip install pyjwt cryptography)"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `count` chain-auth tokens for [`ROOM`] from one wallet, each with its own timestamp (now,
/// now + 1 ms, ...) and so its own signature; and the wallet's address.
fn sign_tokens(scheme: &str, seed: &str, count: usize) -> (String, Vec<String>) {
    let dir = root().join("host/tests/chain");
    let out = Command::new("node")
        .arg(dir.join("sign.mjs"))
        .args(["--scheme", scheme, "--seed", seed, "--room", ROOM])
        .args(["--action", "publish", "--count", &count.to_string()])
        .current_dir(&dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("node (Node.js) is needed for the chain-auth rows");
    assert!(
        out.status.success(),
        "sign.mjs failed (run `npm ci` in {})",
        dir.display()
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), count, "sign.mjs printed one line per token");
    let address = lines[0]["address"].as_str().unwrap().to_string();
    let tokens = lines
        .iter()
        .map(|l| l["token"].as_str().unwrap().to_string())
        .collect();
    (address, tokens)
}

fn request(token: &str) -> AdmitRequest {
    request_for(token, Action::Play)
}

fn request_for(token: &str, action: Action) -> AdmitRequest {
    AdmitRequest {
        room: ROOM.into(),
        action,
        credential: Some(token.into()),
        remote_addr: Some("127.0.0.1:5000".parse().unwrap()),
        counts: RoomCounts::default(),
        replacing: None,
    }
}

/// CPU time of every thread of this process so far: user, system.
fn cpu_time() -> (Duration, Duration) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the `rusage` it is pointed at and touches nothing else.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    // SAFETY: initialised by the successful call above.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (time(usage.ru_utime), time(usage.ru_stime))
}

/// `cpu X µs/call (sys Y)`: process CPU time per call since `since`, and the kernel's part.
fn cpu_per_call(since: (Duration, Duration), calls: u64) -> String {
    let (user, sys) = cpu_time();
    let per_call = |d: Duration| d.as_secs_f64() * 1e6 / calls.max(1) as f64;
    let sys = per_call(sys - since.1);
    format!(
        "cpu {:>6.1} µs/call (sys {sys:>5.1})",
        per_call(user - since.0) + sys
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency(label: &str, gate: &PluginGate, token: &str, calls: usize) {
    latency_of(label, gate, &[request(token)], calls).await;
}

/// [`WARMUP`] calls then `calls` timed ones, taking `requests` in turn (round and round when
/// there are fewer: the same token every time for the stateless plugins).
async fn latency_of(label: &str, gate: &PluginGate, requests: &[AdmitRequest], calls: usize) {
    let mut next = requests.iter().cycle();
    for _ in 0..WARMUP {
        gate.admit(next.next().unwrap())
            .await
            .expect("bench token is admitted");
    }
    let mut samples = Vec::with_capacity(calls);
    let cpu = cpu_time();
    for _ in 0..calls {
        let req = next.next().unwrap();
        let started = Instant::now();
        gate.admit(req).await.expect("admitted");
        samples.push(started.elapsed());
    }
    let cpu = cpu_per_call(cpu, calls as u64);
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / calls as u32;
    println!(
        "{label:<28} p50 {:>7.1} µs   p99 {:>7.1} µs   mean {:>7.1} µs   {cpu}",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
    );
}

async fn throughput(gate: Arc<PluginGate>, token: &str, tasks: usize, secs: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (gate, stop, done, failed, req) = (
            gate.clone(),
            stop.clone(),
            done.clone(),
            failed.clone(),
            request(token),
        );
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match gate.admit(&req).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                latencies.push(started.elapsed());
                // Let other callers in between calls, as independent requests would.
                tokio::task::yield_now().await;
            }
            latencies
        }));
    }
    let started = Instant::now();
    let cpu = cpu_time();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let calls = done.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    let cpu = cpu_per_call(cpu, calls);
    latencies.sort();
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "auth-jwt HS256, {tasks:>3} concurrent callers: {rate:>8.0} auth calls/s   p50 {:>8.1} µs   p99 {:>8.1} µs   {cpu}   failed {}",
        percentile(&latencies, 0.50).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
        failed.load(Ordering::Relaxed),
    );
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    let calls = arg("--calls", 5000) as usize;
    let only_baseline = std::env::args().any(|a| a == "--baseline-only");
    let secs = arg("--secs", 3);
    let chain_calls = arg("--chain-calls", 2000) as usize;
    let minted = mint();
    let token = |alg: &str| minted["tokens"][alg].as_str().unwrap().to_string();
    let pem = |alg: &str| minted["pem"][alg].clone();
    println!(
        "plugin bench on {}: {calls} sequential calls per row, {secs} s per throughput run",
        switchboard::loadgen::system::machine_summary()
    );

    let st = PluginGate::new(
        vec![plugin("static-token", json!({ "token": "bench-token" }))],
        Default::default(),
    )
    .await
    .unwrap();
    latency("static-token (baseline)", &st, "bench-token", calls).await;
    if only_baseline {
        return;
    }

    for (alg, key) in [
        ("HS256", json!({ "alg": "HS256", "secret": SECRET })),
        ("ES256", json!({ "alg": "ES256", "pem": pem("ES256") })),
        ("EdDSA", json!({ "alg": "EdDSA", "pem": pem("EdDSA") })),
        ("RS256", json!({ "alg": "RS256", "pem": pem("RS256") })),
    ] {
        let gate = PluginGate::new(
            vec![plugin(
                "auth-jwt",
                json!({ "audience": "switchboard", "keys": [key] }),
            )],
            Default::default(),
        )
        .await
        .unwrap();
        latency(&format!("auth-jwt {alg}"), &gate, &token(alg), calls).await;
    }

    for (scheme, seed) in WALLETS {
        let (address, tokens) = sign_tokens(scheme, seed, WARMUP + chain_calls);
        let requests: Vec<_> = tokens
            .iter()
            .map(|t| request_for(t, Action::Publish))
            .collect();
        let mut config = plugin(
            "chain-auth",
            json!({ "rooms": [{ "room": ROOM, "owners": [address] }] }),
        );
        config.grants.kv = true;
        let gate = PluginGate::new(vec![config], Default::default())
            .await
            .unwrap();
        let label = format!("chain-auth {scheme} (publish)");
        latency_of(&label, &gate, &requests, chain_calls).await;
    }

    let hs = Arc::new(
        PluginGate::new(
            vec![plugin(
                "auth-jwt",
                json!({ "audience": "switchboard", "secret": SECRET }),
            )],
            Default::default(),
        )
        .await
        .unwrap(),
    );
    for tasks in [1, 8, 64] {
        throughput(hs.clone(), &token("HS256"), tasks, secs).await;
    }
}
