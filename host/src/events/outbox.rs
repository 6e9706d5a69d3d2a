//! The durable webhook outbox: every event, on disk, until each endpoint that should get it has
//! acknowledged it — across consumer outages and server kills (at-least-once; consumers
//! de-duplicate by `webhook-id`).
//!
//! How an event travels:
//! 1. [`Outbox`] is an [`EventSink`]: the publisher's call only puts the event on an unbounded
//!    channel (never blocks, never drops while fewer than [`MAX_UNWRITTEN`] wait).
//! 2. The **writer** (a thread of its own: commits fsync) takes everything waiting and writes
//!    it in one transaction. With no `webhook` plugin the event is routed right there (the
//!    endpoint filters, `route.rs`) into each endpoint's queue. With plugins it goes to the
//!    inbox first, so a kill while a plugin decides loses nothing.
//! 3. The **router** task asks the plugins about inbox events, in order (a few in flight), and
//!    hands the decisions back to the writer, which moves the event from the inbox into the
//!    queues in one transaction.
//! 4. A **dispatcher** per endpoint (`webhook.rs`) delivers its queue, a room at a time in
//!    order, and reports back: delivered (removed), failing, park.
//!
//! On start the queues and inbox are read back and delivery resumes where it stopped.
//!
//! Bounds (never silent loss, never unbounded disk): an endpoint holds at most
//! `outbox.max_deliveries_per_endpoint` deliveries, queued and parked together; the inbox at
//! most as many events. Beyond that **new** deliveries are refused — what is already stored is
//! kept, in order — and each refusal is counted (per endpoint and in
//! [`CounterSnapshot::refused`]) and logged (at most once a second, with the count).

use super::config::OutboxConfig;
use super::route::{self, PolicyInput, Verdict, WebhookPolicy};
use super::webhook::{
    BodySource, DispatchMsg, Dispatcher, Endpoint, EndpointState, Queued, Report,
};
use super::{Event, EventSink, rfc3339};
use crate::store::{Store, StoreError, Table, Write};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const INBOX: Table = Table::new("outbox.inbox");
const QUEUE: Table = Table::new("outbox.queue");
const PARKED: Table = Table::new("outbox.parked");
const ENDPOINTS: Table = Table::new("outbox.endpoints");
const META: Table = Table::new("outbox.meta");
const NEXT_SEQ: &[u8] = b"next_seq";

/// Commands one commit takes at most: large enough that a burst costs a few fsyncs, small
/// enough that one commit stays in the milliseconds.
const MAX_BATCH: usize = 4096;
/// Events accepted but not yet written that may wait in memory (a stalled disk); beyond that
/// they are refused and counted.
pub const MAX_UNWRITTEN: usize = 100_000;
/// Plugin decisions in flight at once (results are applied in order). Also bounds what the
/// outbox takes from the plugin runtime's admission budget.
const ROUTER_CONCURRENCY: usize = 16;
/// Wait before a failed commit (disk full, I/O error) is tried again.
const COMMIT_RETRY: Duration = Duration::from_secs(1);
/// Warnings about refusals and plugin failures: at most one per this, with a count.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// An event waiting in the inbox for the plugins' decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    room: Option<String>,
    at_ms: u64,
    body: String,
}

/// One delivery to one endpoint, queued or parked.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    room: Option<String>,
    created_ms: u64,
    body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parked_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// An endpoint's state, kept across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct EndpointRecord {
    state: EndpointState,
    failing_since_ms: Option<u64>,
    reason: Option<String>,
}

/// A parked delivery, as the admin API lists it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ParkedDelivery {
    /// Position in the outbox; pass as `after` for the next page.
    pub seq: u64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[schema(nullable)]
    pub room: Option<String>,
    /// When the event was written (RFC 3339).
    pub created_at: String,
    /// When it was set aside (RFC 3339).
    #[schema(nullable)]
    pub parked_at: Option<String>,
    /// Why: the last error, `410 Gone`, or the endpoint being parked.
    #[schema(nullable)]
    pub reason: Option<String>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    queued: AtomicU64,
    plugin_failures: AtomicU64,
    dropped_by_plugin: AtomicU64,
    parked: AtomicU64,
    store_errors: AtomicU64,
}

