//! Single-port UDP (`webrtc.udp_port`): every session's ICE, DTLS and media on one port per
//! bind address, so a firewall opens one port instead of a range.
//!
//! One socket per bind address is read by one task. A datagram goes to the session its
//! remote address belongs to; from an address not seen yet only a STUN Binding request is
//! taken, routed by the username fragment it names (ours: the part of USERNAME before the
//! colon), which each session registers when it answers an offer. The session's ICE agent
//! then checks the request's integrity as it would on a socket of its own. Everything else —
//! garbage, unknown fragments — is dropped and counted, and touches no session.
//!
//! Sessions see a [`MuxSocket`] per bind address: sends go straight out of the shared socket
//! (batched like every viewer socket, see `sfu::egress`), receives come from the reader task.
//! The port is bound exclusively: a second process configured with the same port fails to
//! start instead of sharing (and stealing) datagrams.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use webrtc::runtime::{AsyncUdpSocket, RecvMeta, Runtime, Transmit};

/// Datagrams a session's queue holds before the reader drops more for it (its driver is
/// stalled; the rest of the mux goes on).
const SESSION_QUEUE: usize = 512;
/// Largest datagram read (an Ethernet MTU's worth, with room to spare).
const MAX_DATAGRAM: usize = 2048;

/// Datagrams nobody could be found for (not STUN, unknown fragment, malformed).
static UNROUTED: AtomicU64 = AtomicU64::new(0);
/// Datagrams dropped because their session's queue was full.
static QUEUE_FULL: AtomicU64 = AtomicU64::new(0);

/// (unrouted, dropped at a full session queue) since start.
pub fn counters() -> (u64, u64) {
    (
        UNROUTED.load(Ordering::Relaxed),
        QUEUE_FULL.load(Ordering::Relaxed),
    )
}

struct Datagram {
    data: Vec<u8>,
    from: SocketAddr,
}

/// Who gets what arrives on one shared socket.
#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
    sinks: HashMap<u64, mpsc::Sender<Datagram>>,
}

/// One bound address of the mux.
struct Shared {
    local: SocketAddr,
    socket: Arc<dyn AsyncUdpSocket>,
    routes: Mutex<Routes>,
}

