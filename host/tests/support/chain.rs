//! The chain side of the chain-auth tests (`host/tests/chain_auth.rs`), made with the wallets'
//! and Ethereum's own libraries so the plugin is checked against independent implementations:
//! `host/tests/chain/sign.mjs` signs tokens with `@polkadot/keyring` (sr25519, ed25519) and
//! ethers (EIP-191), and [`Ganache`] is a real local EVM node on which
//! `host/tests/chain/evm.mjs` compiles (solc-js) and deploys (ethers) `Rooms.sol` and
//! `Ticket.sol`.
//!
//! Everything here blocks (it runs Node.js scripts): call it before the server under test gets
//! busy, or from `tokio::task::spawn_blocking`. Each script is bounded by [`SCRIPT_TIMEOUT`]
//! and runs in its own process group, killed whole when it overruns; the node is killed with
//! its group when the [`Ganache`] is dropped, panics included. The npm dependencies are
//! installed by `cargo xtask test` (or `setup`); a lone `cargo test` runs `npm ci` here once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The chain id ganache runs with (its usual local id), as `eth_chainId` reports it.
pub const CHAIN_ID: u64 = 1337;
/// The mnemonic behind ganache's `--wallet.deterministic` accounts (path m/44'/60'/0'/0/i).
pub const MNEMONIC: &str =
    "myth like bonus scare over problem client lizard pioneer submit female collect";
/// How long ganache may take to answer `eth_chainId`: it loads a 10 MB bundle, and the test
/// machines have two busy cores.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries at starting ganache: the free port found for it can be taken before ganache binds it
/// (ganache refuses port 0, so it cannot pick one itself).
const START_ATTEMPTS: usize = 3;
/// Longest a `sign.mjs` or `evm.mjs` run may take; a cold solc-js compile takes a few seconds.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of ganache's output is kept for error messages (its crashes print a whole
/// minified bundle line before the error).
const LOG_TAIL: usize = 4096;

/// One of ganache's deterministic accounts: 1000 ETH each, unlocked on the node.
#[derive(Clone, Copy, Debug)]
pub struct Account {
    /// Checksummed, as ethers prints it and `sign.mjs` reports it.
    pub address: &'static str,
    /// 0x-prefixed 32-byte hex: a `seed` for [`sign_token`] with [`Scheme::Eip191`].
    pub private_key: &'static str,
}

/// The ten accounts of [`MNEMONIC`], in ganache's order.
pub const ACCOUNTS: [Account; 10] = [
    account(
        "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1",
        "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d",
    ),
    account(
        "0xFFcf8FDEE72ac11b5c542428B35EEF5769C409f0",
        "0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1",
    ),
    account(
        "0x22d491Bde2303f2f43325b2108D26f1eAbA1e32b",
        "0x6370fd033278c143179d81c5526140625662b8daa446c22ee2d73db3707e620c",
    ),
    account(
        "0xE11BA2b4D45Eaed5996Cd0823791E0C93114882d",
        "0x646f1ce2fdad0e6deeeb5c7e8e5543bdde65e86029e2fd9fc169899c440a7913",
    ),
    account(
        "0xd03ea8624C8C5987235048901fB614fDcA89b117",
        "0xadd53f9a7e588d003326d1cbf9e4a43c061aadd9bc938c843a79e7b4fd2ad743",
    ),
    account(
        "0x95cED938F7991cd0dFcb48F0a06a40FA1aF46EBC",
        "0x395df67f0c2d2d9fe1ad08d1bc8b6627011959b79c53d7dd6a3536a33ab8a4fd",
    ),
    account(
        "0x3E5e9111Ae8eB78Fe1CC3bb8915d5D461F3Ef9A9",
        "0xe485d098507f54e7733a205420dfddbe58db035fa577fc294ebd14db90767a52",
    ),
    account(
        "0x28a8746e75304c0780E011BEd21C72cD78cd535E",
        "0xa453611d9419d0e56f499079478fd72c37b251a94bfde4d19872c44cf65386e3",
    ),
    account(
        "0xACa94ef8bD5ffEE41947b4585a84BdA5a3d3DA6E",
        "0x829e924fdf021ba3dbbc4225edfece9aca04b929d6e75613329ca6f1d31c0bb4",
    ),
    account(
        "0x1dF62f291b2E969fB0849d99D9Ce41e2F137006e",
        "0xb0057716d5917badaf911b193b12b910811c1497b5bada8d7711f758981c3773",
    ),
];

