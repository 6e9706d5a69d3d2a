//! A STUN Binding request: the address a STUN server sees our packets come from
//! (`webrtc.public_ip_from_stun`, see [`super::public`]), for a host behind a 1:1 NAT that does
//! not know the address clients reach it at.

use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Getter, Message, TransactionId};
use rtc::stun::xoraddr::XorMappedAddress;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;

/// Binding requests sent before giving up (RFC 8489 §6.2.1 retransmits; fewer here, start-up
/// should not wait long for an answer that is not coming).
const ATTEMPTS: u32 = 4;
/// First retransmission timeout; doubled on each attempt.
const FIRST_RTO: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum StunError {
    #[error("{0:?} is not a STUN server address (stun:host[:port] or host[:port])")]
    BadAddress(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer from {0}")]
    NoAnswer(SocketAddr),
}

/// `stun:host:port`, `host:port` or `host` (port 3478) as something to resolve.
fn host_port(server: &str) -> Result<String, StunError> {
    let rest = server.strip_prefix("stun:").unwrap_or(server);
    let rest = rest.split('?').next().unwrap_or_default();
    if rest.is_empty() || rest.contains('/') {
        return Err(StunError::BadAddress(server.to_owned()));
    }
    let has_port = match rest.rfind(':') {
        // `[v6]:port`, `host:port`; a bare IPv6 literal has several colons and no brackets.
        Some(i) => rest.starts_with('[') && rest[..i].ends_with(']') || !rest[..i].contains(':'),
        None => false,
    };
    Ok(if has_port {
        rest.to_owned()
    } else if rest.contains(':') && !rest.starts_with('[') {
        format!("[{rest}]:3478")
    } else {
        format!("{rest}:3478")
    })
}

/// The address `server` sees our UDP packets come from (its XOR-MAPPED-ADDRESS), asked from
/// a socket on `bind` (port 0).
pub async fn public_ip(server: &str, bind: IpAddr) -> Result<IpAddr, StunError> {
    let target = host_port(server)?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| StunError::Resolve(target.clone(), e))?
        .collect();
    let Some(&remote) = addrs
        .iter()
        .find(|a| a.is_ipv4() == bind.is_ipv4())
        .or(addrs.first())
    else {
        return Err(StunError::BadAddress(server.to_owned()));
    };
    let socket = UdpSocket::bind(SocketAddr::new(bind, 0)).await?;
    let mut request = Message::new();
    request
        .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut buf = [0u8; 1500];
    let mut rto = FIRST_RTO;
    for _ in 0..ATTEMPTS {
        socket.send_to(&request.raw, remote).await?;
        let deadline = tokio::time::Instant::now() + rto;
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        {
            let (n, from) = received?;
            if from == remote
                && let Some(ip) = mapped_address(&buf[..n], request.transaction_id)
            {
                return Ok(ip);
            }
        }
        rto *= 2;
    }
    Err(StunError::NoAnswer(remote))
}

/// The mapped address of a Binding success response to transaction `id`; anything else is
/// ignored (a stray or forged datagram).
fn mapped_address(datagram: &[u8], id: TransactionId) -> Option<IpAddr> {
    let mut m = Message::new();
    m.raw = datagram.to_vec();
    m.decode().ok()?;
    if m.typ != BINDING_SUCCESS || m.transaction_id != id {
        return None;
    }
    let mut xor = XorMappedAddress::default();
    xor.get_from(&m).ok()?;
    Some(xor.ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_get_the_default_port() {
        assert_eq!(
            host_port("stun:stun.example.com").unwrap(),
            "stun.example.com:3478"
        );
        assert_eq!(host_port("stun:1.2.3.4:19302").unwrap(), "1.2.3.4:19302");
        assert_eq!(
            host_port("stun.example.com:5349").unwrap(),
            "stun.example.com:5349"
        );
        assert_eq!(host_port("stun:[::1]:3479").unwrap(), "[::1]:3479");
        assert_eq!(host_port("::1").unwrap(), "[::1]:3478");
        assert!(host_port("stun:").is_err());
        assert!(host_port("https://x/y").is_err());
    }

    #[test]
    fn only_the_answer_to_our_request_counts() {
        let id = TransactionId::new();
        let mut answer = Message::new();
        let mapped = XorMappedAddress {
            ip: [203, 0, 113, 7].into(),
            port: 40000,
        };
        answer
            .build(&[Box::new(id), Box::new(BINDING_SUCCESS), Box::new(mapped)])
            .unwrap();
        assert_eq!(
            mapped_address(&answer.raw, id),
            Some(IpAddr::from([203, 0, 113, 7]))
        );
        assert_eq!(mapped_address(&answer.raw, TransactionId::new()), None);
        assert_eq!(mapped_address(b"not stun at all", id), None);
    }
}