impl Shared {
    fn route(&self, data: &[u8], from: SocketAddr) {
        let mut routes = self.routes.lock();
        let id = match routes.by_addr.get(&from) {
            Some(id) => Some(*id),
            None => {
                let id = local_ufrag(data).and_then(|u| routes.by_ufrag.get(u).copied());
                if let Some(id) = id {
                    routes.by_addr.insert(from, id);
                }
                id
            }
        };
        let Some(sink) = id.and_then(|id| routes.sinks.get(&id)) else {
            UNROUTED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let datagram = Datagram {
            data: data.to_vec(),
            from,
        };
        if sink.try_send(datagram).is_err() {
            QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn remove(&self, id: u64) {
        let mut routes = self.routes.lock();
        routes.sinks.remove(&id);
        routes.by_ufrag.retain(|_, v| *v != id);
        routes.by_addr.retain(|_, v| *v != id);
    }
}

/// The shared sockets, one per bind address, all on one port.
pub struct UdpMux {
    shared: Vec<Arc<Shared>>,
    next_id: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("webrtc.udp_port: cannot bind {addr}: {source}")]
pub struct MuxBindError {
    addr: SocketAddr,
    source: io::Error,
}

impl UdpMux {
    /// Bind `port` on every address in `ips` (exclusively) and start reading. `runtime`
    /// wraps the sockets (the viewer runtime: no GRO, batched sends).
    pub fn bind(
        ips: &[IpAddr],
        port: u16,
        runtime: &Arc<dyn Runtime>,
    ) -> Result<Arc<UdpMux>, MuxBindError> {
        let mut shared = Vec::new();
        for ip in ips {
            let addr = SocketAddr::new(*ip, port);
            let err = |source| MuxBindError { addr, source };
            let socket = std::net::UdpSocket::bind(addr).map_err(err)?;
            let local = socket.local_addr().map_err(err)?;
            let socket = runtime.wrap_udp_socket(socket).map_err(err)?;
            shared.push(Arc::new(Shared {
                local,
                socket,
                routes: Mutex::new(Routes::default()),
            }));
        }
        for s in &shared {
            tokio::spawn(read(Arc::downgrade(s), s.socket.clone()));
        }
        Ok(Arc::new(UdpMux {
            shared,
            next_id: AtomicU64::new(1),
        }))
    }

    /// The addresses bound (the port the OS chose when configured 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.iter().map(|s| s.local).collect()
    }

    /// A new session's sockets, one per bind address.
    pub fn bind_session(self: &Arc<Self>) -> UdpBinding {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sockets = self
            .shared
            .iter()
            .map(|s| {
                let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                s.routes.lock().sinks.insert(id, tx);
                Arc::new(MuxSocket {
                    shared: s.clone(),
                    rx: Mutex::new(rx),
                })
            })
            .collect();
        UdpBinding {
            id,
            mux: self.clone(),
            sockets,
        }
    }
}

/// Read one shared socket until the mux is gone.
async fn read(shared: std::sync::Weak<Shared>, socket: Arc<dyn AsyncUdpSocket>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = socket.recv_from(&mut buf).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match received {
            Ok((n, from)) => shared.route(&buf[..n], from),
            // ICMP errors surface as recv errors on Linux (a client went away): not fatal.
            Err(e) => tracing::trace!(error = %e, "single-port UDP receive error"),
        }
    }
}

/// One session's place on the mux. Dropping it removes every route to the session.
pub struct UdpBinding {
    id: u64,
    mux: Arc<UdpMux>,
    sockets: Vec<Arc<MuxSocket>>,
}

impl UdpBinding {
    /// Route STUN requests naming `ufrag` (our username fragment, from our answer) here.
    pub fn register_ufrag(&self, ufrag: &str) {
        for s in &self.mux.shared {
            s.routes.lock().by_ufrag.insert(ufrag.to_owned(), self.id);
        }
    }

    pub fn sockets(&self) -> Vec<Arc<dyn AsyncUdpSocket>> {
        self.sockets
            .iter()
            .map(|s| s.clone() as Arc<dyn AsyncUdpSocket>)
            .collect()
    }

    /// The socket for local address `ip` (the first one if none matches).
    pub fn socket_for(&self, ip: IpAddr) -> Arc<dyn AsyncUdpSocket> {
        let s = self
            .sockets
            .iter()
            .find(|s| s.shared.local.ip() == ip)
            .or(self.sockets.first())
            .expect("a mux has at least one socket");
        s.clone()
    }
}

impl Drop for UdpBinding {
    fn drop(&mut self) {
        for s in &self.mux.shared {
            s.remove(self.id);
        }
    }
}

/// A session's socket on the mux.
pub struct MuxSocket {
    shared: Arc<Shared>,
    rx: Mutex<mpsc::Receiver<Datagram>>,
}

impl fmt::Debug for MuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxSocket")
            .field("local", &self.shared.local)
            .finish()
    }
}

impl AsyncUdpSocket for MuxSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.local)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.shared.socket.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        if bufs.is_empty() || meta.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut rx = self.rx.lock();
        match rx.poll_recv(cx) {
            Poll::Ready(Some(d)) => {
                let n = d.data.len().min(bufs[0].len());
                bufs[0][..n].copy_from_slice(&d.data[..n]);
                let mut m = RecvMeta::default();
                m.addr = d.from;
                m.len = n;
                m.stride = n;
                m.dst_ip = Some(self.shared.local.ip());
                meta[0] = m;
                Poll::Ready(Ok(1))
            }
            Poll::Ready(None) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the session left the single-port mux",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn max_gso_segments(&self) -> usize {
        self.shared.socket.max_gso_segments()
    }
}

