//! Per-client request rate limits on the signalling endpoints (WHIP/WHEP POST, PATCH,
//! DELETE): each client IP address may make `limits.requests_per_sec_per_ip` requests a second
//! with bursts of `limits.request_burst_per_ip`; beyond that, 429 with `Retry-After`.
//! Pages, assets and health checks are not limited.

use super::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// How often addresses not seen for a while are forgotten (the limiter's memory stays bounded
/// by the clients of the last minute).
const FORGET_EVERY: Duration = Duration::from_secs(60);

pub struct ClientRateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl ClientRateLimit {
    pub fn new(per_sec: u32, burst: u32) -> Arc<ClientRateLimit> {
        let per_sec = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let limit = Arc::new(ClientRateLimit {
            limiter: RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
        });
        let weak = Arc::downgrade(&limit);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FORGET_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limit) = weak.upgrade() else { return };
                limit.limiter.retain_recent();
            }
        });
        limit
    }

    /// `Ok` if `ip` may make a request now, else how long it should wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Middleware for the signalling routes.
pub async fn limit_requests(
    State(limit): State<Arc<ClientRateLimit>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if req.method() == Method::OPTIONS {
        return Ok(next.run(req).await); // preflights and discovery cost nothing
    }
    match limit.check(peer.ip()) {
        Ok(()) => Ok(next.run(req).await),
        Err(wait) => {
            tracing::info!(client = %peer.ip(), path = %req.uri().path(), "request refused: rate limit");
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests from this address (limits.requests_per_sec_per_ip); slow down",
            )
            .with_retry_after(wait))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bursts_then_refuses_with_a_wait() {
        let limit = ClientRateLimit::new(2, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limit.check(a).is_ok());
        }
        let wait = limit.check(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limit.check(b).is_ok(), "another client is not affected");
    }
}
