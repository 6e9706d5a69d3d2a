//! Batched egress: what a viewer connection sends during one wake-up leaves in as few
//! `sendmsg` calls as the kernel allows.
//!
//! A video frame fanned out to a viewer is a burst of packets (see [`forward`](super::forward));
//! sent one datagram each, every packet costs a syscall and a trip through the UDP/IP output
//! path. So:
//!
//! - a *batch scope* ([`Scope`]) is opened on the thread around the code that produces a
//!   viewer's datagrams: the forwarding path's call into a direct viewer
//!   ([`direct`](super::direct)), or each poll of a webrtc-rs viewer's driver task
//!   ([`Batched`]);
//! - inside a scope, the viewer's sockets ([`defer`]) queue single datagrams here
//!   instead of sending them, and report them sent;
//! - when the outermost scope closes, [`flush`] sends the queue in order: consecutive
//!   datagrams to the same destination whose sizes allow it go out as one UDP GSO send
//!   (`UDP_SEGMENT`: equal segments, the last one may be shorter), everything else one by one.
//!
//! Order is preserved (the queue is flushed in order, before the thread runs anything else),
//! nothing waits longer than the rest of the call that produced it, and a kernel without GSO
//! support makes the socket report one segment, which turns deferral off. A datagram the
//! kernel refuses at flush time (a full socket buffer) is dropped and counted, as the driver
//! itself would drop it: RTP has no flow control to push back to.

use std::cell::RefCell;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use webrtc::runtime::{AsyncUdpSocket, EcnCodepoint, Transmit, UdpSockRef, UdpSocketState};

/// Largest UDP payload one GSO send may carry (the kernel's limit is 64 KiB minus headers).
const MAX_GSO_BYTES: usize = 60_000;

/// Datagrams dropped at flush time because the socket would have blocked or failed.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Datagrams sent through batch flushes, and the `sendmsg` calls that carried them.
static FLUSHED_DATAGRAMS: AtomicU64 = AtomicU64::new(0);
static FLUSHED_SENDS: AtomicU64 = AtomicU64::new(0);

/// Process-wide egress counters: (datagrams flushed, sends used, datagrams dropped).
pub fn counters() -> (u64, u64, u64) {
    (
        FLUSHED_DATAGRAMS.load(Ordering::Relaxed),
        FLUSHED_SENDS.load(Ordering::Relaxed),
        DROPPED.load(Ordering::Relaxed),
    )
}

/// One queued datagram (or a pre-segmented GSO buffer), as a slice of [`Queue::bytes`].
struct Queued {
    socket: Arc<dyn AsyncUdpSocket>,
    /// The socket's descriptor, for the fallback send (valid while `socket` lives).
    fd: RawFd,
    max_segments: usize,
    destination: SocketAddr,
    src_ip: Option<IpAddr>,
    ecn: Option<EcnCodepoint>,
    /// Set when the sender already asked for GSO; such a buffer is sent as it is.
    segment_size: Option<usize>,
    start: usize,
    len: usize,
}

/// The polling thread's batch: scope depth and the datagrams queued in it.
#[derive(Default)]
struct Queue {
    depth: u32,
    items: Vec<Queued>,
    bytes: Vec<u8>,
}

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::new(Queue::default());
}

/// A future whose every poll is a batch scope: datagrams deferred while it runs are sent when
/// the poll returns.
pub struct Batched {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Batched {
    pub fn new(inner: Pin<Box<dyn Future<Output = ()> + Send>>) -> Self {
        Batched { inner }
    }
}

impl Future for Batched {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let _scope = Scope::open();
        self.inner.as_mut().poll(cx)
    }
}

