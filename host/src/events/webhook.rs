//! Webhook delivery: one [`Dispatcher`] task per endpoint sends the outbox's deliveries as
//! Standard Webhooks requests, retries with backoff, and decides when to park.
//!
//! - **Order:** a room's deliveries to an endpoint go one at a time, in outbox order (a
//!   "lane" per room); up to `outbox.max_in_flight` rooms are in flight at once. Room-less
//!   events (plugin events) have a lane of their own.
//! - **Attempt:** `POST` the JSON body with `webhook-id` (the event id, the same on every
//!   retry), `webhook-timestamp` (this attempt, Unix seconds) and `webhook-signature`
//!   (`sign.rs`). Redirects are not followed. Any 2xx is a success.
//! - **Retries:** exponential backoff with jitter ([`retry_delay`]); on 429 and 503 the
//!   `Retry-After` header is honoured (capped at `outbox.retry_max_ms`).
//! - **Parking:** an endpoint failing for longer than `outbox.park_after_secs` without a
//!   success is parked, and so is a single delivery failing that long (a payload the consumer
//!   always refuses must not block its room forever). `410 Gone` disables the endpoint at
//!   once. Parked deliveries wait in the store until the admin API replays them.
//!
//! The outbox (`outbox.rs`) owns the store; the dispatcher reports what happened through a
//! callback ([`Report`]) and reads bodies through [`BodySource`].

use super::config::{OutboxConfig, WebhookEndpointConfig};
use super::sign::{self, Secret};
use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Bytes of a consumer's error answer kept for `last_error`.
const ERROR_BODY_CHARS: usize = 200;
/// Bytes of a consumer's answer read (and discarded) so the connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// `User-Agent` of deliveries.
const USER_AGENT: &str = concat!("Switchboard-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Where an endpoint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointState {
    /// Deliveries are attempted.
    #[default]
    Active,
    /// Failed for longer than `outbox.park_after_secs`: new deliveries are kept aside too,
    /// until a replay.
    Parked,
    /// Answered `410 Gone`: like parked, until a replay.
    Disabled,
}

/// An endpoint as the admin API shows it.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct EndpointStatus {
    pub name: String,
    /// The URL without credentials or query.
    pub url: String,
    pub state: EndpointState,
    /// Deliveries waiting to be sent (including those being retried).
    pub queued: u64,
    /// Deliveries set aside, waiting for a replay.
    pub parked: u64,
    pub in_flight: usize,
    /// Successful deliveries since start.
    pub delivered: u64,
    /// Failed attempts since start.
    pub failed_attempts: u64,
    /// Deliveries refused because the endpoint held `outbox.max_deliveries_per_endpoint`.
    pub refused_full: u64,
    #[schema(nullable)]
    pub last_error: Option<String>,
    /// RFC 3339.
    #[schema(nullable)]
    pub last_error_at: Option<String>,
    #[schema(nullable)]
    pub last_success_at: Option<String>,
    /// Failing without a success since (RFC 3339).
    #[schema(nullable)]
    pub failing_since: Option<String>,
}

/// One configured endpoint: its settings, keys and live status.
pub struct Endpoint {
    pub config: WebhookEndpointConfig,
    secrets: Vec<Secret>,
    pub status: Mutex<EndpointStatus>,
}

