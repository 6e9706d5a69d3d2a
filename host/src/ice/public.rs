//! The public addresses advertised in our candidates (1:1 NAT), settled once at start-up:
//! `webrtc.public_ips` as configured, host names in it resolved (ICE candidates must carry IP
//! addresses: webrtc-rs, libnice and others reject a name), or — none configured — the
//! address a STUN server sees (`webrtc.public_ip_from_stun`).

use crate::config::WebrtcConfig;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, thiserror::Error)]
pub enum PublicAddressError {
    #[error("webrtc.public_ips: cannot resolve {0:?}: {1}")]
    Resolve(String, String),
}

/// Replace host names in `public_ips` by their addresses (one IPv4 and one IPv6 at most),
/// then, if there are none, ask the STUN server. A name that does not resolve is an error
/// (advertising nothing, or a stale address, fails every session silently); a STUN server
/// that does not answer is logged, and local addresses are advertised.
pub async fn settle(webrtc: &mut WebrtcConfig) -> Result<(), PublicAddressError> {
    let mut settled: Vec<String> = Vec::new();
    for entry in &webrtc.public_ips {
        if entry.parse::<IpAddr>().is_ok() {
            settled.push(entry.clone());
            continue;
        }
        let addrs: Vec<IpAddr> = tokio::net::lookup_host((entry.as_str(), 0))
            .await
            .map_err(|e| PublicAddressError::Resolve(entry.clone(), e.to_string()))?
            .map(|a| a.ip())
            .collect();
        let v4 = addrs.iter().find(|ip| ip.is_ipv4());
        let v6 = addrs.iter().find(|ip| ip.is_ipv6());
        if v4.is_none() && v6.is_none() {
            return Err(PublicAddressError::Resolve(
                entry.clone(),
                "no address".into(),
            ));
        }
        for ip in v4.into_iter().chain(v6) {
            tracing::info!(name = %entry, %ip, "public host name resolved; advertised in candidates");
            settled.push(ip.to_string());
        }
    }
    webrtc.public_ips = settled;
    discover(webrtc).await;
    Ok(())
}

/// `webrtc.public_ip_from_stun`, when no public address is configured.
async fn discover(webrtc: &mut WebrtcConfig) {
    let server = webrtc.public_ip_from_stun.clone();
    if server.is_empty() || !webrtc.public_ips.is_empty() {
        return;
    }
    let bind = webrtc
        .bind_ips
        .iter()
        .copied()
        .find(|ip| ip.is_ipv4())
        .unwrap_or(Ipv4Addr::UNSPECIFIED.into());
    match super::stun::public_ip(&server, bind).await {
        Ok(ip) => {
            tracing::info!(%ip, %server, "public address learnt from STUN; advertised in candidates");
            webrtc.public_ips.push(ip.to_string());
        }
        Err(e) => tracing::error!(
            %server, error = %e,
            "cannot learn the public address from STUN (webrtc.public_ip_from_stun); \
             advertising local addresses only"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn host_names_become_addresses_and_bad_ones_are_errors() {
        let mut w = crate::config::Config::default().webrtc;
        w.public_ips = vec!["203.0.113.7".into(), "localhost".into()];
        settle(&mut w).await.unwrap();
        assert_eq!(w.public_ips[0], "203.0.113.7");
        assert!(
            w.public_ips[1..]
                .iter()
                .all(|ip| ip.parse::<IpAddr>().unwrap().is_loopback())
        );
        let mut w = crate::config::Config::default().webrtc;
        w.public_ips = vec!["no-such-host.invalid".into()];
        let err = settle(&mut w).await.unwrap_err().to_string();
        assert!(
            err.starts_with("webrtc.public_ips: cannot resolve \"no-such-host.invalid\""),
            "{err}"
        );
    }
}
