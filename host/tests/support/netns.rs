//! A network namespace the tests create for a client: a veth pair to this namespace, its own
//! loopback, and optionally nftables rules that drop UDP (a network that allows only TCP).
//! Deleted, with its link and rules, when dropped.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct NetNs {
    pub name: String,
    /// Our end of the veth pair (the server listens here).
    pub host_ip: Ipv4Addr,
    /// The namespace's end.
    pub ns_ip: Ipv4Addr,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl NetNs {
    /// A namespace named after `tag` and this process, linked to ours over a /30 of
    /// 10.201.0.0/16 chosen from the process id and a count of the process's namespaces.
    pub fn create(tag: &str) -> NetNs {
        static CREATED: AtomicU32 = AtomicU32::new(0);
        let n = CREATED.fetch_add(1, Ordering::Relaxed) % 8;
        let pid = std::process::id();
        let name = format!("sb-{tag}-{pid}");
        let net = ((pid % 2000) * 8 + n) * 4;
        let octets = |last: u32| {
            let n = net + last;
            Ipv4Addr::new(10, 201, (n >> 8) as u8, n as u8)
        };
        let ns = NetNs {
            host_ip: octets(1),
            ns_ip: octets(2),
            name,
        };
        let (host_if, ns_if) = (
            format!("sbh{}-{n}", pid % 1000000),
            format!("sbn{}-{n}", pid % 1000000),
        );
        let host_ip = ns.host_ip.to_string();
        let host_cidr = format!("{}/30", ns.host_ip);
        let ns_cidr = format!("{}/30", ns.ns_ip);
        let _ = run(&["ip", "netns", "del", &ns.name]);
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", &ns.name],
            vec![
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ],
            vec!["ip", "link", "set", &ns_if, "netns", &ns.name],
            vec!["ip", "addr", "add", &host_cidr, "dev", &host_if],
            vec!["ip", "link", "set", &host_if, "up"],
            vec!["ip", "-n", &ns.name, "addr", "add", &ns_cidr, "dev", &ns_if],
            vec!["ip", "-n", &ns.name, "link", "set", &ns_if, "up"],
            vec!["ip", "-n", &ns.name, "link", "set", "lo", "up"],
            // Like any client network: a default route (clients join multicast groups on it).
            vec![
                "ip", "-n", &ns.name, "route", "add", "default", "via", &host_ip,
            ],
        ];
        for step in steps {
            run(&step).unwrap_or_else(|e| {
                panic!("creating a test network namespace (needs root and iproute2): {e}")
            });
        }
        ns
    }

    /// Drop every UDP datagram leaving or entering the namespace, counting them (nftables).
    pub fn block_udp(&self) {
        let nft = |rest: &[&str]| {
            let mut args = vec!["ip", "netns", "exec", &self.name, "nft"];
            args.extend_from_slice(rest);
            run(&args).unwrap_or_else(|e| {
                panic!(
                    "nftables in the test namespace (install `nftables`: cargo xtask setup): {e}"
                )
            });
        };
        nft(&["add", "table", "inet", "udpblock"]);
        for (chain, hook) in [("out", "output"), ("in", "input")] {
            nft(&[
                "add",
                "chain",
                "inet",
                "udpblock",
                chain,
                &format!("{{ type filter hook {hook} priority 0; policy accept; }}"),
            ]);
            // Loopback stays open: the browser's own processes talk over it.
            let iface = if hook == "output" { "oif" } else { "iif" };
            nft(&[
                "add", "rule", "inet", "udpblock", chain, iface, "!=", "lo", "meta", "l4proto",
                "udp", "counter", "drop",
            ]);
        }
    }

    /// UDP packets the namespace's rules dropped so far.
    pub fn udp_dropped(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "nft", "list", "table", "inet", "udpblock",
            ])
            .output()
            .expect("nft list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let rest = l.split("counter packets ").nth(1)?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, which takes our end with it.
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}