/// Outbox totals since start.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CounterSnapshot {
    /// Events written to the outbox.
    pub accepted: u64,
    /// Events or deliveries refused because the outbox (or an endpoint's share) was full.
    pub refused: u64,
    /// Deliveries queued (one per event per endpoint).
    pub queued: u64,
    /// Events a `webhook` plugin failed on (delivered as is).
    pub plugin_failures: u64,
    /// Events a `webhook` plugin dropped.
    pub dropped_by_plugin: u64,
    /// Deliveries set aside (parked endpoints, deliveries failing too long, 410).
    pub parked: u64,
    /// Commits that failed and were retried.
    pub store_errors: u64,
}

/// At most one line per [`LOG_EVERY`]; `allow` says how many were held back before it.
#[derive(Default)]
struct LogEvery {
    last: Mutex<Option<Instant>>,
    held: AtomicU64,
}

impl LogEvery {
    fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock();
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(Instant::now());
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

enum Command {
    Event(Arc<Event>),
    Routed {
        seq: u64,
        event: Arc<StoredEvent>,
        routes: Vec<(usize, Arc<str>)>,
    },
    Report(usize, Report),
    Replay(usize, oneshot::Sender<u64>),
    Flush(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// The outbox: an [`EventSink`] plus what the admin API asks of it.
pub struct Outbox {
    tx: mpsc::UnboundedSender<Command>,
    endpoints: Vec<Arc<Endpoint>>,
    store: Arc<Store>,
    counters: Arc<Counters>,
    unwritten: Arc<AtomicUsize>,
    refusals: Arc<LogEvery>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn key(endpoint: &str, seq: u64) -> Vec<u8> {
    let mut k = prefix(endpoint);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn prefix(endpoint: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(endpoint.len() + 9);
    k.extend_from_slice(endpoint.as_bytes());
    k.push(0);
    k
}

fn seq_of(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len().saturating_sub(8)..]
        .try_into()
        .unwrap_or_default();
    u64::from_be_bytes(tail)
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("outbox records serialize")
}

fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::new(format!("unreadable {what} record: {e}"))
}

/// What the writer knows, copied into each commit and kept if it succeeds.
#[derive(Clone)]
struct View {
    next_seq: u64,
    inbox_len: u64,
    states: Vec<EndpointState>,
    queued: Vec<u64>,
    parked: Vec<u64>,
}

/// What a commit did, applied once it is durable.
#[derive(Default)]
struct Effects {
    accepted: u64,
    events: usize,
    refused: u64,
    refused_per_endpoint: HashMap<usize, u64>,
    queued: u64,
    parked: u64,
    to_router: Vec<(u64, Arc<StoredEvent>)>,
    pending: HashMap<usize, Vec<Queued>>,
    to_dispatch: Vec<(usize, DispatchMsg)>,
    replayed: HashMap<usize, u64>,
}

impl Effects {
    /// Queue messages so far for `idx`, before a reset or at the end.
    fn flush(&mut self, idx: usize) {
        if let Some(q) = self.pending.remove(&idx).filter(|q| !q.is_empty()) {
            self.to_dispatch.push((idx, DispatchMsg::Queued(q)));
        }
    }
}

struct Writer {
    store: Arc<Store>,
    endpoints: Vec<Arc<Endpoint>>,
    config: OutboxConfig,
    policy: Arc<dyn WebhookPolicy>,
    view: View,
    dispatch: Vec<mpsc::UnboundedSender<DispatchMsg>>,
    router: mpsc::UnboundedSender<(u64, Arc<StoredEvent>)>,
    counters: Arc<Counters>,
    unwritten: Arc<AtomicUsize>,
    refusals: Arc<LogEvery>,
}

impl Outbox {
    /// Read the outbox back from `store` and start delivering to `endpoints` (validated
    /// config). Spawns the router and the dispatchers on the current tokio runtime and the
    /// writer on a thread of its own.
    pub fn start(
        store: Arc<Store>,
        endpoints: Vec<super::config::WebhookEndpointConfig>,
        config: OutboxConfig,
        policy: Arc<dyn WebhookPolicy>,
    ) -> Result<Arc<Outbox>, StoreError> {
        let endpoints: Vec<Arc<Endpoint>> = endpoints
            .into_iter()
            .map(|c| Endpoint::new(c).map(Arc::new).map_err(StoreError::new))
            .collect::<Result<_, _>>()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());

        // Read back what a previous run left.
        let (mut next_seq, inbox, recovered) = store.read(|r| {
            let next = r
                .get(META, NEXT_SEQ)?
                .and_then(|v| v.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            let inbox = r
                .scan(INBOX, b"", None, usize::MAX)?
                .into_iter()
                .map(|(k, v)| {
                    let event: StoredEvent =
                        serde_json::from_slice(&v).map_err(|e| corrupt("inbox", e))?;
                    Ok((seq_of(&k), Arc::new(event)))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut recovered = Vec::new();
            for e in &endpoints {
                let record: EndpointRecord = match r.get(ENDPOINTS, e.name().as_bytes())? {
                    Some(v) => serde_json::from_slice(&v).map_err(|e| corrupt("endpoint", e))?,
                    None => EndpointRecord::default(),
                };
                let queued = r
                    .scan(QUEUE, &prefix(e.name()), None, usize::MAX)?
                    .into_iter()
                    .map(|(k, v)| {
                        let d: Delivery =
                            serde_json::from_slice(&v).map_err(|e| corrupt("delivery", e))?;
                        Ok(Queued {
                            seq: seq_of(&k),
                            room: Arc::from(d.room.unwrap_or_default()),
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let parked = r.scan(PARKED, &prefix(e.name()), None, usize::MAX)?;
                let parked_max = parked.last().map(|(k, _)| seq_of(k));
                recovered.push((record, queued, parked.len() as u64, parked_max));
            }
            Ok((next, inbox, recovered))
        })?;
        for (_, queued, _, parked_max) in &recovered {
            let max = queued.iter().map(|q| q.seq).max().max(*parked_max);
            next_seq = next_seq.max(max.map_or(0, |m| m + 1));
        }
        next_seq = next_seq.max(inbox.last().map_or(0, |(s, _)| s + 1));

        let client = super::webhook::client();
        let mut dispatch = Vec::new();
        let mut view = View {
            next_seq,
            inbox_len: inbox.len() as u64,
            states: Vec::new(),
            queued: Vec::new(),
            parked: Vec::new(),
        };
        for (idx, (endpoint, (record, queued, parked, _))) in
            endpoints.iter().zip(recovered).enumerate()
        {
            {
                let mut status = endpoint.status.lock();
                status.state = record.state;
                status.queued = queued.len() as u64;
                status.parked = parked;
                if record.state != EndpointState::Active {
                    status.last_error = record.reason.clone();
                }
            }
            view.states.push(record.state);
            view.queued.push(queued.len() as u64);
            view.parked.push(parked);
            if !queued.is_empty() || parked > 0 {
                tracing::info!(
                    endpoint = endpoint.name(),
                    queued = queued.len(),
                    parked,
                    state = ?record.state,
                    "webhook deliveries resumed from the store"
                );
            }
            let (dtx, drx) = mpsc::unbounded_channel();
            let _ = dtx.send(DispatchMsg::Reset {
                queued,
                state: record.state,
                failing_since_ms: record.failing_since_ms,
            });
            dispatch.push(dtx);
            let bodies: BodySource = {
                let (store, name) = (store.clone(), endpoint.name().to_owned());
                Arc::new(move |seq| {
                    let v = match store.read(|r| r.get(QUEUE, &key(&name, seq))) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::error!(error = %e, "webhook outbox: cannot read a delivery");
                            None
                        }
                    };
                    let d: Delivery = serde_json::from_slice(&v?).ok()?;
                    Some((d.event_id, d.body.into_bytes()))
                })
            };
            let report = {
                let tx = tx.clone();
                Box::new(move |r: Report| {
                    let _ = tx.send(Command::Report(idx, r));
                })
            };
            let dispatcher = Dispatcher::new(
                endpoint.clone(),
                config.clone(),
                client.clone(),
                bodies,
                report,
            );
            tokio::spawn(dispatcher.run(drx));
        }

        let (router_tx, router_rx) = mpsc::unbounded_channel();
        for entry in inbox {
            let _ = router_tx.send(entry);
        }
        tokio::spawn(route_loop(
            router_rx,
            endpoints.clone(),
            policy.clone(),
            tx.clone(),
            counters.clone(),
        ));

        let unwritten = Arc::new(AtomicUsize::new(0));
        let refusals = Arc::new(LogEvery::default());
        let writer = Writer {
            store: store.clone(),
            endpoints: endpoints.clone(),
            config,
            policy,
            view,
            dispatch,
            router: router_tx,
            counters: counters.clone(),
            unwritten: unwritten.clone(),
            refusals: refusals.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::new(format!("cannot start the outbox writer: {e}")))?;
        Ok(Arc::new(Outbox {
            tx,
            endpoints,
            store,
            counters,
            unwritten,
            refusals,
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// Every endpoint's status, in config order.
    pub fn endpoints(&self) -> Vec<super::webhook::EndpointStatus> {
        self.endpoints
            .iter()
            .map(|e| e.status.lock().clone())
            .collect()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.name() == name)
    }

    /// Parked deliveries of endpoint `name` after position `after`, at most `limit`; `None`
    /// for an unknown endpoint.
    pub fn parked(
        &self,
        name: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<Vec<ParkedDelivery>>, StoreError> {
        if self.index(name).is_none() {
            return Ok(None);
        }
        let after = after.map(|s| key(name, s));
        let rows = self
            .store
            .read(|r| r.scan(PARKED, &prefix(name), after.as_deref(), limit))?;
        rows.into_iter()
            .map(|(k, v)| {
                let d: Delivery = serde_json::from_slice(&v).map_err(|e| corrupt("delivery", e))?;
                Ok(ParkedDelivery {
                    seq: seq_of(&k),
                    event_id: d.event_id,
                    event_type: d.event_type,
                    room: d.room,
                    created_at: rfc3339(d.created_ms),
                    parked_at: d.parked_ms.map(rfc3339),
                    reason: d.reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Put endpoint `name`'s parked deliveries back in its queue, in order, and make it
    /// active again. The number replayed; `None` for an unknown endpoint.
    pub async fn replay(&self, name: &str) -> Option<u64> {
        let idx = self.index(name)?;
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Replay(idx, tx)).ok()?;
        rx.await.ok()
    }

    /// Wait until everything accepted so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Write what was accepted, then stop the writer (at shutdown; events after it are not
    /// written).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// Totals since start.
    pub fn counters(&self) -> CounterSnapshot {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            queued: get(&c.queued),
            plugin_failures: get(&c.plugin_failures),
            dropped_by_plugin: get(&c.dropped_by_plugin),
            parked: get(&c.parked),
            store_errors: get(&c.store_errors),
        }
    }
}

impl EventSink for Outbox {
    fn accept(&self, event: &Arc<Event>) {
        if self.unwritten.fetch_add(1, Ordering::AcqRel) >= MAX_UNWRITTEN {
            self.unwritten.fetch_sub(1, Ordering::AcqRel);
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(held) = self.refusals.allow() {
                tracing::error!(event = %event.id, refused_before = held, "webhook outbox: {MAX_UNWRITTEN} events wait for the disk; event refused");
            }
            return;
        }
        if self.tx.send(Command::Event(event.clone())).is_err() {
            self.unwritten.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let stop = self.apply(batch);
            if stop {
                return;
            }
        }
    }

    /// Commit `batch` (retrying until the store takes it), then tell everyone. True on Stop.
    fn apply(&mut self, batch: Vec<Command>) -> bool {
        let (view, fx) = loop {
            let mut view = self.view.clone();
            match self.store.write(|w| self.write_batch(w, &batch, &mut view)) {
                Ok(fx) => break (view, fx),
                Err(e) => {
                    self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "webhook outbox: commit failed; retrying in 1 s (events wait in memory)");
                    std::thread::sleep(COMMIT_RETRY);
                }
            }
        };
        self.view = view;
        let c = &self.counters;
        c.accepted.fetch_add(fx.accepted, Ordering::Relaxed);
        c.refused.fetch_add(fx.refused, Ordering::Relaxed);
        c.queued.fetch_add(fx.queued, Ordering::Relaxed);
        c.parked.fetch_add(fx.parked, Ordering::Relaxed);
        self.unwritten.fetch_sub(fx.events, Ordering::AcqRel);
        for (idx, endpoint) in self.endpoints.iter().enumerate() {
            let mut status = endpoint.status.lock();
            status.queued = self.view.queued[idx];
            status.parked = self.view.parked[idx];
            status.state = self.view.states[idx];
            status.refused_full += fx.refused_per_endpoint.get(&idx).copied().unwrap_or(0);
        }
        if fx.refused > 0
            && let Some(held) = self.refusals.allow()
        {
            tracing::error!(
                refused = fx.refused + held,
                "webhook outbox full (outbox.max_deliveries_per_endpoint); new deliveries refused and counted"
            );
        }
        for entry in fx.to_router {
            let _ = self.router.send(entry);
        }
        for (idx, msg) in fx.to_dispatch {
            let _ = self.dispatch[idx].send(msg);
        }
        let mut stop = false;
        for (i, command) in batch.into_iter().enumerate() {
            match command {
                Command::Replay(_, reply) => {
                    let _ = reply.send(fx.replayed.get(&i).copied().unwrap_or(0));
                }
                Command::Flush(reply) => {
                    let _ = reply.send(());
                }
                Command::Stop(reply) => {
                    let _ = reply.send(());
                    stop = true;
                }
                _ => {}
            }
        }
        stop
    }

    fn write_batch(
        &self,
        w: &mut Write<'_>,
        batch: &[Command],
        view: &mut View,
    ) -> Result<Effects, StoreError> {
        let mut fx = Effects::default();
        let cap = self.config.max_deliveries_per_endpoint;
        for (i, command) in batch.iter().enumerate() {
            match command {
                Command::Event(event) => {
                    fx.events += 1;
                    let stored = Arc::new(StoredEvent {
                        id: event.id.clone(),
                        event_type: event.type_name().to_owned(),
                        room: event.room.clone(),
                        at_ms: event.at_ms,
                        body: event.to_json().to_string(),
                    });
                    if !self.policy.active() && view.inbox_len == 0 {
                        fx.accepted += 1;
                        let body: Arc<str> = Arc::from(stored.body.as_str());
                        for idx in route::matching(&self.endpoints, &stored.event_type) {
                            self.enqueue(w, view, &mut fx, idx, &stored, &body)?;
                        }
                    } else if view.inbox_len >= cap {
                        fx.refused += 1;
                    } else {
                        fx.accepted += 1;
                        let seq = view.next_seq;
                        view.next_seq += 1;
                        w.insert(INBOX, &seq.to_be_bytes(), &json(stored.as_ref()))?;
                        view.inbox_len += 1;
                        fx.to_router.push((seq, stored));
                    }
                }
                Command::Routed { seq, event, routes } => {
                    if w.remove(INBOX, &seq.to_be_bytes())?.is_some() {
                        view.inbox_len -= 1;
                    }
                    for (idx, body) in routes {
                        self.enqueue(w, view, &mut fx, *idx, event, body)?;
                    }
                }
                Command::Report(idx, report) => self.report(w, view, &mut fx, *idx, report)?,
                Command::Replay(idx, _) => {
                    let n = self.replay(w, view, &mut fx, *idx)?;
                    fx.replayed.insert(i, n);
                }
                Command::Flush(_) | Command::Stop(_) => {}
            }
        }
        w.insert(META, NEXT_SEQ, &view.next_seq.to_be_bytes())?;
        let pending: Vec<usize> = fx.pending.keys().copied().collect();
        for idx in pending {
            fx.flush(idx);
        }
        Ok(fx)
    }

    fn enqueue(
        &self,
        w: &mut Write<'_>,
        view: &mut View,
        fx: &mut Effects,
        idx: usize,
        event: &StoredEvent,
        body: &Arc<str>,
    ) -> Result<(), StoreError> {
        if view.queued[idx] + view.parked[idx] >= self.config.max_deliveries_per_endpoint {
            fx.refused += 1;
            *fx.refused_per_endpoint.entry(idx).or_default() += 1;
            return Ok(());
        }
        let seq = view.next_seq;
        view.next_seq += 1;
        let name = self.endpoints[idx].name();
        let mut delivery = Delivery {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            room: event.room.clone(),
            created_ms: event.at_ms,
            body: body.to_string(),
            parked_ms: None,
            reason: None,
        };
        fx.queued += 1;
        if view.states[idx] == EndpointState::Active {
            w.insert(QUEUE, &key(name, seq), &json(&delivery))?;
            view.queued[idx] += 1;
            fx.pending.entry(idx).or_default().push(Queued {
                seq,
                room: Arc::from(event.room.as_deref().unwrap_or_default()),
            });
        } else {
            delivery.parked_ms = Some(super::webhook::unix_now_ms());
            delivery.reason = Some(format!("endpoint {:?}", view.states[idx]).to_lowercase());
            w.insert(PARKED, &key(name, seq), &json(&delivery))?;
            view.parked[idx] += 1;
            fx.parked += 1;
        }
        Ok(())
    }

    fn record(&self, w: &Write<'_>, idx: usize) -> Result<EndpointRecord, StoreError> {
        match w.get(ENDPOINTS, self.endpoints[idx].name().as_bytes())? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| corrupt("endpoint", e)),
            None => Ok(EndpointRecord::default()),
        }
    }

    /// Move one queued delivery aside; true if it was queued.
    fn park_one(
        &self,
        w: &mut Write<'_>,
        view: &mut View,
        fx: &mut Effects,
        idx: usize,
        k: &[u8],
        reason: &str,
    ) -> Result<bool, StoreError> {
        let Some(v) = w.remove(QUEUE, k)? else {
            return Ok(false);
        };
        let mut d: Delivery = serde_json::from_slice(&v).map_err(|e| corrupt("delivery", e))?;
        d.parked_ms = Some(super::webhook::unix_now_ms());
        d.reason = Some(reason.to_owned());
        w.insert(PARKED, k, &json(&d))?;
        view.queued[idx] -= 1;
        view.parked[idx] += 1;
        fx.parked += 1;
        Ok(true)
    }

    fn report(
        &self,
        w: &mut Write<'_>,
        view: &mut View,
        fx: &mut Effects,
        idx: usize,
        report: &Report,
    ) -> Result<(), StoreError> {
        let name = self.endpoints[idx].name();
        match report {
            Report::Delivered { seq } => {
                if w.remove(QUEUE, &key(name, *seq))?.is_some() {
                    view.queued[idx] -= 1;
                }
            }
            Report::FailingSince(since) => {
                let mut record = self.record(w, idx)?;
                record.failing_since_ms = *since;
                w.insert(ENDPOINTS, name.as_bytes(), &json(&record))?;
            }
            Report::ParkOne { seq, reason } => {
                self.park_one(w, view, fx, idx, &key(name, *seq), reason)?;
            }
            Report::Park { state, reason } => {
                for (k, _) in w.scan(QUEUE, &prefix(name), usize::MAX)? {
                    self.park_one(w, view, fx, idx, &k, reason)?;
                }
                view.states[idx] = *state;
                let mut record = self.record(w, idx)?;
                record.state = *state;
                record.reason = Some(reason.clone());
                w.insert(ENDPOINTS, name.as_bytes(), &json(&record))?;
                fx.pending.remove(&idx);
            }
        }
        Ok(())
    }

    fn replay(
        &self,
        w: &mut Write<'_>,
        view: &mut View,
        fx: &mut Effects,
        idx: usize,
    ) -> Result<u64, StoreError> {
        let name = self.endpoints[idx].name();
        let parked = w.scan(PARKED, &prefix(name), usize::MAX)?;
        let n = parked.len() as u64;
        for (k, v) in parked {
            w.remove(PARKED, &k)?;
            let mut d: Delivery = serde_json::from_slice(&v).map_err(|e| corrupt("delivery", e))?;
            d.parked_ms = None;
            d.reason = None;
            w.insert(QUEUE, &k, &json(&d))?;
        }
        view.parked[idx] -= n;
        view.queued[idx] += n;
        view.states[idx] = EndpointState::Active;
        w.insert(
            ENDPOINTS,
            name.as_bytes(),
            &json(&EndpointRecord::default()),
        )?;
        let queued = w
            .scan(QUEUE, &prefix(name), usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let d: Delivery = serde_json::from_slice(&v).map_err(|e| corrupt("delivery", e))?;
                Ok(Queued {
                    seq: seq_of(&k),
                    room: Arc::from(d.room.unwrap_or_default()),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        fx.pending.remove(&idx);
        fx.to_dispatch.push((
            idx,
            DispatchMsg::Reset {
                queued,
                state: EndpointState::Active,
                failing_since_ms: None,
            },
        ));
        tracing::info!(endpoint = name, replayed = n, "webhook deliveries replayed");
        Ok(n)
    }
}

/// Ask the policy about each inbox event, a few at a time, handing decisions back in order.
async fn route_loop(
    rx: mpsc::UnboundedReceiver<(u64, Arc<StoredEvent>)>,
    endpoints: Vec<Arc<Endpoint>>,
    policy: Arc<dyn WebhookPolicy>,
    tx: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
) {
    let failures = Arc::new(LogEvery::default());
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|entry| (entry, rx))
    });
    let decided = events
        .map(|(seq, event)| {
            let (endpoints, policy, counters, failures) = (
                endpoints.clone(),
                policy.clone(),
                counters.clone(),
                failures.clone(),
            );
            async move {
                let matching = route::matching(&endpoints, &event.event_type);
                let body: Arc<str> = Arc::from(event.body.as_str());
                if matching.is_empty() {
                    return (seq, event, Vec::new());
                }
                let verdict = if policy.active() {
                    let input = PolicyInput {
                        id: event.id.clone(),
                        event_type: event.event_type.clone(),
                        room: event.room.clone(),
                        at_ms: event.at_ms,
                        body: event.body.clone(),
                        endpoints: matching
                            .iter()
                            .map(|&i| endpoints[i].name().to_owned())
                            .collect(),
                    };
                    policy.decide(input).await
                } else {
                    Verdict::Deliver {
                        body: None,
                        endpoints: None,
                    }
                };
                match &verdict {
                    Verdict::Failed { who, why } => {
                        counters.plugin_failures.fetch_add(1, Ordering::Relaxed);
                        if let Some(held) = failures.allow() {
                            tracing::warn!(
                                plugin = %who,
                                error = %why,
                                event = %event.id,
                                failures_not_logged = held,
                                "webhook plugin failed; event delivered as is"
                            );
                        }
                    }
                    Verdict::Drop => {
                        counters.dropped_by_plugin.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::Deliver { .. } => {}
                }
                let routes = route::apply(&endpoints, &matching, &body, &verdict);
                (seq, event, routes)
            }
        })
        .buffered(ROUTER_CONCURRENCY);
    futures::pin_mut!(decided);
    while let Some((seq, event, routes)) = decided.next().await {
        if tx.send(Command::Routed { seq, event, routes }).is_err() {
            return;
        }
    }
}