impl Endpoint {
    /// The settings must have passed `config::validate`.
    pub fn new(config: WebhookEndpointConfig) -> Result<Self, String> {
        let secrets = config.secrets()?;
        let mut url = reqwest::Url::parse(&config.url).map_err(|e| e.to_string())?;
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        let status = EndpointStatus {
            name: config.name.clone(),
            url: url.to_string(),
            ..EndpointStatus::default()
        };
        Ok(Endpoint {
            config,
            secrets,
            status: Mutex::new(status),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again later; `after` is the consumer's `Retry-After`, if it sent one on 429/503.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// `410 Gone`: stop delivering to this endpoint.
    Gone,
}

/// The HTTP client every endpoint shares: no redirects, rustls with the system's roots.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .pool_max_idle_per_host(64)
        .build()
        .expect("the webhook HTTP client builds")
}

/// Unix seconds now.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Send one delivery.
pub async fn attempt(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    id: &str,
    body: Vec<u8>,
) -> Outcome {
    let timestamp = unix_now_ms() / 1000;
    let signature = sign::signature(&endpoint.secrets, id, timestamp, &body);
    let timeout = Duration::from_millis(endpoint.config.timeout_ms);
    let request = client
        .post(&endpoint.config.url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Outcome::Retry {
                error: format!("timed out after {} ms", timeout.as_millis()),
                after: None,
            };
        }
        Err(e) => {
            return Outcome::Retry {
                error: error_chain(&e),
                after: None,
            };
        }
    };
    let status = response.status();
    let retry_after = match status.as_u16() {
        429 | 503 => response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after),
        _ => None,
    };
    // Read (a bounded part of) the answer: the connection is reused only once it is consumed.
    let mut text = Vec::new();
    let read = tokio::time::timeout(timeout, async {
        while let Ok(Some(chunk)) = response.chunk().await {
            if text.len() < MAX_RESPONSE_BYTES {
                text.extend_from_slice(&chunk);
            }
        }
    });
    let _ = read.await;
    if status.is_success() {
        return Outcome::Delivered;
    }
    if status == reqwest::StatusCode::GONE {
        return Outcome::Gone;
    }
    let mut error = format!("HTTP {}", status.as_u16());
    let said: String = String::from_utf8_lossy(&text)
        .chars()
        .filter(|c| !c.is_control())
        .take(ERROR_BODY_CHARS)
        .collect();
    if !said.trim().is_empty() {
        error = format!("{error}: {}", said.trim());
    }
    if status.is_redirection() {
        error.push_str(" (redirects are not followed)");
    }
    Outcome::Retry {
        error,
        after: retry_after,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// Delay before retry number `retries` (1 = the first retry): `retry_initial_ms` doubling up
/// to `retry_max_ms`, less up to `retry_jitter` of it at random (`random` in 0..1).
pub fn retry_delay(config: &OutboxConfig, retries: u32, random: f64) -> Duration {
    let doubled = config
        .retry_initial_ms
        .saturating_mul(1u64 << retries.saturating_sub(1).min(40))
        .min(config.retry_max_ms);
    let jittered = doubled as f64 * (1.0 - config.retry_jitter * random.clamp(0.0, 1.0));
    Duration::from_millis(jittered.max(1.0) as u64)
}

/// A delivery waiting in the outbox, as the dispatcher knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub seq: u64,
    /// `""` for room-less events.
    pub room: Arc<str>,
}

/// What the outbox tells a dispatcher.
#[derive(Debug)]
pub enum DispatchMsg {
    /// Newly queued deliveries, in outbox order.
    Queued(Vec<Queued>),
    /// Everything queued for the endpoint (at start, after a replay): replaces what the
    /// dispatcher had. `failing_since_ms` carries a failure streak over a restart.
    Reset {
        queued: Vec<Queued>,
        state: EndpointState,
        failing_since_ms: Option<u64>,
    },
}

/// What a dispatcher tells the outbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Delivered (or found already gone): remove it.
    Delivered { seq: u64 },
    /// Failing without a success since (or no longer failing).
    FailingSince(Option<u64>),
    /// Set this one delivery aside.
    ParkOne { seq: u64, reason: String },
    /// Set every delivery aside, and the ones that come until a replay.
    Park {
        state: EndpointState,
        reason: String,
    },
}

/// Reads a delivery's event id and body, `None` if it is no longer queued.
pub type BodySource = Arc<dyn Fn(u64) -> Option<(String, Vec<u8>)> + Send + Sync>;

#[derive(Default)]
struct Lane {
    seqs: VecDeque<u64>,
    busy: bool,
    /// Waiting for a retry timer.
    waiting: bool,
    retries: u32,
    /// When the head delivery first failed.
    head_failing_since: Option<Instant>,
}

