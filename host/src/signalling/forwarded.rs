//! Who a request is from when it came through a reverse proxy (`http.trusted_proxies`).
//!
//! A proxy in front of us makes every request look like it comes from the proxy; it says who
//! the client was in `Forwarded: for=...` (RFC 7239) or `X-Forwarded-For`. Those headers are
//! believed only from a trusted proxy, and read from the right: each trusted hop is skipped,
//! and the first address not trusted is the client (a client cannot forge its way past the
//! proxy that appended what it saw). Everything keyed by client address — per-address rate
//! and session limits, the address plugins and the admin API see — uses the result.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The proxies whose forwarding headers we believe.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: &[IpNet]) -> Self {
        TrustedProxies {
            nets: nets.to_vec(),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with `headers`. Forwarded clients get
    /// port 0: the proxy does not say which port they used.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if self.nets.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        let chain = forwarded_for(headers).unwrap_or_else(|| x_forwarded_for(headers));
        let mut nearest = peer.ip();
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => nearest = *ip,
                Some(ip) => return SocketAddr::new(ip.to_canonical(), 0),
                // `unknown`, an obfuscated name or garbage: no one further left can be
                // believed, so the client is as far as the trusted hops reached.
                None => break,
            }
        }
        if nearest == peer.ip() {
            peer
        } else {
            SocketAddr::new(nearest.to_canonical(), 0)
        }
    }
}

/// The `for=` addresses of every `Forwarded` header, in order; `None` without the header.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut chain = Vec::new();
    let mut seen = false;
    for value in headers.get_all(http::header::FORWARDED) {
        seen = true;
        let Ok(value) = value.to_str() else {
            chain.push(None);
            continue;
        };
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim())
            });
            if let Some(node) = node {
                chain.push(parse_node(node.trim_matches('"')));
            }
        }
    }
    seen.then_some(chain)
}

/// The addresses of every `X-Forwarded-For` header, in order.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| {
            value
                .to_str()
                .unwrap_or("garbage")
                .split(',')
                .map(|hop| parse_node(hop.trim()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')?.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(&["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()])
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 5555)
    }

    fn client(p: &TrustedProxies, from: &str, pairs: &[(&'static str, &str)]) -> String {
        p.client(peer(from), &headers(pairs)).to_string()
    }

    #[test]
    fn untrusted_peers_are_who_they_are_whatever_they_claim() {
        let p = proxies();
        let forged = [("x-forwarded-for", "198.51.100.1")];
        assert_eq!(client(&p, "203.0.113.9", &forged), "203.0.113.9:5555");
        let none = TrustedProxies::default();
        assert_eq!(client(&none, "10.0.0.1", &forged), "10.0.0.1:5555");
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let p = proxies();
        // The client forged the first entry; the proxy appended what it saw.
        let h = [("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.1.2.3")];
        assert_eq!(client(&p, "10.0.0.1", &h), "198.51.100.7:0");
        let split = [
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.8"),
        ];
        assert_eq!(client(&p, "10.0.0.1", &split), "198.51.100.8:0");
        assert_eq!(client(&p, "::1", &h), "198.51.100.7:0");
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_accepts_every_form() {
        let p = proxies();
        let h = [
            (
                "forwarded",
                "for=192.0.2.60;proto=https, for=\"[2001:db8::17]:4711\"",
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ];
        assert_eq!(client(&p, "10.9.9.9", &h), "[2001:db8::17]:0");
        let h = [("forwarded", "For=\"192.0.2.43:47011\";by=10.0.0.1")];
        assert_eq!(client(&p, "10.9.9.9", &h), "192.0.2.43:0");
    }

    #[test]
    fn unknown_hops_stop_the_walk_at_the_last_trusted_one() {
        let p = proxies();
        let h = [("forwarded", "for=192.0.2.1, for=unknown, for=10.2.2.2")];
        assert_eq!(client(&p, "10.0.0.1", &h), "10.2.2.2:0");
        assert_eq!(client(&p, "10.0.0.1", &[]), "10.0.0.1:5555");
        let h = [("x-forwarded-for", "not-an-ip")];
        assert_eq!(client(&p, "10.0.0.1", &h), "10.0.0.1:5555");
    }
}