const fn account(address: &'static str, private_key: &'static str) -> Account {
    Account {
        address,
        private_key,
    }
}

/// `host/tests/chain`: the scripts, the contracts and their `node_modules`.
pub fn chain_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/chain")
}

/// `npm ci` in [`chain_dir`] unless `node_modules` is at least as new as the lock file (the
/// rule `cargo xtask setup` applies), once per test binary.
pub fn ensure_node_modules() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = chain_dir();
        let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
        let installed = modified(&dir.join("node_modules/.package-lock.json"));
        let locked = modified(&dir.join("package-lock.json"));
        if matches!((installed, locked), (Some(i), Some(l)) if i >= l) {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the chain-auth tests (install Node.js and npm)");
        assert!(
            status.success(),
            "`npm ci` failed in {}: run `cargo xtask setup`",
            dir.display()
        );
    });
}

/// Kills a whole process group when dropped.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals the group we created; no memory involved.
        unsafe { libc::kill(-(self.0 as i32), libc::SIGKILL) };
    }
}

/// The last [`LOG_TAIL`] bytes a child wrote to stdout and stderr, drained on threads so the
/// child never blocks on a full pipe.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<Vec<u8>>>);

impl Tail {
    fn drain(&self, mut from: impl Read + Send + 'static) {
        let tail = self.0.clone();
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                let mut tail = tail.lock().unwrap();
                tail.extend_from_slice(&buf[..n]);
                let excess = tail.len().saturating_sub(LOG_TAIL);
                tail.drain(..excess);
            }
        });
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A ganache node on a loopback port: `--wallet.deterministic` (the [`ACCOUNTS`]), chain id
/// [`CHAIN_ID`], each transaction mined as it arrives. Killed with its process group on drop.
pub struct Ganache {
    port: u16,
    /// The leader of its own process group (ganache's workers, if any, are in it too).
    child: Child,
    log: Tail,
}

/// Where [`Ganache::deploy`] put the fixtures.
#[derive(Clone, Debug)]
pub struct Contracts {
    /// `Rooms.sol`: `ownerOf(string)`, `isCoHost(string,address)`, `setOwner(string,address)`,
    /// `setCoHost(string,address,bool)`.
    pub rooms: String,
    /// `Ticket.sol`: `balanceOf(address)`, `balanceOf(address,uint256)`, `mint(address)`,
    /// `burnFrom(address)`, `mint1155(address,uint256,uint256)`.
    pub ticket: String,
}

