//! Real network servers the tests start on loopback and stop when dropped: coturn (TURN REST,
//! `use-auth-secret`), nginx and Caddy (reverse proxies in front of us), s3s-fs (an
//! S3-compatible server that checks SigV4 signatures, for recording uploads).
//! Each runs in the foreground with a config written to its own temporary directory.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed (and reaped) on drop, with its temporary directory.
pub struct Running {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    log: PathBuf,
}

impl Running {
    /// What the server wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn binary(name: &str) -> PathBuf {
    // Debian's packages, then what `cargo install` put in cargo's bin directory.
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"));
    let dirs = ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(cargo_bin);
    for dir in dirs {
        let path = dir.join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "{name} is not installed: run `cargo xtask setup` (installs coturn, nginx, caddy, s3s-fs)"
    )
}

fn spawn(program: &str, args: &[&str], dir: tempfile::TempDir, port: u16) -> Running {
    let log = dir.path().join("log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(binary(program))
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    Running {
        child,
        dir,
        port,
        log,
    }
}

/// Wait until something accepts TCP connections on `port`.
pub async fn wait_tcp(port: u16, what: &Running) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}; server log:\n{}", what.log());
}

/// coturn with `use-auth-secret`, TURN over UDP and TCP on a free loopback port, relaying on
/// loopback (its default refuses loopback peers; ours are).
pub async fn coturn(secret: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Relay ports: a block above a free port (coturn skips any taken since).
    let min = free_port().min(65_000);
    let port_arg = port.to_string();
    let pid = dir.path().join("turnserver.pid");
    let db = dir.path().join("turndb");
    let args = [
        "-n".to_owned(),
        "--listening-ip=127.0.0.1".to_owned(),
        "--relay-ip=127.0.0.1".to_owned(),
        format!("--listening-port={port_arg}"),
        format!("--min-port={min}"),
        format!("--max-port={}", min.saturating_add(200)),
        "--use-auth-secret".to_owned(),
        format!("--static-auth-secret={secret}"),
        "--realm=switchboard.test".to_owned(),
        "--allow-loopback-peers".to_owned(),
        "--no-cli".to_owned(),
        "--no-tls".to_owned(),
        "--no-dtls".to_owned(),
        "--log-file=stdout".to_owned(),
        "--simple-log".to_owned(),
        "--verbose".to_owned(),
        format!("--pidfile={}", pid.display()),
        format!("--userdb={}", db.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = spawn("turnserver", &args, dir, port);
    wait_tcp(port, &running).await;
    running
}

/// nginx terminating TLS on `port` with `cert`/`key` and proxying to `upstream`
/// (`127.0.0.1:port`), with the headers docs/deploy.md tells operators to set.
pub async fn nginx(port: u16, cert: &Path, key: &Path, upstream: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"#,
        cert = cert.display(),
        key = key.display(),
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let path = path.display().to_string();
    let running = spawn("nginx", &["-c", &path, "-e", "stderr"], dir, port);
    wait_tcp(port, &running).await;
    running
}

/// Caddy terminating TLS on `port` with `cert`/`key` and proxying to `upstream`, with the
/// Caddyfile of docs/deploy.md.
pub async fn caddy(port: u16, cert: &Path, key: &Path, upstream: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/data\n}}\nhttps://127.0.0.1:{port} {{\n\ttls {cert} {key}\n\treverse_proxy {upstream}\n}}\n",
        d = dir.path().display(),
        cert = cert.display(),
        key = key.display(),
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, conf).unwrap();
    let path = path.display().to_string();
    let running = spawn(
        "caddy",
        &["run", "--config", &path, "--adapter", "caddyfile"],
        dir,
        port,
    );
    wait_tcp(port, &running).await;
    running
}

/// Credentials s3s-fs checks every request's SigV4 signature against.
pub const S3_ACCESS_KEY: &str = "SWITCHBOARDTESTKEY";
pub const S3_SECRET_KEY: &str = "switchboard-test-secret-0123456789";

/// s3s-fs on `port` (chosen before it runs, so a test can configure a storage that is down at
/// first) serving `root`, where each directory is a bucket and each object a file under it.
pub async fn s3s_fs(port: u16, root: &Path) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let port_arg = port.to_string();
    let root = root.display().to_string();
    let args = [
        "--host",
        "127.0.0.1",
        "--port",
        &port_arg,
        "--access-key",
        S3_ACCESS_KEY,
        "--secret-key",
        S3_SECRET_KEY,
        &root,
    ];
    let running = spawn("s3s-fs", &args, dir, port);
    wait_tcp(port, &running).await;
    running
}
