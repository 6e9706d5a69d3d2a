//! The `switchboard` binary: config errors name the key, unsafe exposure is refused, the
//! shipped config.toml is valid, and SIGTERM shuts down cleanly.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-bin-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(config: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn shipped_config_is_valid() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.toml");
    let (code, out) = run(std::path::Path::new(shipped), &["--check"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK"));
}

#[test]
fn bad_config_names_the_key() {
    let cases = [
        ("typo", "[http]\nbnid = \"127.0.0.1:1\"\n", "bnid"),
        ("type", "[http]\nbind = 42\n", "bind"),
        (
            "range",
            "[webrtc]\nudp_port_range = [9, 1]\n",
            "webrtc.udp_port_range",
        ),
        (
            "stun",
            "[webrtc]\nice_servers = [{ urls = [\"http://x\"] }]\n",
            "webrtc.ice_servers",
        ),
        (
            "conflict",
            "[rooms]\non_publisher_conflict = \"maybe\"\n",
            "on_publisher_conflict",
        ),
        ("admin", "[admin]\ntoken = \"letmein\"\n", "admin.token"),
        (
            "limits",
            "[limits]\nmax_sessions = 0\n",
            "limits.max_sessions",
        ),
    ];
    for (name, text, key) in cases {
        let path = write_config(name, text);
        let (code, out) = run(&path, &["--check"], &[]);
        assert_ne!(code, 0, "{name} must fail");
        assert!(out.contains(key), "{name}: message names `{key}`: {out}");
    }
    let (code, out) = run(
        std::path::Path::new("/nonexistent/config.toml"),
        &["--check"],
        &[],
    );
    assert_ne!(code, 0);
    assert!(out.contains("not found"), "{out}");
}

#[test]
fn environment_overrides_and_is_validated() {
    let path = write_config("env", "");
    let (code, out) = run(
        &path,
        &["--check"],
        &[("SWITCHBOARD_HTTP__BIND", "not-an-address")],
    );
    assert_ne!(code, 0);
    assert!(out.to_lowercase().contains("bind"), "{out}");
    // Documented for the plugin compile cache, and not a config key: must not stop start-up.
    let (code, out) = run(
        &path,
        &["--check"],
        &[("SWITCHBOARD_PLUGIN_CACHE_DIR", "/tmp/sb-plugin-cache")],
    );
    assert_eq!(code, 0, "{out}");
}

/// `--check` does what start-up does: a missing component or a plugin that rejects its
/// config fails it the same way (it used to say "configuration OK" without loading anything).
#[test]
fn check_loads_plugins_like_start_up() {
    let component = support::component("static-token");
    let plugin = |path: &str, config: &str| {
        format!(
            "[[plugins]]\nname = \"auth\"\npath = \"{path}\"\nhooks = [\"auth\"]\n[plugins.config]\n{config}\n"
        )
    };
    let good = write_config(
        "good",
        &plugin(&component.display().to_string(), "token = \"secret-token\""),
    );
    let (code, out) = run(&good, &["--check"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("configuration OK (1 plugin loaded: auth)"),
        "{out}"
    );

    let missing = write_config(
        "missing",
        &plugin("/nonexistent/auth.wasm", "token = \"x\""),
    );
    let (code, out) = run(&missing, &["--check"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("plugin `auth`: cannot read /nonexistent/auth.wasm"),
        "{out}"
    );
    assert!(!out.contains("configuration OK"), "{out}");

    let rejected = write_config(
        "rejected",
        &plugin(&component.display().to_string(), "token = \"\""),
    );
    let (code, out) = run(&rejected, &["--check"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("plugin `auth`: rejected its config: token: token must not be empty"),
        "{out}"
    );

    // Exposure is checked too: no auth on a public address fails --check as start-up would.
    let open = write_config("open-check", "[http]\nbind = \"0.0.0.0:0\"\n");
    let (code, out) = run(&open, &["--check"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("allow_unauthenticated_public"), "{out}");
}

#[test]
fn refuses_open_server_on_public_address() {
    let path = write_config("open", "[http]\nbind = \"0.0.0.0:0\"\n");
    let (code, out) = run(&path, &[], &[]);
    assert_ne!(code, 0, "must refuse: {out}");
    assert!(out.contains("allow_unauthenticated_public"), "{out}");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let path = write_config(
        "term",
        &format!("[http]\nbind = \"127.0.0.1:{port}\"\n[webrtc]\nbind_ips = [\"127.0.0.1\"]\n"),
    );
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc_kill(child.id() as i32, 15) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit status {status}: {err}");
    assert!(err.contains("switchboard stopped"), "{err}");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
