//! `cargo xtask plugins`: build every crate of the `plugins/` workspace into a WebAssembly
//! component at `target/plugins/<name>.wasm`.
//!
//! Two toolchains are supported, chosen automatically and announced on stderr:
//!
//! 1. **rustup** with `wasm32-unknown-unknown` (or `wasm32-wasip2`) installed — what plugin
//!    authors have after `rustup target add wasm32-unknown-unknown`.
//! 2. **Debian's `rustc-web`** (`/usr/bin/cargo`, `/usr/bin/rustc`, `rust-web-src`, `lld`) with
//!    `-Zbuild-std`, for machines whose rustup cannot download targets. Installed with apt-get
//!    when missing and running as root.
//!
//! Core modules are turned into components with `wit-component`; `wasm32-wasip2` output already
//! is one. The plugins workspace builds in `target/wasm-build`, never in the host's directories,
//! so the two builds neither share artifacts nor wait on each other's lock.

use crate::plugin_crates;
use crate::system::is_root;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const UNKNOWN: &str = "wasm32-unknown-unknown";
const WASIP2: &str = "wasm32-wasip2";
const DEBIAN_PACKAGES: [&str; 4] = ["rustc-web", "cargo-web", "rust-web-src", "lld"];
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library";

/// How the wasm build is driven.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Toolchain {
    /// The active rustup toolchain has this wasm target installed.
    Rustup { target: &'static str },
    /// Debian's rustc-web, building `std` from source for `wasm32-unknown-unknown`.
    Debian,
}

impl Toolchain {
    fn target(&self) -> &'static str {
        match self {
            Toolchain::Rustup { target } => target,
            Toolchain::Debian => UNKNOWN,
        }
    }
}

/// Build all plugins; returns the directory holding `<name>.wasm` components.
pub fn build_plugins() -> Result<PathBuf> {
    let root = workspace_root();
    let target_dir = target_dir(&root);
    let build_dir = target_dir.join("wasm-build");
    let out_dir = target_dir.join("plugins");
    let manifest = root.join("plugins").join("Cargo.toml");

    let toolchain = choose_toolchain()?;
    let target = toolchain.target();
    // Before the (long) build: a member that would silently produce no plugin stops it here.
    let plugins = plugin_packages(&root, &manifest, &toolchain)?;
    if plugins.is_empty() {
        bail!(
            "{} has no plugin (cdylib) members to build",
            manifest.display()
        );
    }
    let mut cmd = match &toolchain {
        Toolchain::Rustup { .. } => {
            eprintln!("xtask plugins: using rustup's installed `{target}` target");
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        }
        Toolchain::Debian => {
            eprintln!(
                "xtask plugins: rustup has no wasm32 target installed; using Debian's rustc-web \
                 ({}) with RUSTC_BOOTSTRAP=1 -Zbuild-std=std,panic_abort",
                version_of(DEBIAN_RUSTC)
            );
            let mut cmd = Command::new(DEBIAN_CARGO);
            cmd.env("RUSTC", DEBIAN_RUSTC)
                .env("RUSTDOC", "/usr/bin/rustdoc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", "wasm-ld")
                .env_remove("RUSTUP_TOOLCHAIN");
            cmd
        }
    };
    // Settings meant for the host build must not leak into the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target")
        .arg(target)
        .arg("--target-dir")
        .arg(&build_dir);
    if toolchain == Toolchain::Debian {
        cmd.arg("-Zbuild-std=std,panic_abort");
    }
    eprintln!(
        "xtask plugins: building {} (target dir {})",
        manifest.display(),
        build_dir.display()
    );
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("building the plugins failed ({status})");
    }

    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let artifacts = build_dir.join(target).join("release");
    for name in plugins {
        let module = artifacts.join(format!("{}.wasm", name.replace('-', "_")));
        let bytes =
            std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
        let component =
            componentize(&bytes).with_context(|| format!("componentizing plugin `{name}`"))?;
        let dest = out_dir.join(format!("{name}.wasm"));
        write_atomically(&dest, &component)?;
        eprintln!(
            "xtask plugins: {:<20} {:>8} KiB  {}",
            name,
            component.len() / 1024,
            dest.display()
        );
    }
    Ok(out_dir)
}

/// Run the plugins' and the SDK's native unit tests (`cargo test` on the plugins workspace
/// with the host toolchain; no wasm target needed).
pub fn test_plugins() -> Result<()> {
    let manifest = workspace_root().join("plugins").join("Cargo.toml");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("test")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir(&workspace_root()).join("wasm-build"));
    eprintln!("xtask plugins: unit tests of {}", manifest.display());
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("plugin unit tests failed ({status})");
    }
    Ok(())
}

/// The host workspace root (parent of `xtask/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The host's target directory, honouring `CARGO_TARGET_DIR` like cargo does.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

