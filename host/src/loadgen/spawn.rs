//! Starting the server under test as a child process, optionally pinned to one core with
//! `taskset`, and stopping it again (SIGTERM, then SIGKILL).

use anyhow::{Context, bail};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server the load tool starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// This project's `switchboard` binary.
    Switchboard,
    /// `reference-sfu`: the webrtc crate's broadcast-example pattern.
    Reference,
}

impl ServerKind {
    pub fn binary_name(self) -> &'static str {
        match self {
            ServerKind::Switchboard => "switchboard",
            ServerKind::Reference => "reference-sfu",
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerKind::Switchboard => "switchboard",
            ServerKind::Reference => "reference",
        })
    }
}

/// A server child process; stopped when dropped.
pub struct SpawnedServer {
    child: Child,
    kind: ServerKind,
    url: String,
    log: PathBuf,
    config: Option<PathBuf>,
    pinned: Option<usize>,
}

impl SpawnedServer {
    /// Start `kind` from `bin_dir` on a free loopback port, pinned to `core` when given, and
    /// wait until it answers `GET /healthz`. Its output goes to a log file in the temp dir.
    pub async fn start(
        kind: ServerKind,
        bin_dir: &Path,
        core: Option<usize>,
    ) -> anyhow::Result<SpawnedServer> {
        let bin = bin_dir.join(kind.binary_name());
        if !bin.is_file() {
            bail!(
                "{} not found (build it with `cargo build --release -p switchboard --bins`)",
                bin.display()
            );
        }
        let port = free_port()?;
        let tmp = std::env::temp_dir();
        let tag = format!("{}-{}-{port}", kind.binary_name(), std::process::id());
        let log = tmp.join(format!("switchboard-load-{tag}.log"));
        let (args, config) = match kind {
            ServerKind::Switchboard => {
                let config = tmp.join(format!("switchboard-load-{tag}.toml"));
                std::fs::write(&config, switchboard_config(port))
                    .with_context(|| format!("writing {}", config.display()))?;
                (
                    vec!["--config".into(), config.display().to_string()],
                    Some(config),
                )
            }
            ServerKind::Reference => (
                vec![
                    "--bind".into(),
                    format!("127.0.0.1:{port}"),
                    "--udp-ip".into(),
                    "127.0.0.1".into(),
                ],
                None,
            ),
        };
        let pinned = core.filter(|_| taskset_available());
        let mut cmd = match pinned {
            Some(core) => {
                // taskset execs the server, so the child's pid is the server's pid.
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let out = std::fs::File::create(&log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = SpawnedServer {
            child,
            kind,
            url: format!("http://127.0.0.1:{port}"),
            log,
            config,
            pinned,
        };
        server.wait_healthy(Duration::from_secs(20)).await?;
        Ok(server)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The core the server is pinned to, if pinning worked.
    pub fn pinned(&self) -> Option<usize> {
        self.pinned
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        let health = format!("{}/healthz", self.url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status}); see {}",
                    self.kind,
                    self.log.display()
                );
            }
            if let Ok(resp) = http.get(&health).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer {health} within {timeout:?}; see {}",
                    self.kind,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub async fn stop(mut self) {
        self.terminate().await;
    }

    async fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: kill(2) with our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(config) = &self.config {
            let _ = std::fs::remove_file(config);
        }
    }
}

/// The configuration a spawned Switchboard runs with: loopback only, no plugins, quiet logs.
/// The spawned server's config. Every simulated client comes from 127.0.0.1, so the
/// per-address limits (sessions, request rate) are raised to what the tool itself may open.
fn switchboard_config(port: u16) -> String {
    format!(
        "[http]\nbind = \"127.0.0.1:{port}\"\nrequest_timeout_secs = 30\n\
         [webrtc]\nbind_ips = [\"127.0.0.1\"]\nconnect_timeout_secs = 30\n\
         [limits]\nmax_sessions = 100000\nmax_sessions_per_ip = 100000\n\
         requests_per_sec_per_ip = 100000\nrequest_burst_per_ip = 100000\n\
         [log]\nfilter = \"warn\"\n"
    )
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn taskset_available() -> bool {
    let ok = Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        tracing::warn!("taskset not found: the server runs unpinned");
    }
    ok
}