/// Delivers one endpoint's queue. Runs until its channel closes.
pub struct Dispatcher {
    endpoint: Arc<Endpoint>,
    config: OutboxConfig,
    client: reqwest::Client,
    bodies: BodySource,
    report: Box<dyn Fn(Report) + Send>,
    lanes: HashMap<Arc<str>, Lane>,
    ready: VecDeque<Arc<str>>,
    timers: BTreeSet<(Instant, Arc<str>)>,
    /// Bumped on park and reset: results of older attempts no longer move lanes.
    epoch: u64,
    state: EndpointState,
    failing_since: Option<SystemTime>,
}

type Attempt = (u64, Arc<str>, u64, Outcome);

impl Dispatcher {
    pub fn new(
        endpoint: Arc<Endpoint>,
        config: OutboxConfig,
        client: reqwest::Client,
        bodies: BodySource,
        report: Box<dyn Fn(Report) + Send>,
    ) -> Self {
        Dispatcher {
            endpoint,
            config,
            client,
            bodies,
            report,
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            timers: BTreeSet::new(),
            epoch: 0,
            state: EndpointState::Active,
            failing_since: None,
        }
    }

    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<DispatchMsg>) {
        let mut in_flight: FuturesUnordered<futures::future::BoxFuture<'static, Attempt>> =
            FuturesUnordered::new();
        loop {
            while in_flight.len() < self.config.max_in_flight {
                let Some(room) = self.ready.pop_front() else {
                    break;
                };
                if let Some(attempt) = self.start(&room) {
                    in_flight.push(attempt);
                }
            }
            self.endpoint.status.lock().in_flight = in_flight.len();
            let next_timer = self.timers.first().map(|(at, _)| *at);
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.on_message(msg),
                    None => break,
                },
                Some((epoch, room, seq, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.on_outcome(epoch, room, seq, outcome);
                }
                _ = sleep_until(next_timer), if next_timer.is_some() => self.on_timers(),
            }
        }
    }

    fn on_message(&mut self, msg: DispatchMsg) {
        match msg {
            DispatchMsg::Queued(queued) => {
                if self.state != EndpointState::Active {
                    return; // the outbox moves them aside with the park
                }
                for q in queued {
                    self.push(q);
                }
            }
            DispatchMsg::Reset {
                queued,
                state,
                failing_since_ms,
            } => {
                self.clear();
                self.state = state;
                self.failing_since =
                    failing_since_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
                let mut status = self.endpoint.status.lock();
                status.failing_since = failing_since_ms.map(super::rfc3339);
                drop(status);
                for q in queued {
                    self.push(q);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.epoch += 1;
        self.lanes.clear();
        self.ready.clear();
        self.timers.clear();
    }

    fn push(&mut self, q: Queued) {
        let lane = self.lanes.entry(q.room.clone()).or_default();
        let idle = lane.seqs.is_empty() && !lane.busy && !lane.waiting;
        lane.seqs.push_back(q.seq);
        if idle {
            self.ready.push_back(q.room);
        }
    }

    fn start(&mut self, room: &Arc<str>) -> Option<futures::future::BoxFuture<'static, Attempt>> {
        let lane = self.lanes.get_mut(room)?;
        if lane.busy || lane.waiting {
            return None;
        }
        let seq = *lane.seqs.front()?;
        lane.busy = true;
        let (epoch, room) = (self.epoch, room.clone());
        let (client, endpoint, bodies) = (
            self.client.clone(),
            self.endpoint.clone(),
            self.bodies.clone(),
        );
        Some(Box::pin(async move {
            let body = tokio::task::spawn_blocking(move || bodies(seq))
                .await
                .ok()
                .flatten();
            let outcome = match body {
                Some((id, body)) => attempt(&client, &endpoint, &id, body).await,
                // No longer queued (delivered just before a park, then replayed): done.
                None => Outcome::Delivered,
            };
            (epoch, room, seq, outcome)
        }))
    }

    fn on_outcome(&mut self, epoch: u64, room: Arc<str>, seq: u64, outcome: Outcome) {
        let now = SystemTime::now();
        if outcome == Outcome::Delivered {
            // Even from an older epoch: the outbox removes it if it is still there.
            (self.report)(Report::Delivered { seq });
            let mut status = self.endpoint.status.lock();
            status.delivered += 1;
            status.last_success_at = Some(super::rfc3339(unix_ms(now)));
            status.failing_since = None;
            drop(status);
            if self.failing_since.take().is_some() {
                (self.report)(Report::FailingSince(None));
            }
        }
        if epoch != self.epoch {
            return;
        }
        let Some(lane) = self.lanes.get_mut(&room) else {
            return;
        };
        lane.busy = false;
        match outcome {
            Outcome::Delivered => {
                lane.seqs.pop_front();
                lane.retries = 0;
                lane.head_failing_since = None;
                if lane.seqs.is_empty() {
                    self.lanes.remove(&room);
                } else {
                    self.ready.push_back(room);
                }
            }
            Outcome::Gone => {
                self.failed("HTTP 410 Gone: endpoint disabled".into(), now);
                self.park(
                    EndpointState::Disabled,
                    "the endpoint answered 410 Gone".into(),
                );
            }
            Outcome::Retry { error, after } => {
                self.failed(error.clone(), now);
                let since = *self.failing_since.get_or_insert_with(|| {
                    (self.report)(Report::FailingSince(Some(unix_ms(now))));
                    now
                });
                {
                    let mut status = self.endpoint.status.lock();
                    status.failing_since = Some(super::rfc3339(unix_ms(since)));
                }
                let park_after = Duration::from_secs(self.config.park_after_secs);
                if now.duration_since(since).unwrap_or_default() >= park_after {
                    self.park(
                        EndpointState::Parked,
                        format!(
                            "failing for over {} s; last error: {error}",
                            self.config.park_after_secs
                        ),
                    );
                    return;
                }
                let lane = self.lanes.get_mut(&room).expect("lane exists");
                let head_since = *lane.head_failing_since.get_or_insert_with(Instant::now);
                if head_since.elapsed() >= park_after {
                    // One delivery the consumer keeps refusing while others get through.
                    (self.report)(Report::ParkOne {
                        seq,
                        reason: format!(
                            "failing for over {} s; last error: {error}",
                            self.config.park_after_secs
                        ),
                    });
                    lane.seqs.pop_front();
                    lane.retries = 0;
                    lane.head_failing_since = None;
                    if lane.seqs.is_empty() {
                        self.lanes.remove(&room);
                    } else {
                        self.ready.push_back(room);
                    }
                    return;
                }
                lane.retries += 1;
                let delay = match after {
                    Some(after) => after.min(Duration::from_millis(self.config.retry_max_ms)),
                    None => retry_delay(&self.config, lane.retries, rand::random::<f64>()),
                };
                lane.waiting = true;
                self.timers.insert((Instant::now() + delay, room));
            }
        }
    }

    fn failed(&mut self, error: String, now: SystemTime) {
        let mut status = self.endpoint.status.lock();
        status.failed_attempts += 1;
        status.last_error = Some(error);
        status.last_error_at = Some(super::rfc3339(unix_ms(now)));
    }

    fn park(&mut self, state: EndpointState, reason: String) {
        tracing::warn!(endpoint = self.endpoint.name(), %reason, ?state, "webhook endpoint parked; replay through the admin API");
        self.clear();
        self.state = state;
        (self.report)(Report::Park { state, reason });
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let (_, room) = self.timers.pop_first().expect("non-empty");
            if let Some(lane) = self.lanes.get_mut(&room) {
                lane.waiting = false;
                self.ready.push_back(room);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below() {
        let c = OutboxConfig {
            retry_initial_ms: 1000,
            retry_max_ms: 10_000,
            retry_jitter: 0.5,
            ..OutboxConfig::default()
        };
        let ms = |n, r| retry_delay(&c, n, r).as_millis();
        assert_eq!([ms(1, 0.0), ms(2, 0.0), ms(3, 0.0)], [1000, 2000, 4000]);
        assert_eq!(ms(5, 0.0), 10_000);
        assert_eq!(ms(60, 0.0), 10_000);
        assert_eq!(ms(2, 1.0), 1000);
        assert!((1000..=2000).contains(&ms(2, 0.3)));
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(d > Duration::from_secs(110) && d <= Duration::from_secs(120));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
