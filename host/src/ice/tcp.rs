//! ICE-TCP on one port (`webrtc.tcp_port`): passive TCP candidates with RFC 6544 framing, so
//! clients on networks that block UDP connect without a TURN server.
//!
//! One listener per bind address. A client opens a connection and sends its first ICE check
//! in an RFC 6544 frame (a 2-byte length, then the STUN Binding request); the connection goes
//! to the session whose username fragment that request names — the same routing as the UDP
//! mux ([`super::mux`]) — together with the bytes already read. The session's ICE agent then
//! checks the request's integrity as on any candidate. A connection that sends anything else,
//! names no session, or says nothing within [`HANDSHAKE_TIMEOUT`] is closed and counted;
//! [`MAX_HANDSHAKES`] bounds how many may be waiting at once.
//!
//! Sessions see their connections through a [`TcpBinding`]: webrtc-rs's driver as a listener
//! of its own (`sfu::runtime::MuxRuntime`), direct viewers as links (`sfu::direct`).

use super::mux::local_ufrag;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

/// How long a new connection may take to send its first ICE check.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections that may be waiting for their first check at once; more are closed.
pub const MAX_HANDSHAKES: usize = 256;
/// Largest first frame accepted (a STUN Binding request is far smaller).
const MAX_FIRST_FRAME: usize = 1500;
/// Connections a session may have waiting to be taken by its driver.
const SESSION_QUEUE: usize = 8;

/// Connections closed without reaching a session, by reason.
static UNROUTED: AtomicU64 = AtomicU64::new(0);
static TIMEOUT: AtomicU64 = AtomicU64::new(0);
static BUSY: AtomicU64 = AtomicU64::new(0);
static QUEUE_FULL: AtomicU64 = AtomicU64::new(0);

/// Connections dropped since start: (unrouted, timeout, busy, queue_full).
pub fn counters() -> (u64, u64, u64, u64) {
    (
        UNROUTED.load(Ordering::Relaxed),
        TIMEOUT.load(Ordering::Relaxed),
        BUSY.load(Ordering::Relaxed),
        QUEUE_FULL.load(Ordering::Relaxed),
    )
}

/// A connection on the shared port, routed to a session by its first ICE check.
#[derive(Debug)]
pub struct TcpConnection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// What was read to route it (the first frame, length prefix included): the session's
    /// ICE agent must see it too.
    pub first: Vec<u8>,
}

/// Who gets the connections arriving on one listener.
#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, u64>,
    sinks: HashMap<u64, mpsc::Sender<TcpConnection>>,
}

/// One bound address of the TCP mux.
struct Shared {
    local: SocketAddr,
    routes: Mutex<Routes>,
}