impl Ganache {
    /// Starts a node and waits until it answers `eth_chainId`.
    pub fn start() -> Ganache {
        ensure_node_modules();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Ganache::try_start() {
                Ok(node) => return node,
                Err(why) if why.contains("EADDRINUSE") => last = why,
                Err(why) => panic!("ganache did not start: {why}"),
            }
        }
        panic!("ganache did not start on a free port in {START_ATTEMPTS} tries: {last}")
    }

    fn try_start() -> Result<Ganache, String> {
        let port = free_port();
        let mut child = Command::new("node")
            .arg("node_modules/ganache/dist/node/cli.js")
            .args(["--wallet.deterministic", "--logging.quiet"])
            .args(["--chain.chainId", &CHAIN_ID.to_string()])
            .args([
                "--server.host",
                "127.0.0.1",
                "--server.port",
                &port.to_string(),
            ])
            .current_dir(chain_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run `node`: {e}"))?;
        let log = Tail::default();
        log.drain(child.stdout.take().expect("piped stdout"));
        log.drain(child.stderr.take().expect("piped stderr"));
        // From here on, dropping `node` (an early return, a panic) kills it.
        let mut node = Ganache { port, child, log };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                return Err(format!("it exited ({status}): {}", node.log.text()));
            }
            if let Ok(id) = node.try_rpc("eth_chainId", Value::Array(vec![])) {
                assert_eq!(id, format!("{CHAIN_ID:#x}"), "ganache's chain id");
                return Ok(node);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no eth_chainId answer on port {port} in {START_TIMEOUT:?}: {}",
                    node.log.text()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`: the JSON-RPC endpoint, for the plugin's config and scripts.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Account `index` (0 to 9) of [`ACCOUNTS`]; account 0 deploys and sends by default.
    pub fn account(&self, index: usize) -> Account {
        ACCOUNTS[index]
    }

    /// A raw JSON-RPC call (`eth_blockNumber`, `evm_mine`, `evm_snapshot`...): its `result`.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .unwrap_or_else(|why| panic!("ganache {method}: {why}"))
    }

    fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let request = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": method, "params": params,
        });
        let body = http_post(self.port, &request.to_string()).map_err(|e| e.to_string())?;
        let mut reply: Value =
            serde_json::from_str(&body).map_err(|e| format!("{e} in {body:?}"))?;
        match reply.get("error") {
            Some(error) => Err(error.to_string()),
            None => Ok(reply["result"].take()),
        }
    }

    /// Compiles and deploys `Rooms.sol` and `Ticket.sol` from account 0 (fresh contracts on
    /// every call).
    pub fn deploy(&self) -> Contracts {
        let out = self.evm(&["deploy"]).unwrap_or_else(|why| panic!("{why}"));
        let address = |key: &str| {
            out[key]
                .as_str()
                .unwrap_or_else(|| panic!("evm.mjs deploy printed no {key}: {out}"))
                .to_string()
        };
        Contracts {
            rooms: address("rooms"),
            ticket: address("ticket"),
        }
    }

    /// Sends a transaction calling `sig` (e.g. `"setOwner(string,address)"`) with `args` (a JSON
    /// array, e.g. `json!(["lobby", addr])`) from account 0; returns once it is mined with
    /// `{"tx", "block", "status"}`. Panics if it reverts.
    pub fn send(&self, to: &str, sig: &str, args: Value) -> Value {
        self.send_from(0, to, sig, args)
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// [`Ganache::send`] from account `from`, with a revert as `Err` (the node's reason).
    pub fn send_from(
        &self,
        from: usize,
        to: &str,
        sig: &str,
        args: Value,
    ) -> Result<Value, String> {
        let from = from.to_string();
        let args = args.to_string();
        self.evm(&[
            "send", "--to", to, "--sig", sig, "--args", &args, "--from", &from,
        ])
    }

    /// An `eth_call` of `sig` with its return types (e.g. `"ownerOf(string) returns (address)"`):
    /// the decoded result, one output alone and several as an array; addresses checksummed,
    /// integers as decimal strings.
    pub fn call(&self, to: &str, sig: &str, args: Value) -> Value {
        let args = args.to_string();
        self.evm(&["call", "--to", to, "--sig", sig, "--args", &args])
            .unwrap_or_else(|why| panic!("{why}"))
    }

    fn evm(&self, args: &[&str]) -> Result<Value, String> {
        let mut full = args.to_vec();
        let url = self.rpc_url();
        full.extend(["--rpc", &url]);
        let stdout = run_script("evm.mjs", &full)?;
        serde_json::from_str(&stdout).map_err(|e| format!("evm.mjs printed {stdout:?}: {e}"))
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// One HTTP/1.1 POST of a JSON body to 127.0.0.1:`port`; the response body.
fn http_post(port: u16, body: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {response:?}")))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("answered {head:?}")));
    }
    Ok(body.to_string())
}

/// Runs `node <script> <args>` in [`chain_dir`], in its own process group, bounded by
/// [`SCRIPT_TIMEOUT`]; its stdout, or its stderr as the error when it fails.
fn run_script(script: &str, args: &[&str]) -> Result<String, String> {
    ensure_node_modules();
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(chain_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run `node {script}`: {e}"))?;
    let _group = ProcessGroup(child.id());
    let read_all = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = from.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                drop(_group);
                let _ = child.wait();
                return Err(format!(
                    "`node {script} {}` did not finish in {SCRIPT_TIMEOUT:?}",
                    args.join(" ")
                ));
            }
        }
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    if status.success() {
        Ok(stdout.trim().to_string())
    } else {
        Err(format!(
            "`node {script} {}` failed ({status}): {}",
            args.join(" "),
            stderr.trim()
        ))
    }
}

impl Drop for Ganache {
    fn drop(&mut self) {
        drop(ProcessGroup(self.child.id()));
        let _ = self.child.wait();
    }
}

/// How a wallet signs, as the token's `scheme` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Polkadot's default: schnorrkel over the message (random nonce, so never twice the same).
    Sr25519,
    /// Polkadot's ed25519 accounts.
    Ed25519,
    /// Ethereum `personal_sign`: secp256k1 over Keccak-256 of the prefixed message.
    Eip191,
}

impl Scheme {
    /// The name in tokens and on `sign.mjs`'s command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sr25519 => "sr25519",
            Scheme::Ed25519 => "ed25519",
            Scheme::Eip191 => "eip191",
        }
    }
}

/// What [`sign_token`] signs beyond the scheme, seed and room; every field has `sign.mjs`'s
/// default when `None`/`false`.
#[derive(Clone, Debug, Default)]
pub struct SignOptions {
    /// `{action}` in the template (`publish` by default).
    pub action: Option<String>,
    /// `{timestamp}` and the token's `ts` (now by default).
    pub ts_ms: Option<u64>,
    /// The signed message (`livestream:{room}:{timestamp}` by default).
    pub template: Option<String>,
    /// Sign `<Bytes>message</Bytes>`, as Polkadot browser extensions do (sr25519, ed25519).
    pub wrap: bool,
    /// The SS58 prefix of the address (42, generic Substrate, by default).
    pub ss58: Option<u16>,
}

/// A token from `sign.mjs`, with what it signed.
#[derive(Clone, Debug)]
pub struct SignedToken {
    /// base64url (no padding) of `{"scheme","address","ts","sig"}`.
    pub token: String,
    /// SS58 (sr25519, ed25519) or checksummed 0x hex (eip191).
    pub address: String,
    /// The text that was signed (before any `<Bytes>` wrapping or EIP-191 prefix).
    pub message: String,
}

impl SignedToken {
    /// The token's JSON: `scheme`, `address`, `ts`, `sig`.
    pub fn claims(&self) -> Value {
        decode_token(&self.token)
    }
}

/// Signs a token for `room` as a wallet holding `seed` would: a secret URI such as `//Alice`
/// or a mnemonic for sr25519 and ed25519; a 0x private key (see [`ACCOUNTS`]) or a mnemonic
/// for eip191.
pub fn sign_token(scheme: Scheme, seed: &str, room: &str, opts: &SignOptions) -> SignedToken {
    let mut args = vec![
        "--scheme".to_string(),
        scheme.as_str().into(),
        "--seed".into(),
        seed.into(),
        "--room".into(),
        room.into(),
    ];
    let mut option = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            args.extend([format!("--{name}"), value]);
        }
    };
    option("action", opts.action.clone());
    option("ts", opts.ts_ms.map(|ts| ts.to_string()));
    option("template", opts.template.clone());
    option("ss58", opts.ss58.map(|p| p.to_string()));
    if opts.wrap {
        args.push("--wrap".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = run_script("sign.mjs", &args).unwrap_or_else(|why| panic!("{why}"));
    let out: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("sign.mjs printed {stdout:?}: {e}"));
    let field = |key: &str| {
        out[key]
            .as_str()
            .unwrap_or_else(|| panic!("sign.mjs printed no {key}: {out}"))
            .to_string()
    };
    SignedToken {
        token: field("token"),
        address: field("address"),
        message: field("message"),
    }
}

/// The JSON inside a token (panics if it is not base64url JSON).
pub fn decode_token(token: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .unwrap_or_else(|e| panic!("token {token:?} is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("token {token:?} is not JSON: {e}"))
}

/// A token carrying `claims` as they are: for tampered tokens (another address, an old `ts`, a
/// flipped signature byte) built from [`SignedToken::claims`].
pub fn encode_token(claims: &Value) -> String {
    URL_SAFE_NO_PAD.encode(claims.to_string())
}
