//! The async runtime viewer peer connections run on: tokio, with sockets sized for what a
//! viewer connection receives.
//!
//! webrtc-rs sizes each connection's receive buffers by the socket's GRO capacity: with UDP GRO
//! available that is two buffers of 64 x 1500 bytes per socket, zero-filled, so on a server
//! with hundreds of viewers they dominate memory. A viewer connection only ever receives
//! small datagrams (STUN, DTLS, RTCP feedback), so [`ViewerRuntime`] hands the driver sockets
//! with GRO switched off and reported as such, and the driver allocates 2 KB buffers instead.
//! Everything else is delegated to the crate's own [`TokioRuntime`].
//!
//! Every task a viewer connection spawns (its driver) runs inside an [`egress::Batched`]
//! scope and its sockets defer their sends to it, so a burst of packets to one viewer leaves
//! in one GSO send instead of one `sendmsg` each (see [`egress`]). Direct viewers
//! ([`direct`](super::direct)) get their sockets here too and open the scope themselves.
//!
//! [`MuxRuntime`] is the seam for the shared ports (single-port UDP, `ice::mux`; ICE-TCP,
//! `ice::tcp`): a connection's driver binds its sockets and listeners as usual and gets its
//! session's sockets and connections on the shared ports in their place, so neither the
//! driver nor forwarding needs to know.

use super::egress::{self, Batched};
use crate::ice::tcp::TcpInbox;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// [`TokioRuntime`] whose UDP sockets receive one datagram at a time (no GRO) and send in
/// batches.
#[derive(Debug)]
pub struct ViewerRuntime {
    inner: TokioRuntime,
    /// Whether tasks run as [`Batched`] scopes (`webrtc.batch_sends`).
    batch_sends: bool,
}

impl Default for ViewerRuntime {
    fn default() -> Self {
        ViewerRuntime {
            inner: TokioRuntime,
            batch_sends: true,
        }
    }
}

impl ViewerRuntime {
    /// The process-wide instance, with or without batched sends.
    pub fn shared(batch_sends: bool) -> Arc<dyn Runtime> {
        type Shared = std::sync::OnceLock<Arc<dyn Runtime>>;
        static BATCHED: Shared = Shared::new();
        static UNBATCHED: Shared = Shared::new();
        let slot = if batch_sends { &BATCHED } else { &UNBATCHED };
        slot.get_or_init(|| {
            Arc::new(ViewerRuntime {
                inner: TokioRuntime,
                batch_sends,
            })
        })
        .clone()
    }

    fn wrap(
        &self,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        if self.batch_sends {
            Box::pin(Batched::new(future))
        } else {
            future
        }
    }
}

impl Runtime for ViewerRuntime {
    #[track_caller]
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(self.wrap(future))
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner
            .spawn_reactor(reactor_pool_size, self.wrap(future))
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let fd = socket.as_raw_fd();
        let inner = self.inner.wrap_udp_socket(socket)?;
        // The tokio wrapper enables UDP_GRO when the kernel has it; a coalesced read would not
        // fit the single-datagram buffers the driver now allocates, so turn it off again.
        disable_gro(fd);
        Ok(Arc::new(SingleDatagramSocket { inner, fd }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (viewer sockets)"
    }
}

fn disable_gro(fd: std::os::fd::RawFd) {
    let off: libc::c_int = 0;
    // SAFETY: `fd` is the open socket the wrapper now owns; setsockopt reads `off` only.
    // Failure (kernel without UDP_GRO) leaves GRO off, which is what we want anyway.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A tokio UDP socket that reports no GRO capacity, so the driver reads datagram by datagram.
struct SingleDatagramSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    /// `inner`'s descriptor, for sends [`egress`] makes itself.
    fd: std::os::fd::RawFd,
}

impl fmt::Debug for SingleDatagramSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleDatagramSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl AsyncUdpSocket for SingleDatagramSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        if egress::defer(&self.inner, self.fd, transmit) {
            return Poll::Ready(Ok(transmit.contents.len()));
        }
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        1
    }
}

/// A connection's runtime on the shared ports: `inner` for everything, except that each UDP
/// socket the driver binds (an ephemeral port on a bind address) is exchanged for the
/// session's socket on the single UDP port at that address, and each TCP listener for the
/// session's connections on the ICE-TCP port.
#[derive(Debug)]
pub struct MuxRuntime {
    inner: Arc<dyn Runtime>,
    sockets: Vec<(std::net::IpAddr, Arc<dyn AsyncUdpSocket>)>,
    tcp: Vec<Arc<TcpInbox>>,
}

