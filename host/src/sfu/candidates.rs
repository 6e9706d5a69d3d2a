//! Which remote ICE candidates the server will check.
//!
//! Every remote candidate makes the server send STUN binding requests to an address the client
//! chose — before anyone has proven they own it. Unchecked, an offer or an unauthenticated
//! PATCH with many candidates turns the server into a reflector (measured before this module:
//! a 7 KB PATCH with 120 candidates made it send 12,120 datagrams to 120 chosen addresses).
//! So candidates are capped per request and per session, and addresses the server cannot or
//! must not reach are dropped before ICE sees them: multicast, broadcast, unspecified,
//! link-local (which holds the cloud metadata service), the well-known metadata addresses,
//! and loopback unless the server itself binds loopback.

use super::error::SfuError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most candidates one offer or PATCH may carry. Browsers send a handful (host per interface,
/// TCP, server-reflexive, relay); more is a client bug or an attack.
pub const MAX_PER_REQUEST: usize = 20;
/// Most candidates a session accepts over its life (until an ICE restart starts over).
pub const MAX_PER_SESSION: usize = 40;

/// Cloud metadata services outside the link-local ranges (AWS IPv6, Alibaba Cloud).
const METADATA: [IpAddr; 2] = [
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];

/// What the server may send connectivity checks to.
#[derive(Debug, Clone, Copy)]
pub struct CandidatePolicy {
    /// Loopback candidates are only useful (and only allowed) when the server binds loopback.
    allow_loopback: bool,
}

impl CandidatePolicy {
    pub fn new(bind_ips: &[IpAddr]) -> CandidatePolicy {
        CandidatePolicy {
            allow_loopback: bind_ips.iter().any(IpAddr::is_loopback),
        }
    }

    /// Whether a candidate (`candidate:...` attribute value) may be checked. Candidates named
    /// by host name (mDNS `.local`) pass: ICE resolves them or ignores them, and a name is not
    /// an address anyone chose for us.
    pub fn allows(&self, candidate: &str) -> bool {
        let fields: Vec<&str> = candidate.split_whitespace().collect();
        let (Some(address), Some(port)) = (fields.get(4), fields.get(5)) else {
            return false;
        };
        if port.parse::<u16>().is_ok_and(|p| p == 0) {
            return false;
        }
        match address.parse::<IpAddr>() {
            Ok(ip) => self.allows_ip(ip),
            Err(_) => true,
        }
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if METADATA.contains(&ip) {
            return false;
        }
        if ip.is_loopback() {
            return self.allow_loopback;
        }
        match ip {
            IpAddr::V4(v4) => {
                !(v4.is_unspecified()
                    || v4.is_broadcast()
                    || v4.is_multicast()
                    || v4.is_link_local()
                    || v4.octets()[0] == 0
                    || v4.octets()[0] >= 240)
            }
            IpAddr::V6(v6) => {
                !(v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local())
            }
        }
    }

    /// Check the candidates of an offer: too many is an error; forbidden ones are removed.
    /// Returns the offer to negotiate and how many candidates it keeps.
    pub fn filter_offer(&self, sdp: &str) -> Result<(String, usize), SfuError> {
        let count = sdp.lines().filter(|l| is_candidate_line(l)).count();
        check_request(count)?;
        let mut kept = 0;
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            if let Some(value) = line.trim_end().strip_prefix("a=")
                && value.starts_with("candidate:")
            {
                if !self.allows(value) {
                    tracing::debug!(candidate = value, "remote candidate dropped");
                    continue;
                }
                kept += 1;
            }
            out.push_str(line);
        }
        Ok((out, kept))
    }
}

fn is_candidate_line(line: &str) -> bool {
    line.trim_start().starts_with("a=candidate:")
}

/// Refuse a request carrying more than [`MAX_PER_REQUEST`] candidates.
pub fn check_request(count: usize) -> Result<(), SfuError> {
    if count > MAX_PER_REQUEST {
        return Err(SfuError::TooManyCandidates(format!(
            "{count} ICE candidates in one request; at most {MAX_PER_REQUEST} are accepted"
        )));
    }
    Ok(())
}

/// Refuse adding `adding` candidates to a session that has `had`.
pub fn check_session(had: usize, adding: usize) -> Result<(), SfuError> {
    if had + adding > MAX_PER_SESSION {
        return Err(SfuError::TooManyCandidates(format!(
            "a session accepts at most {MAX_PER_SESSION} ICE candidates (it has {had}, {adding} more were sent)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(addr: &str) -> String {
        format!("candidate:1 1 udp 2122260223 {addr} 5000 typ host")
    }

    #[test]
    fn forbidden_targets_are_dropped() {
        let public = CandidatePolicy::new(&["0.0.0.0".parse().unwrap()]);
        for ok in ["192.0.2.10", "10.1.2.3", "2001:db8::1", "abcd-1234.local"] {
            assert!(public.allows(&cand(ok)), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "169.254.1.2",
            "fe80::1",
            "224.0.0.251",
            "ff02::1",
            "255.255.255.255",
            "0.0.0.0",
            "::",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
            "240.0.0.1",
        ] {
            assert!(!public.allows(&cand(bad)), "{bad}");
        }
        assert!(
            !public.allows("candidate:1 1 udp 1 192.0.2.1 0 typ host"),
            "port 0"
        );
        assert!(!public.allows("candidate:1 1 udp"), "truncated");
        let local = CandidatePolicy::new(&["127.0.0.1".parse().unwrap()]);
        assert!(local.allows(&cand("127.0.0.1")));
        assert!(!local.allows(&cand("169.254.169.254")));
    }

    #[test]
    fn offers_are_capped_and_filtered() {
        let policy = CandidatePolicy::new(&["0.0.0.0".parse().unwrap()]);
        let offer = format!(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na={}\r\na={}\r\na=mid:0\r\n",
            cand("192.0.2.1"),
            cand("169.254.169.254")
        );
        let (out, kept) = policy.filter_offer(&offer).unwrap();
        assert_eq!(kept, 1);
        assert!(out.contains("192.0.2.1") && !out.contains("169.254"));
        assert!(out.ends_with("a=mid:0\r\n"));
        let many: String = (0..=MAX_PER_REQUEST)
            .map(|i| format!("a={}\r\n", cand(&format!("192.0.2.{i}"))))
            .collect();
        assert!(matches!(
            policy.filter_offer(&format!("v=0\r\n{many}")),
            Err(SfuError::TooManyCandidates(_))
        ));
        assert!(check_session(30, 10).is_ok());
        assert!(check_session(30, 11).is_err());
    }
}