/// A batch scope on this thread, open until dropped: what sockets [`defer`] meanwhile is
/// sent when the outermost scope closes (also when it closes by a panic, so the thread never
/// stays deferred). Must not be held across an `.await`.
pub struct Scope {
    /// Thread-bound: the queue it flushes is this thread's.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Scope {
    pub fn open() -> Scope {
        QUEUE.with(|q| q.borrow_mut().depth += 1);
        Scope {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let outermost = QUEUE.with(|q| {
            let mut q = q.borrow_mut();
            q.depth -= 1;
            q.depth == 0
        });
        if outermost {
            flush();
        }
    }
}

/// Queues `transmit` for `socket` (whose descriptor is `fd`) if a batch scope is open on this
/// thread and the socket can send GSO batches; returns `false` when the caller must send it
/// now.
pub fn defer(socket: &Arc<dyn AsyncUdpSocket>, fd: RawFd, transmit: &Transmit<'_>) -> bool {
    let max_segments = socket.max_gso_segments();
    if max_segments < 2 {
        return false;
    }
    QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        if q.depth == 0 {
            return false;
        }
        let start = q.bytes.len();
        q.bytes.extend_from_slice(transmit.contents);
        q.items.push(Queued {
            socket: socket.clone(),
            fd,
            max_segments,
            destination: transmit.destination,
            src_ip: transmit.src_ip,
            ecn: transmit.ecn,
            segment_size: transmit.segment_size,
            start,
            len: transmit.contents.len(),
        });
        true
    })
}

/// Sends everything queued on this thread, coalescing runs into GSO sends.
fn flush() {
    // Take the queue out so a send can never observe (or re-enter) a borrowed queue.
    let (items, bytes) = QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        (std::mem::take(&mut q.items), std::mem::take(&mut q.bytes))
    });
    if items.is_empty() {
        put_back(items, bytes);
        return;
    }
    // Nothing waits for writability here: a datagram that cannot go now is dropped.
    let mut i = 0;
    while i < items.len() {
        let first = &items[i];
        let end = run_end(&items, i);
        let last = &items[end - 1];
        let contents = &bytes[first.start..last.start + last.len];
        let segment_size = match first.segment_size {
            Some(size) => Some(size),
            None if end - i > 1 => Some(first.len),
            None => None,
        };
        let transmit = Transmit {
            destination: first.destination,
            ecn: first.ecn,
            contents,
            segment_size,
            src_ip: first.src_ip,
        };
        let datagrams = (end - i) as u64;
        match send_now(first.fd, &transmit) {
            Ok(()) => {
                FLUSHED_DATAGRAMS.fetch_add(datagrams, Ordering::Relaxed);
                FLUSHED_SENDS.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                DROPPED.fetch_add(datagrams, Ordering::Relaxed);
                tracing::debug!(%err, destination = %first.destination, "batched send failed");
            }
        }
        i = end;
    }
    put_back(items, bytes);
}

/// One non-blocking `sendmsg` (with `UDP_SEGMENT` when `transmit` is a GSO batch) on `fd`.
///
/// Straight to the kernel rather than through the tokio socket: tokio's cached writability
/// is only refreshed by its I/O driver, and a batch flushed between two turns of it found a
/// third of the sockets "not yet writable" at 200 viewers, which split their batches into
/// single sends. Nothing here waits on writability anyway.
fn send_now(fd: RawFd, transmit: &Transmit<'_>) -> std::io::Result<()> {
    // quinn-udp's socket state only records what it learned about the kernel (GSO limit,
    // old-kernel fallbacks), so one serves every socket.
    static STATE: OnceLock<Option<UdpSocketState>> = OnceLock::new();
    let state = STATE.get_or_init(|| {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
        UdpSocketState::new(UdpSockRef::from(&probe)).ok()
    });
    let Some(state) = state else {
        return Err(std::io::ErrorKind::Unsupported.into());
    };
    // SAFETY: `fd` belongs to a socket the queued item keeps alive for this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    state.try_send(UdpSockRef::from(&fd), transmit)
}

/// Returns the queue's buffers, emptied, so their capacity is reused by the next scope.
fn put_back(mut items: Vec<Queued>, mut bytes: Vec<u8>) {
    items.clear();
    bytes.clear();
    QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        if q.items.capacity() < items.capacity() {
            q.items = items;
        }
        if q.bytes.capacity() < bytes.capacity() {
            q.bytes = bytes;
        }
    });
}

