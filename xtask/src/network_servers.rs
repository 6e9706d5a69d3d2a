//! Servers and tools the deployment-networking tests use (`host/tests/turn.rs`,
//! `host/tests/reverse_proxies.rs`, `host/tests/ice_tcp.rs`): coturn, nginx and Caddy on
//! loopback, and iproute2 + nftables for the network namespace that blocks UDP, from their
//! Debian packages. The tests run each server with a config of their own and stop it; the
//! packages' services are not started.

use crate::system::apt_install;
use anyhow::Result;
use std::path::Path;

/// (binary, Debian package, what needs it).
const SERVERS: &[(&str, &str, &str)] = &[
    (
        "turnserver",
        "coturn",
        "coturn is needed by the TURN REST test",
    ),
    (
        "nginx",
        "nginx",
        "nginx is needed by the reverse-proxy test",
    ),
    (
        "caddy",
        "caddy",
        "Caddy is needed by the reverse-proxy test",
    ),
    (
        "ip",
        "iproute2",
        "iproute2 is needed by the ICE-TCP test (a network namespace for the client)",
    ),
    (
        "nft",
        "nftables",
        "nftables is needed by the ICE-TCP test (it blocks UDP for the client)",
    ),
];

/// Install whichever of the servers is missing.
pub fn ensure_network_servers() -> Result<()> {
    let missing: Vec<(&str, &str)> = SERVERS
        .iter()
        .filter(|(binary, _, _)| !on_path(binary))
        .map(|(_, package, why)| (*package, *why))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let why = missing
        .iter()
        .map(|(_, w)| *w)
        .collect::<Vec<_>>()
        .join("; ");
    apt_install(&packages, &why)
}

/// Whether `binary` is in `$PATH` or an sbin directory (nginx lives in /usr/sbin, which a
/// non-root PATH may lack).
fn on_path(binary: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| Path::new(&dir).join(binary).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_binaries_on_the_path_and_in_sbin() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-binary-anywhere"));
    }
}