impl Shared {
    fn route(&self, conn: TcpConnection) {
        let Some(ufrag) = local_ufrag(&conn.first[2..]) else {
            UNROUTED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let routes = self.routes.lock();
        let Some(sink) = routes
            .by_ufrag
            .get(ufrag)
            .and_then(|id| routes.sinks.get(id))
        else {
            UNROUTED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if sink.try_send(conn).is_err() {
            QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn remove(&self, id: u64) {
        let mut routes = self.routes.lock();
        routes.sinks.remove(&id);
        routes.by_ufrag.retain(|_, v| *v != id);
    }
}

/// The shared TCP listeners, one per bind address, all on one port.
pub struct TcpMux {
    shared: Vec<Arc<Shared>>,
    next_id: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("webrtc.tcp_port: cannot bind {addr}: {source}")]
pub struct TcpMuxBindError {
    addr: SocketAddr,
    source: io::Error,
}

impl TcpMux {
    /// Listen on `port` at every address in `ips` and start accepting (on the current tokio
    /// runtime).
    pub fn bind(ips: &[IpAddr], port: u16) -> Result<Arc<TcpMux>, TcpMuxBindError> {
        let mut listeners = Vec::new();
        for ip in ips {
            let addr = SocketAddr::new(*ip, port);
            let err = |source| TcpMuxBindError { addr, source };
            // std's bind sets SO_REUSEADDR (a restart rebinds at once) but never SO_REUSEPORT:
            // a second process configured with the same port fails instead of sharing it.
            let listener = std::net::TcpListener::bind(addr).map_err(err)?;
            listener.set_nonblocking(true).map_err(err)?;
            let local = listener.local_addr().map_err(err)?;
            listeners.push((TcpListener::from_std(listener).map_err(err)?, local));
        }
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let mut shared = Vec::new();
        for (listener, local) in listeners {
            let s = Arc::new(Shared {
                local,
                routes: Mutex::new(Routes::default()),
            });
            tokio::spawn(accept(Arc::downgrade(&s), listener, handshakes.clone()));
            shared.push(s);
        }
        Ok(Arc::new(TcpMux {
            shared,
            next_id: AtomicU64::new(1),
        }))
    }

    /// The addresses listened on (the port the OS chose when configured 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.iter().map(|s| s.local).collect()
    }

    /// A new session's place on the listeners.
    pub fn bind_session(self: &Arc<Self>) -> TcpBinding {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let inboxes = self
            .shared
            .iter()
            .map(|s| {
                let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                s.routes.lock().sinks.insert(id, tx);
                Arc::new(TcpInbox {
                    local: s.local,
                    rx: tokio::sync::Mutex::new(rx),
                })
            })
            .collect();
        TcpBinding {
            id,
            mux: self.clone(),
            inboxes,
        }
    }
}

/// Accept on one listener until the mux is gone.
async fn accept(
    shared: std::sync::Weak<Shared>,
    listener: TcpListener,
    handshakes: Arc<Semaphore>,
) {
    loop {
        let accepted = listener.accept().await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: pause rather than spin.
            Err(e) => {
                tracing::debug!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            BUSY.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let local = stream.local_addr().unwrap_or(s.local);
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, first_frame(&mut stream)).await {
                Ok(Ok(first)) => s.route(TcpConnection {
                    stream,
                    peer,
                    local,
                    first,
                }),
                Ok(Err(_)) => {
                    UNROUTED.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    TIMEOUT.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// Read one RFC 6544 frame (length prefix included), refusing one too large to be a check.
async fn first_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await?;
    let len = u16::from_be_bytes(header) as usize;
    if len > MAX_FIRST_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "first frame too large for an ICE check",
        ));
    }
    let mut frame = vec![0u8; 2 + len];
    frame[..2].copy_from_slice(&header);
    stream.read_exact(&mut frame[2..]).await?;
    Ok(frame)
}

/// One session's place on the TCP mux. Dropping it removes every route to the session.
pub struct TcpBinding {
    id: u64,
    mux: Arc<TcpMux>,
    inboxes: Vec<Arc<TcpInbox>>,
}

impl TcpBinding {
    /// Route connections whose first check names `ufrag` (ours, from our answer) here.
    pub fn register_ufrag(&self, ufrag: &str) {
        for s in &self.mux.shared {
            s.routes.lock().by_ufrag.insert(ufrag.to_owned(), self.id);
        }
    }

    /// The session's connections, per listening address.
    pub fn inboxes(&self) -> &[Arc<TcpInbox>] {
        &self.inboxes
    }
}

impl Drop for TcpBinding {
    fn drop(&mut self) {
        for s in &self.mux.shared {
            s.remove(self.id);
        }
    }
}

/// The connections routed to one session on one listening address.
#[derive(Debug)]
pub struct TcpInbox {
    local: SocketAddr,
    rx: tokio::sync::Mutex<mpsc::Receiver<TcpConnection>>,
}

impl TcpInbox {
    /// The shared listener's address (what the session's passive candidate names).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next connection for this session; pending forever once the session has left the
    /// mux (its driver is being torn down).
    pub async fn next(&self) -> TcpConnection {
        match self.rx.lock().await.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn framed_check(username: &str) -> Vec<u8> {
        let request = super::super::mux::tests::binding_request(username);
        let mut framed = (request.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&request);
        framed
    }

    #[tokio::test]
    async fn connections_reach_the_session_their_first_check_names() {
        let mux = TcpMux::bind(&[IpAddr::from([127, 0, 0, 1])], 0).unwrap();
        let server = mux.local_addrs()[0];
        let (a, b) = (mux.bind_session(), mux.bind_session());
        a.register_ufrag("aaaa");
        b.register_ufrag("bbbb");
        let before = counters();

        // Unknown fragment, and not STUN at all: closed by the server, counted.
        for first in [framed_check("zzzz:x"), b"\x00\x05hello".to_vec()] {
            let mut client = TcpStream::connect(server).await.unwrap();
            client.write_all(&first).await.unwrap();
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
                .await
                .expect("the server closes the connection")
                .unwrap_or(0);
            assert_eq!(n, 0, "nothing but a close");
        }
        assert!(counters().0 >= before.0 + 2);

        // b's fragment: b's inbox gets the connection with the check already read.
        let mut client = TcpStream::connect(server).await.unwrap();
        let check = framed_check("bbbb:x");
        client.write_all(&check).await.unwrap();
        client.write_all(b"\x00\x04more").await.unwrap();
        let mut conn = tokio::time::timeout(Duration::from_secs(5), b.inboxes()[0].next())
            .await
            .expect("b gets the connection");
        assert_eq!(conn.first, check);
        assert_eq!(conn.peer, client.local_addr().unwrap());
        assert_eq!(conn.local, server);
        let mut rest = [0u8; 6];
        conn.stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"\x00\x04more");
        let nothing = tokio::time::timeout(Duration::from_millis(100), a.inboxes()[0].next()).await;
        assert!(nothing.is_err(), "nothing for a");

        // A session that left is no longer routed to.
        drop(b);
        let unrouted = counters().0;
        let mut late = TcpStream::connect(server).await.unwrap();
        late.write_all(&check).await.unwrap();
        let mut buf = [0u8; 4];
        let n = tokio::time::timeout(Duration::from_secs(5), late.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(counters().0 > unrouted);
    }

    #[tokio::test]
    async fn the_port_is_not_shared_with_another_process() {
        let mux = TcpMux::bind(&[IpAddr::from([127, 0, 0, 1])], 0).unwrap();
        let port = mux.local_addrs()[0].port();
        let err = TcpMux::bind(&[IpAddr::from([127, 0, 0, 1])], port)
            .err()
            .expect("the port is taken")
            .to_string();
        assert!(
            err.starts_with("webrtc.tcp_port: cannot bind 127.0.0.1:"),
            "{err}"
        );
    }
}