fn choose_toolchain() -> Result<Toolchain> {
    if let Some(target) = rustup_wasm_target() {
        return Ok(Toolchain::Rustup { target });
    }
    if debian_toolchain_missing().is_empty() {
        return Ok(Toolchain::Debian);
    }
    let missing = debian_toolchain_missing();
    if is_root() && Path::new("/usr/bin/apt-get").exists() {
        eprintln!(
            "xtask plugins: no rustup wasm32 target and Debian's wasm toolchain is incomplete \
             (missing {}); installing {} with apt-get",
            missing.join(", "),
            DEBIAN_PACKAGES.join(" ")
        );
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(DEBIAN_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!(
                "apt-get install {} failed ({status})",
                DEBIAN_PACKAGES.join(" ")
            );
        }
        let still = debian_toolchain_missing();
        if still.is_empty() {
            return Ok(Toolchain::Debian);
        }
        bail!("after apt-get, still missing: {}", still.join(", "));
    }
    bail!(
        "no toolchain can build wasm32 plugins: run `rustup target add {UNKNOWN}` \
         (or, on Debian without rustup targets, `apt-get install {}`; missing: {})",
        DEBIAN_PACKAGES.join(" "),
        missing.join(", ")
    )
}

/// A wasm target installed in the active rustup toolchain, preferring `wasm32-unknown-unknown`
/// (smaller components, no WASI imports).
fn rustup_wasm_target() -> Option<&'static str> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let installed = String::from_utf8_lossy(&out.stdout);
    let has = |t: &str| installed.lines().any(|l| l.trim() == t);
    [UNKNOWN, WASIP2].into_iter().find(|t| has(t))
}

/// What the Debian fallback lacks on this machine (empty when usable).
fn debian_toolchain_missing() -> Vec<String> {
    let mut missing = Vec::new();
    for (path, package) in [
        (DEBIAN_CARGO, "cargo-web"),
        (DEBIAN_RUSTC, "rustc-web"),
        (DEBIAN_STD_SRC, "rust-web-src"),
    ] {
        if !Path::new(path).exists() {
            missing.push(format!("{path} ({package})"));
        }
    }
    if !on_path("wasm-ld") {
        missing.push("wasm-ld (lld)".into());
    }
    missing
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

fn version_of(rustc: &str) -> String {
    Command::new(rustc)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| rustc.to_string())
}

/// Names of the plugin packages, from `cargo metadata` (see [`plugin_crates`] for the rules).
fn plugin_packages(root: &Path, manifest: &Path, toolchain: &Toolchain) -> Result<Vec<String>> {
    let cargo = match toolchain {
        Toolchain::Rustup { .. } => std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        Toolchain::Debian => DEBIAN_CARGO.into(),
    };
    let mut cmd = Command::new(cargo);
    cmd.args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--manifest-path",
    ])
    .arg(manifest);
    if *toolchain == Toolchain::Debian {
        cmd.env("RUSTC", DEBIAN_RUSTC)
            .env_remove("RUSTUP_TOOLCHAIN");
    }
    let out = cmd.output().context("running cargo metadata")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`cargo metadata` on {} failed: {}",
            manifest.display(),
            stderr.trim().replace('\n', " ")
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    plugin_crates::plugin_names(&meta, root)
}

/// Turn a core module carrying wit-bindgen's type information into a component; components
/// (from `wasm32-wasip2`) pass through after validation.
fn componentize(bytes: &[u8]) -> Result<Vec<u8>> {
    if wasmparser::Parser::is_component(bytes) {
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(bytes)
            .context("invalid component")?;
        return Ok(bytes.to_vec());
    }
    wit_component::ComponentEncoder::default()
        .module(bytes)?
        .validate(true)
        .encode()
}

/// Replace `dest` in one step, so a server reloading plugins never reads half a file.
fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = dest.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming to {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_both_workspaces() {
        let root = workspace_root();
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("plugins").join("Cargo.toml").is_file());
    }

    #[test]
    fn the_plugins_workspace_classifies_cleanly() {
        let root = workspace_root();
        let manifest = root.join("plugins").join("Cargo.toml");
        let names = plugin_packages(&root, &manifest, &Toolchain::Rustup { target: UNKNOWN })
            .expect("every member of plugins/ is a plugin or a declared library");
        for plugin in ["auth-jwt", "static-token", "room-policy"] {
            assert!(names.iter().any(|n| n == plugin), "{plugin} in {names:?}");
        }
        assert!(
            !names.iter().any(|n| n == "switchboard-plugin-sdk"),
            "{names:?}"
        );
    }

    #[test]
    fn componentize_rejects_garbage() {
        assert!(componentize(b"not wasm").is_err());
    }

    #[test]
    fn debian_path_builds_std_for_unknown_unknown() {
        assert_eq!(Toolchain::Debian.target(), UNKNOWN);
        assert_eq!(Toolchain::Rustup { target: WASIP2 }.target(), WASIP2);
        // Whatever this machine has, every missing item names the package that provides it.
        for item in debian_toolchain_missing() {
            assert!(item.contains('('), "{item}");
        }
    }
}