impl MuxRuntime {
    pub fn new(inner: Arc<dyn Runtime>, binding: &crate::ice::MuxBinding) -> Arc<Self> {
        let sockets = binding
            .udp
            .iter()
            .flat_map(|b| b.sockets())
            .filter_map(|s| Some((s.local_addr().ok()?.ip(), s)))
            .collect();
        let tcp = binding
            .tcp
            .iter()
            .flat_map(|b| b.inboxes().iter().cloned())
            .collect();
        Arc::new(MuxRuntime {
            inner,
            sockets,
            tcp,
        })
    }
}

/// A session's socket on the shared port, reporting the address the driver knows it by.
#[derive(Debug)]
struct Renamed {
    shared: Arc<dyn AsyncUdpSocket>,
    named: SocketAddr,
}

impl AsyncUdpSocket for Renamed {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.named)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.shared.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.shared.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &polled {
            for m in &mut meta[..*n] {
                m.dst_ip = Some(self.named.ip());
            }
        }
        polled
    }

    fn max_gso_segments(&self) -> usize {
        self.shared.max_gso_segments()
    }
}

impl Runtime for MuxRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        // Only a media socket's address is wanted: the driver names its host candidate after
        // it, and `PeerFactory::advertise` tells clients the shared port instead (like a 1:1
        // NAT). Anything else (the driver's mDNS socket) stays a socket of its own.
        let named = socket.local_addr()?;
        let Some((_, shared)) = self.sockets.iter().find(|(ip, _)| *ip == named.ip()) else {
            return self.inner.wrap_udp_socket(socket);
        };
        drop(socket);
        Ok(Arc::new(Renamed {
            shared: shared.clone(),
            named,
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        // As with UDP: the driver names its passive candidate after the listener it bound,
        // `PeerFactory::advertise` tells clients the shared port.
        let named = listener.local_addr()?;
        let Some(inbox) = self.tcp.iter().find(|i| i.local_addr().ip() == named.ip()) else {
            return self.inner.wrap_tcp_listener(listener);
        };
        drop(listener);
        Ok(Arc::new(SharedTcpListener {
            inbox: inbox.clone(),
            named,
        }))
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "shared ports"
    }
}

/// A session's connections on the ICE-TCP port, as the listener its driver bound.
#[derive(Debug)]
struct SharedTcpListener {
    inbox: Arc<TcpInbox>,
    named: SocketAddr,
}

impl AsyncTcpListener for SharedTcpListener {
    fn accept<'a>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = io::Result<(Arc<dyn AsyncTcpStream>, SocketAddr)>> + Send + 'a>>
    {
        Box::pin(async move {
            let conn = self.inbox.next().await;
            let peer = conn.peer;
            let (read_half, write_half) = conn.stream.into_split();
            let stream = HandedOver {
                named: self.named,
                peer,
                first: parking_lot::Mutex::new(conn.first),
                read_half,
                write_half,
            };
            Ok((Arc::new(stream) as Arc<dyn AsyncTcpStream>, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.named)
    }
}

/// A connection from the ICE-TCP port: first the bytes the mux read to route it, then the
/// stream. Named after the driver's own listener, so ICE matches it to its candidate.
#[derive(Debug)]
struct HandedOver {
    named: SocketAddr,
    peer: SocketAddr,
    first: parking_lot::Mutex<Vec<u8>>,
    read_half: tokio::net::tcp::OwnedReadHalf,
    write_half: tokio::net::tcp::OwnedWriteHalf,
}

impl AsyncTcpStream for HandedOver {
    fn read<'a, 'b>(
        &'a self,
        buf: &'b mut [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<usize>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            {
                let mut first = self.first.lock();
                if !first.is_empty() {
                    let n = first.len().min(buf.len());
                    buf[..n].copy_from_slice(&first[..n]);
                    first.drain(..n);
                    return Ok(n);
                }
            }
            loop {
                self.read_half.readable().await?;
                match self.read_half.try_read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    read => return read,
                }
            }
        })
    }

    fn write_all<'a, 'b>(
        &'a self,
        buf: &'b [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            let mut rest = buf;
            while !rest.is_empty() {
                self.write_half.writable().await?;
                match self.write_half.try_write(rest) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.named)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn viewer_sockets_read_single_datagrams_and_still_carry_traffic() {
        let runtime = ViewerRuntime::default();
        let a = runtime
            .wrap_udp_socket(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .unwrap();
        let b = runtime
            .wrap_udp_socket(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .unwrap();
        assert_eq!(a.max_gro_segments(), 1);
        let sent = a.send_to(b"ping", b.local_addr().unwrap()).await.unwrap();
        assert_eq!(sent, 4);
        let mut buf = [0u8; 2000];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from, a.local_addr().unwrap());
    }
}