/// Our username fragment in a STUN Binding request (RFC 8489 §5, USERNAME is
/// `<receiver's ufrag>:<sender's ufrag>` in ICE), or `None` for anything else.
pub(super) fn local_ufrag(data: &[u8]) -> Option<&str> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
    const USERNAME: u16 = 0x0006;
    if data.len() < 20 || data[0..2] != BINDING_REQUEST || data[4..8] != MAGIC {
        return None;
    }
    let length = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split_once(':').map(|(ours, _)| ours);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rtc::stun::message::{BINDING_REQUEST, Message, TransactionId};
    use rtc::stun::textattrs::TextAttribute;

    pub(in crate::ice) fn binding_request(username: &str) -> Vec<u8> {
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
            Box::new(TextAttribute::new(
                rtc::stun::attributes::ATTR_USERNAME,
                username.to_owned(),
            )),
        ])
        .unwrap();
        m.raw
    }

    #[test]
    fn the_local_fragment_is_read_from_binding_requests_only() {
        assert_eq!(
            local_ufrag(&binding_request("ourFrag:theirs")),
            Some("ourFrag")
        );
        assert_eq!(local_ufrag(&binding_request("no-colon")), None);
        assert_eq!(
            local_ufrag(b"\x80\x60 an RTP packet, not STUN at all"),
            None
        );
        let mut truncated = binding_request("ourFrag:theirs");
        truncated.truncate(24);
        assert_eq!(local_ufrag(&truncated), None);
        assert_eq!(local_ufrag(&[]), None);
    }

    #[tokio::test]
    async fn datagrams_reach_the_session_that_registered_their_fragment() {
        let runtime = crate::sfu::runtime::ViewerRuntime::shared(false);
        let mux = UdpMux::bind(&[IpAddr::from([127, 0, 0, 1])], 0, &runtime).unwrap();
        let server = mux.local_addrs()[0];
        let (a, b) = (mux.bind_session(), mux.bind_session());
        a.register_ufrag("aaaa");
        b.register_ufrag("bbbb");
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Unknown fragment and garbage first: dropped, counted.
        let before = counters().0;
        client
            .send_to(&binding_request("zzzz:x"), server)
            .await
            .unwrap();
        client.send_to(b"garbage", server).await.unwrap();
        // Then b's fragment: from now on this address is b's.
        client
            .send_to(&binding_request("bbbb:x"), server)
            .await
            .unwrap();
        client
            .send_to(b"media after the check", server)
            .await
            .unwrap();
        let mut buf = [0u8; 2048];
        let b_socket = b.socket_for(IpAddr::from([127, 0, 0, 1]));
        let (n, from) = b_socket.recv_from(&mut buf).await.unwrap();
        assert_eq!(from, client.local_addr().unwrap());
        assert_eq!(local_ufrag(&buf[..n]), Some("bbbb"));
        let (n, _) = b_socket.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"media after the check");
        assert!(counters().0 >= before + 2);
        // a got nothing; its sends leave from the shared port.
        let a_socket = a.socket_for(IpAddr::from([127, 0, 0, 1]));
        let pending = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            a_socket.recv_from(&mut buf),
        )
        .await;
        assert!(pending.is_err(), "nothing for a");
        a_socket
            .send_to(b"reply", client.local_addr().unwrap())
            .await
            .unwrap();
        let (n, from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"reply"[..], server));
        // A session that ended is forgotten: its address is unrouted again.
        drop(b);
        client.send_to(b"late", server).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(mux.shared[0].routes.lock().by_addr.is_empty());
    }

    #[tokio::test]
    async fn the_port_is_not_shared_with_another_process() {
        let runtime = crate::sfu::runtime::ViewerRuntime::shared(false);
        let mux = UdpMux::bind(&[IpAddr::from([127, 0, 0, 1])], 0, &runtime).unwrap();
        let port = mux.local_addrs()[0].port();
        let second = UdpMux::bind(&[IpAddr::from([127, 0, 0, 1])], port, &runtime);
        let err = second.err().expect("the port is taken").to_string();
        assert!(
            err.starts_with("webrtc.udp_port: cannot bind 127.0.0.1:"),
            "{err}"
        );
    }
}
