//! The HTTP listener: accepting connections within limits.
//!
//! `axum::serve` accepts every connection and keeps it as long as the client likes. Here:
//! - at most `max_connections` are open (and never more than a quarter of the process's file
//!   descriptors, so sessions always have sockets); a new connection at the cap evicts the
//!   connection idle the longest, or — none idle — is answered `503` and closed, so `/healthz`
//!   keeps answering while someone holds idle connections open;
//! - a client gets `header_timeout` to send a request's headers (slow-loris), and a connection
//!   without a request in progress is closed after `idle_timeout`;
//! - accept errors (out of file descriptors) pause accepting briefly instead of spinning;
//! - with `[http.tls]` each connection is a TLS handshake first (within `header_timeout`);
//! - each request's client is the peer, or who a trusted proxy says it forwarded for
//!   (`forwarded.rs`), put where handlers find it (`ConnectInfo`).
//!
//! Body timeouts are a layer on the router (`tower_http::timeout::RequestBodyTimeoutLayer`).

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// How long accepting pauses after an accept error (EMFILE and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Connections allowed per file descriptor of the process's limit.
const FDS_PER_CONNECTION: u64 = 4;
/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The listener's limits (from `[limits]`).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What the listener does besides HTTP: TLS, and who the client is behind a proxy.
#[derive(Clone, Default)]
pub struct Edge {
    pub tls: Option<Arc<super::tls::TlsCertificates>>,
    pub proxies: Arc<super::forwarded::TrustedProxies>,
}

/// Connections refused or evicted since start.
static REFUSED: AtomicU64 = AtomicU64::new(0);
static EVICTED: AtomicU64 = AtomicU64::new(0);

/// (refused at the cap, evicted as idle) since start.
pub fn counters() -> (u64, u64) {
    (
        REFUSED.load(Ordering::Relaxed),
        EVICTED.load(Ordering::Relaxed),
    )
}

/// One open connection, as the cap sees it.
struct Conn {
    /// Requests in progress.
    busy: AtomicUsize,
    last_active: Mutex<Instant>,
    close: Notify,
}

impl Conn {
    fn idle_since(&self) -> Option<Instant> {
        (self.busy.load(Ordering::Relaxed) == 0).then(|| *self.last_active.lock())
    }
}

/// Every open connection.
struct Open {
    max: usize,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
}

impl Open {
    /// Make room for one more connection: `None` when the cap is reached and nothing is idle.
    fn admit(&self) -> Option<(u64, Arc<Conn>)> {
        let mut conns = self.conns.lock();
        if conns.len() >= self.max {
            let oldest_idle = conns
                .values()
                .filter_map(|c| c.idle_since().map(|at| (at, c.clone())))
                .min_by_key(|(at, _)| *at);
            let (_, victim) = oldest_idle?;
            // It closes itself and leaves the map; count the newcomer now.
            victim.close.notify_one();
            EVICTED.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            close: Notify::new(),
        });
        conns.insert(id, conn.clone());
        Some((id, conn))
    }

    fn remove(&self, id: u64) {
        self.conns.lock().remove(&id);
    }
}

/// Marks a request in progress on its connection; the connection is active again on drop.
struct InProgress(Arc<Conn>);

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.last_active.lock() = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection cap actually used: the configured one, and at most a quarter of the file
/// descriptors this process may open (raised to its hard limit first).
pub fn effective_max_connections(configured: usize) -> usize {
    let fds = raise_fd_limit();
    let by_fds = (fds / FDS_PER_CONNECTION).max(16) as usize;
    configured.min(by_fds)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in effect.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// Serve `app` on `listener` until `stop` turns true, then drain for up to 5 s.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    edge: Edge,
    mut stop: watch::Receiver<bool>,
) {
    let open = Arc::new(Open {
        max: limits.max_connections,
        conns: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
    });
    let (closing, _) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept HTTP connections; pausing");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some((id, conn)) = open.admit() else {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream));
            continue;
        };
        let (app, limits, edge, open, closing) = (
            app.clone(),
            limits.clone(),
            edge.clone(),
            open.clone(),
            closing.subscribe(),
        );
        tokio::spawn(async move {
            match &edge.tls {
                None => serve_connection(stream, peer, app, &limits, &edge, &conn, closing).await,
                Some(certs) => {
                    let handshake = certs.acceptor().accept(stream);
                    match tokio::time::timeout(limits.header_timeout, handshake).await {
                        Ok(Ok(tls)) => {
                            serve_connection(tls, peer, app, &limits, &edge, &conn, closing).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            open.remove(id);
        });
    }
    let _ = closing.send(true);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while !open.conns.lock().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// At the cap with nothing idle: say so and close.
async fn refuse(mut stream: TcpStream) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 63\r\n\r\nthe server has too many open connections (limits.max_connections)\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(ANSWER)).await;
    let _ = stream.shutdown().await;
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: &ConnectionLimits,
    edge: &Edge,
    conn: &Arc<Conn>,
    mut closing: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tracked = conn.clone();
    let proxies = edge.proxies.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        tracked.busy.fetch_add(1, Ordering::Relaxed);
        let in_progress = InProgress(tracked.clone());
        let mut req = req.map(axum::body::Body::new);
        let client = proxies.client(peer, req.headers());
        req.extensions_mut().insert(ConnectInfo(client));
        let app = app.clone();
        async move {
            let response = tower::ServiceExt::oneshot(app, req).await;
            drop(in_progress);
            response
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let served = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(served);
    let idle_timeout = limits.idle_timeout;
    let mut shutting_down = false;
    loop {
        let idle_deadline = conn
            .idle_since()
            .map(|since| since + idle_timeout)
            .unwrap_or_else(|| Instant::now() + idle_timeout);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = conn.close.notified(), if !shutting_down => {
                served.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            _ = closing.wait_for(|c| *c), if !shutting_down => {
                served.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            _ = tokio::time::sleep_until(idle_deadline.into()), if !shutting_down => {
                if conn.idle_since().is_some_and(|since| since.elapsed() >= idle_timeout) {
                    served.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
        }
    }
}