/// The end (exclusive) of the GSO run starting at `i`: following datagrams join while they go
/// to the same place through the same socket with the same size; one shorter datagram may end
/// the run. A pre-segmented buffer is a run of its own.
fn run_end(items: &[Queued], i: usize) -> usize {
    let first = &items[i];
    if first.segment_size.is_some() || first.len == 0 {
        return i + 1;
    }
    let mut end = i + 1;
    let mut total = first.len;
    while end < items.len() && end - i < first.max_segments {
        let next = &items[end];
        let same_path = Arc::ptr_eq(&next.socket, &first.socket)
            && next.destination == first.destination
            && next.src_ip == first.src_ip
            && next.ecn == first.ecn
            && next.segment_size.is_none();
        if !same_path || next.len == 0 || next.len > first.len || total + next.len > MAX_GSO_BYTES {
            break;
        }
        total += next.len;
        end += 1;
        if next.len < first.len {
            break; // a shorter datagram can only be the last segment
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::runtime::ViewerRuntime;
    use webrtc::runtime::Runtime;

    /// Datagrams deferred in one scope arrive intact and in order, and equal-sized ones share
    /// a send.
    #[tokio::test]
    async fn a_scope_sends_its_datagrams_in_order_with_fewer_sends() {
        let runtime = ViewerRuntime::default();
        let sender = runtime
            .wrap_udp_socket(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .unwrap();
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = receiver.local_addr().unwrap();
        if sender.max_gso_segments() < 2 {
            eprintln!("kernel without UDP GSO: nothing to batch");
            return;
        }
        let sizes = [1000usize, 1000, 1000, 400, 1000, 1000, 1200, 30];
        let payloads: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(n, &len)| vec![n as u8; len])
            .collect();
        // Outside a scope the socket sends at once, past the batch counters. (This also lets
        // tokio see the new socket writable, so the flush below takes the GSO path.)
        let (datagrams_before, sends_before, _) = counters();
        sender.send_to(b"direct", to).await.unwrap();
        assert_eq!(counters().0, datagrams_before);
        let socket = sender.clone();
        let sent = payloads.clone();
        Batched::new(Box::pin(async move {
            for payload in &sent {
                // Reported sent at once: queued in the scope.
                assert_eq!(socket.send_to(payload, to).await.unwrap(), payload.len());
            }
        }))
        .await;
        let (datagrams_after, sends_after, _) = counters();
        // Runs: [1000 1000 1000 400] [1000 1000] [1200 30]. (No other unit test batches.)
        assert_eq!(datagrams_after - datagrams_before, 8);
        assert_eq!(sends_after - sends_before, 3);
        let mut buf = [0u8; 2000];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"direct");
        for expected in &payloads {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &expected[..]);
        }
    }

    #[test]
    fn runs_break_on_size_destination_and_presegmented_buffers() {
        let socket: Arc<dyn AsyncUdpSocket> = {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let _guard = runtime.enter();
            ViewerRuntime::default()
                .wrap_udp_socket(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
                .unwrap()
        };
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let item = |to, len, seg: Option<usize>| Queued {
            socket: socket.clone(),
            fd: -1,
            max_segments: 3,
            destination: to,
            src_ip: None,
            ecn: None,
            segment_size: seg,
            start: 0,
            len,
        };
        let items = vec![
            item(a, 100, None),
            item(a, 100, None),
            item(a, 100, None),
            item(a, 100, None), // max_segments = 3 ends the first run
            item(a, 50, None),  // shorter: last of the second run
            item(a, 50, None),
            item(b, 50, None), // new destination
            item(b, 60, None), // larger: new run
            item(b, 200, Some(100)),
        ];
        let mut runs = vec![];
        let mut i = 0;
        while i < items.len() {
            let end = run_end(&items, i);
            runs.push(end - i);
            i = end;
        }
        assert_eq!(runs, vec![3, 2, 1, 1, 1, 1]);
    }
}
