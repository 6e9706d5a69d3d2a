//! Metrics: `GET /metrics` in the Prometheus text format, through the `metrics` facade and
//! `metrics-exporter-prometheus`'s recorder (one per server, never installed globally, so
//! servers in one process — tests — keep their own figures).
//!
//! Every metric name is in [`METRICS`], with its type, labels and help; the README's table is
//! checked against it. Names carry the `switchboard_` prefix and labels are few-valued
//! (session kind, direction, plugin, hook, outcome, webhook endpoint) — never a session id
//! or a room name.
//!
//! Where the figures come from:
//! - **Read at scrape time** ([`Metrics::render`] runs the collectors first): rooms, sessions,
//!   RTP packets and bytes, drops, NACKs and PLIs come from the SFU's own relaxed atomics
//!   (`Sfu::totals`: per session and per hub, folded into totals when one ends) and the NACK
//!   guard's; plugin calls from the plugin runtime's statistics. The media path does no work
//!   for metrics.
//! - **Recorded as they happen**: the join latency (a layer around the HTTP app, POST → `201`
//!   with the answer) and each plugin call's latency (a histogram handle the plugin runtime
//!   is given, `PluginGate::record_latency_in`).
//! - **Webhooks**: `switchboard_webhook_deliveries_total` and `switchboard_outbox_depth` are
//!   read from the webhook outbox's own counters ([`WebhookFigures`]) when webhooks are
//!   configured.

use crate::plugins::PluginGate;
use crate::sfu::Sfu;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use parking_lot::Mutex;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: name, type, label names and help text.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

pub const BUILD_INFO: MetricDef = def(
    "switchboard_build_info",
    Kind::Gauge,
    &["version"],
    "Always 1; the version of the running server.",
);
pub const ROOMS: MetricDef = def(
    "switchboard_rooms",
    Kind::Gauge,
    &[],
    "Rooms that exist now (with a session live or being set up).",
);
pub const SESSIONS: MetricDef = def(
    "switchboard_sessions",
    Kind::Gauge,
    &["kind"],
    "Live sessions by kind (publisher, viewer).",
);
pub const SESSIONS_STARTED: MetricDef = def(
    "switchboard_sessions_started_total",
    Kind::Counter,
    &["kind"],
    "Sessions set up since start, by kind (publisher, viewer).",
);
pub const RTP_PACKETS: MetricDef = def(
    "switchboard_rtp_packets_total",
    Kind::Counter,
    &["direction"],
    "RTP packets received from publishers (in) and sent to viewers (out; each viewer's copy).",
);
pub const RTP_BYTES: MetricDef = def(
    "switchboard_rtp_bytes_total",
    Kind::Counter,
    &["direction"],
    "RTP payload bytes received from publishers (in) and sent to viewers (out).",
);
pub const VIEWER_DROPPED: MetricDef = def(
    "switchboard_viewer_packets_dropped_total",
    Kind::Counter,
    &[],
    "Packets a viewer could not take at once (full socket buffer or queue) and lost.",
);
pub const PUBLISHER_DROPPED: MetricDef = def(
    "switchboard_publisher_packets_dropped_total",
    Kind::Counter,
    &[],
    "Packets of publishers over limits.max_publisher_kbps (beyond 1.5x), dropped.",
);
pub const NACK_PACKETS: MetricDef = def(
    "switchboard_nack_packets_total",
    Kind::Counter,
    &["outcome"],
    "Packets viewers asked to be resent (NACK): resent (passed to the retransmitter), \
     suppressed (repeated within 100 ms or over the per-viewer rate).",
);
pub const PLI_RECEIVED: MetricDef = def(
    "switchboard_pli_received_total",
    Kind::Counter,
    &[],
    "Keyframe requests (PLI/FIR) received from viewers.",
);
pub const PLI_SENT: MetricDef = def(
    "switchboard_pli_sent_total",
    Kind::Counter,
    &[],
    "Keyframe requests (PLI) sent to publishers (viewer joins, viewer requests, layer \
     switches; throttled per room).",
);
pub const JOIN_SECONDS: MetricDef = def(
    "switchboard_join_seconds",
    Kind::Histogram,
    &["kind"],
    "WHIP/WHEP join latency: POST received to 201 with the SDP answer, by kind.",
);
pub const PLUGIN_CALLS: MetricDef = def(
    "switchboard_plugin_calls_total",
    Kind::Counter,
    &["plugin", "hook", "outcome"],
    "Plugin calls by plugin, hook and outcome (allowed, denied, timeout, out_of_memory, \
     trap, misconfigured, bad_output, not_served).",
);
pub const PLUGIN_CALL_SECONDS: MetricDef = def(
    "switchboard_plugin_call_seconds",
    Kind::Histogram,
    &["plugin", "hook"],
    "Plugin call latency as the caller waited it (free plugin thread included).",
);
pub const PLUGIN_HEALTHY: MetricDef = def(
    "switchboard_plugin_healthy",
    Kind::Gauge,
    &["plugin"],
    "1 unless the last call of one of the plugin's hooks failed.",
);
pub const WEBHOOK_DELIVERIES: MetricDef = def(
    "switchboard_webhook_deliveries_total",
    Kind::Counter,
    &["endpoint", "outcome"],
    "Webhook deliveries by endpoint and outcome: delivered, failed (attempts; most are \
     retried), refused (the endpoint's share of the outbox was full).",
);
pub const OUTBOX_DEPTH: MetricDef = def(
    "switchboard_outbox_depth",
    Kind::Gauge,
    &[],
    "Webhook deliveries waiting in the outbox (queued or being retried; parked excluded).",
);
pub const UDP_MUX_DROPPED: MetricDef = def(
    "switchboard_udp_mux_dropped_total",
    Kind::Counter,
    &["reason"],
    "Datagrams the single-port mux (webrtc.udp_port) dropped: unrouted (no session claims \
     them: not STUN, or an unknown username fragment), queue_full (their session's queue \
     was full).",
);
pub const TCP_MUX_DROPPED: MetricDef = def(
    "switchboard_tcp_mux_dropped_total",
    Kind::Counter,
    &["reason"],
    "Connections the ICE-TCP port (webrtc.tcp_port) closed before a session took them: \
     unrouted (first frame not an ICE check, or an unknown username fragment), timeout (no \
     first frame within 10 s), busy (256 connections already waiting for theirs), queue_full \
     (their session had 8 connections waiting).",
);

pub const RECORDINGS: MetricDef = def(
    "switchboard_recordings",
    Kind::Gauge,
    &[],
    "Recordings running (decided by the recorder plugins).",
);
pub const RECORDING_SEGMENTS: MetricDef = def(
    "switchboard_recording_segments_total",
    Kind::Counter,
    &[],
    "Recording segments closed (each a complete file set).",
);
pub const RECORDING_DROPPED: MetricDef = def(
    "switchboard_recording_dropped_packets_total",
    Kind::Counter,
    &[],
    "RTP packets recordings lost because their own queue was full (a slow disk); viewers \
     lose none.",
);

pub const RECORDING_UPLOADS: MetricDef = def(
    "switchboard_recording_uploads_total",
    Kind::Counter,
    &["outcome"],
    "Recorded files' upload attempts: uploaded (confirmed by the storage), failed (retried \
     with backoff; the file stays queued).",
);
pub const RECORDING_UPLOAD_BYTES: MetricDef = def(
    "switchboard_recording_upload_bytes_total",
    Kind::Counter,
    &[],
    "Bytes of recorded files uploaded.",
);
pub const RECORDING_UPLOADS_PENDING: MetricDef = def(
    "switchboard_recording_uploads_pending",
    Kind::Gauge,
    &[],
    "Recorded files closed and waiting for upload (on disk and in the store).",
);

/// Every metric the server exports.
pub static METRICS: &[MetricDef] = &[
    BUILD_INFO,
    ROOMS,
    SESSIONS,
    SESSIONS_STARTED,
    RTP_PACKETS,
    RTP_BYTES,
    VIEWER_DROPPED,
    PUBLISHER_DROPPED,
    NACK_PACKETS,
    PLI_RECEIVED,
    PLI_SENT,
    JOIN_SECONDS,
    PLUGIN_CALLS,
    PLUGIN_CALL_SECONDS,
    PLUGIN_HEALTHY,
    WEBHOOK_DELIVERIES,
    OUTBOX_DEPTH,
    UDP_MUX_DROPPED,
    TCP_MUX_DROPPED,
    RECORDINGS,
    RECORDING_SEGMENTS,
    RECORDING_DROPPED,
    RECORDING_UPLOADS,
    RECORDING_UPLOAD_BYTES,
    RECORDING_UPLOADS_PENDING,
];

/// Join latency buckets, seconds: set-up on loopback takes tens of milliseconds, a plugin
/// calling out or a loaded server hundreds.
const JOIN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Plugin call buckets, seconds: tens of microseconds for a token check, milliseconds for
/// RSA or an HTTP upstream, up to the default 100 ms timeout and beyond.
const PLUGIN_BUCKETS: &[f64] = &[
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    1.0,
];
/// How often histogram samples are folded (so memory stays bounded without scrapes).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Webhook delivery figures, read at scrape time (the webhook outbox provides them).
pub trait WebhookFigures: Send + Sync {
    /// Per endpoint name and outcome: deliveries since start.
    fn deliveries(&self) -> Vec<(String, &'static str, u64)>;
    /// Deliveries waiting to be sent (queued or being retried).
    fn outbox_depth(&self) -> u64;
}

/// The webhook outbox's figures: per endpoint, deliveries `delivered`, attempts `failed`
/// (each failed attempt; most are retried), deliveries `refused` (the endpoint's share of the
/// outbox was full); the depth is what every endpoint has waiting.
impl WebhookFigures for crate::events::outbox::Outbox {
    fn deliveries(&self) -> Vec<(String, &'static str, u64)> {
        let mut figures = Vec::new();
        for e in self.endpoints() {
            figures.push((e.name.clone(), "delivered", e.delivered));
            figures.push((e.name.clone(), "failed", e.failed_attempts));
            figures.push((e.name, "refused", e.refused_full));
        }
        figures
    }

    fn outbox_depth(&self) -> u64 {
        self.endpoints().iter().map(|e| e.queued).sum()
    }
}

/// Sets, before a scrape, what is read from elsewhere.
type Collector = Box<dyn Fn(&Metrics) + Send + Sync>;

/// One server's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    collectors: Mutex<Vec<Collector>>,
}

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Metrics {
    /// A recorder with every metric of [`METRICS`] described, and a task folding histogram
    /// samples every [`UPKEEP_EVERY`] while the metrics exist.
    pub fn new() -> Arc<Metrics> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(JOIN_SECONDS.name.into()), JOIN_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(PLUGIN_CALL_SECONDS.name.into()),
                    PLUGIN_BUCKETS,
                )
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        for m in METRICS {
            let (name, help) = (m.name.into(), m.help.into());
            match m.kind {
                Kind::Counter => recorder.describe_counter(name, None, help),
                Kind::Gauge => recorder.describe_gauge(name, None, help),
                Kind::Histogram => recorder.describe_histogram(name, None, help),
            }
        }
        let metrics = Arc::new(Metrics {
            handle: recorder.handle(),
            recorder,
            collectors: Mutex::new(Vec::new()),
        });
        metrics
            .gauge(&BUILD_INFO, &[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&metrics);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(UPKEEP_EVERY);
                loop {
                    tick.tick().await;
                    let Some(metrics) = weak.upgrade() else {
                        return;
                    };
                    metrics.handle.run_upkeep();
                }
            });
        }
        metrics
    }

    fn key(def: &MetricDef, values: &[&str]) -> Key {
        debug_assert!(METRICS.iter().any(|m| m.name == def.name));
        debug_assert_eq!(def.labels.len(), values.len(), "{}", def.name);
        let labels: Vec<Label> = def
            .labels
            .iter()
            .zip(values)
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect();
        Key::from_parts(def.name, labels)
    }

    /// The counter `def` with label values `values` (in `def.labels` order).
    pub fn counter(&self, def: &MetricDef, values: &[&str]) -> Counter {
        debug_assert_eq!(def.kind, Kind::Counter);
        self.recorder
            .register_counter(&Self::key(def, values), &METADATA)
    }

    pub fn gauge(&self, def: &MetricDef, values: &[&str]) -> Gauge {
        debug_assert_eq!(def.kind, Kind::Gauge);
        self.recorder
            .register_gauge(&Self::key(def, values), &METADATA)
    }

    pub fn histogram(&self, def: &MetricDef, values: &[&str]) -> Histogram {
        debug_assert_eq!(def.kind, Kind::Histogram);
        self.recorder
            .register_histogram(&Self::key(def, values), &METADATA)
    }

    /// Run `collect` before every scrape (to set what is read from elsewhere).
    pub fn on_scrape(&self, collect: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.collectors.lock().push(Box::new(collect));
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        for collect in self.collectors.lock().iter() {
            collect(self);
        }
        self.handle.render()
    }

    /// Export the SFU's figures: rooms, sessions, RTP, drops, NACK, PLI.
    pub fn watch_sfu(&self, sfu: &Arc<Sfu>) {
        let sfu: Weak<Sfu> = Arc::downgrade(sfu);
        self.on_scrape(move |m| {
            let Some(sfu) = sfu.upgrade() else { return };
            let t = sfu.totals();
            m.gauge(&ROOMS, &[]).set(t.rooms.live as f64);
            for (kind, total) in [("publisher", &t.publishers), ("viewer", &t.viewers)] {
                m.gauge(&SESSIONS, &[kind]).set(total.live as f64);
                m.counter(&SESSIONS_STARTED, &[kind])
                    .absolute(total.started);
            }
            for (direction, total) in [("in", &t.publishers), ("out", &t.viewers)] {
                m.counter(&RTP_PACKETS, &[direction])
                    .absolute(total.packets);
                m.counter(&RTP_BYTES, &[direction]).absolute(total.bytes);
            }
            m.counter(&VIEWER_DROPPED, &[]).absolute(t.viewers.dropped);
            m.counter(&PUBLISHER_DROPPED, &[])
                .absolute(t.publishers.dropped);
            m.counter(&NACK_PACKETS, &["resent"])
                .absolute(crate::sfu::nack_guard::passed());
            m.counter(&NACK_PACKETS, &["suppressed"])
                .absolute(crate::sfu::nack_guard::suppressed());
            m.counter(&PLI_RECEIVED, &[])
                .absolute(t.rooms.viewer_keyframe_requests);
            m.counter(&PLI_SENT, &[])
                .absolute(t.rooms.keyframe_requests_sent);
            let (unrouted, queue_full) = crate::ice::mux::counters();
            m.counter(&UDP_MUX_DROPPED, &["unrouted"])
                .absolute(unrouted);
            m.counter(&UDP_MUX_DROPPED, &["queue_full"])
                .absolute(queue_full);
            let (recordings, segments, dropped) = crate::recording::sink::counters();
            m.gauge(&RECORDINGS, &[]).set(recordings as f64);
            m.counter(&RECORDING_SEGMENTS, &[]).absolute(segments);
            m.counter(&RECORDING_DROPPED, &[]).absolute(dropped);
            let (unrouted, timeout, busy, queue_full) = crate::ice::tcp::counters();
            for (reason, n) in [
                ("unrouted", unrouted),
                ("timeout", timeout),
                ("busy", busy),
                ("queue_full", queue_full),
            ] {
                m.counter(&TCP_MUX_DROPPED, &[reason]).absolute(n);
            }
        });
    }

    /// Export the plugins' call statistics and health, and give the plugin runtime its
    /// latency histograms.
    pub fn watch_plugins(self: &Arc<Self>, gate: &Arc<PluginGate>) {
        let weak = Arc::downgrade(self);
        gate.record_latency_in(Arc::new(move |plugin, hook| match weak.upgrade() {
            Some(m) => m.histogram(&PLUGIN_CALL_SECONDS, &[plugin, hook.name()]),
            None => Histogram::noop(),
        }));
        let gate = Arc::downgrade(gate);
        self.on_scrape(move |m| {
            let Some(gate) = gate.upgrade() else { return };
            for plugin in gate.status() {
                let name = plugin.info.name.as_str();
                m.gauge(&PLUGIN_HEALTHY, &[name])
                    .set(if plugin.healthy() { 1.0 } else { 0.0 });
                for calls in &plugin.calls {
                    let hook = calls.hook.name();
                    for (outcome, n) in crate::plugins::stats::OUTCOMES.iter().zip(calls.outcomes) {
                        m.counter(&PLUGIN_CALLS, &[name, hook, outcome]).absolute(n);
                    }
                }
            }
        });
    }

    /// Export webhook deliveries and the outbox depth from `figures`.
    pub fn watch_webhooks(&self, figures: Arc<dyn WebhookFigures>) {
        self.on_scrape(move |m| {
            for (endpoint, outcome, n) in figures.deliveries() {
                m.counter(&WEBHOOK_DELIVERIES, &[&endpoint, outcome])
                    .absolute(n);
            }
            m.gauge(&OUTBOX_DEPTH, &[])
                .set(figures.outbox_depth() as f64);
        });
    }

    /// Export the recording upload queue's figures.
    pub fn watch_uploads(&self, uploads: Arc<crate::recording::upload::Uploads>) {
        let uploads = Arc::downgrade(&uploads);
        self.on_scrape(move |m| {
            let Some(uploads) = uploads.upgrade() else {
                return;
            };
            let (uploaded, failed, bytes, pending) = uploads.figures();
            m.counter(&RECORDING_UPLOADS, &["uploaded"])
                .absolute(uploaded);
            m.counter(&RECORDING_UPLOADS, &["failed"]).absolute(failed);
            m.counter(&RECORDING_UPLOAD_BYTES, &[]).absolute(bytes);
            m.gauge(&RECORDING_UPLOADS_PENDING, &[]).set(pending as f64);
        });
    }

    /// The join latency histograms, publisher then viewer, for [`time_joins`].
    pub fn join_histograms(&self) -> JoinHistograms {
        Arc::new([
            self.histogram(&JOIN_SECONDS, &["publisher"]),
            self.histogram(&JOIN_SECONDS, &["viewer"]),
        ])
    }
}

/// `switchboard_join_seconds` for publishers and viewers.
pub type JoinHistograms = Arc<[Histogram; 2]>;

/// Middleware around the HTTP app: times each WHIP/WHEP `POST /{whip,whep}/{room}` from the
/// request's arrival to its `201 Created` (the SDP answer). Refused and failed joins are not
/// joins and are not timed.
pub async fn time_joins(
    State(histograms): State<JoinHistograms>,
    request: Request,
    next: Next,
) -> Response {
    let kind = join_kind(request.method(), request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    if let Some(kind) = kind
        && response.status() == StatusCode::CREATED
    {
        histograms[kind].record(started.elapsed().as_secs_f64());
    }
    response
}

/// 0 for a WHIP POST, 1 for a WHEP POST, None for anything else.
fn join_kind(method: &Method, path: &str) -> Option<usize> {
    if method != Method::POST {
        return None;
    }
    let (kind, room) = if let Some(room) = path.strip_prefix("/whip/") {
        (0, room)
    } else {
        (1, path.strip_prefix("/whep/")?)
    };
    (!room.is_empty() && !room.contains('/')).then_some(kind)
}

/// `GET /metrics`, with an optional bearer token (`metrics.token`).
pub fn routes(metrics: Arc<Metrics>, token: &str) -> axum::Router {
    let token: Option<Arc<str>> = (!token.is_empty()).then(|| token.into());
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state((metrics, token))
}

type ScrapeState = (Arc<Metrics>, Option<Arc<str>>);

async fn scrape(
    State((metrics, token)): State<ScrapeState>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(token) = token {
        use subtle::ConstantTimeEq;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let ok: bool = presented.len() == token.len()
            && bool::from(presented.as_bytes().ct_eq(token.as_bytes()));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                "missing or wrong metrics token\n",
            )
                .into_response();
        }
    }
    let body = metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(m.name.starts_with("switchboard_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "counters and only counters end in _total: {}",
                m.name
            );
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(
                !m.labels
                    .iter()
                    .any(|l| l.contains("session") || *l == "room"),
                "{}: no per-session or per-room labels",
                m.name
            );
        }
    }

    #[test]
    fn every_metric_is_documented_in_the_readme() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        for m in METRICS {
            assert!(
                readme.contains(&format!("`{}`", m.name)),
                "README.md does not document `{}`",
                m.name
            );
        }
    }

    #[test]
    fn joins_are_told_apart_from_other_requests() {
        assert_eq!(join_kind(&Method::POST, "/whip/lobby"), Some(0));
        assert_eq!(join_kind(&Method::POST, "/whep/lobby"), Some(1));
        assert_eq!(join_kind(&Method::POST, "/whep/lobby/abc/sse"), None);
        assert_eq!(join_kind(&Method::PATCH, "/whep/lobby"), None);
        assert_eq!(join_kind(&Method::POST, "/whep/"), None);
        assert_eq!(join_kind(&Method::POST, "/admin/reload"), None);
    }

    #[tokio::test]
    async fn rendered_text_has_help_type_and_histogram_buckets() {
        let m = Metrics::new();
        m.histogram(&JOIN_SECONDS, &["viewer"]).record(0.03);
        m.counter(&RTP_PACKETS, &["in"]).absolute(42);
        let text = m.render();
        assert!(
            text.contains("# TYPE switchboard_join_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_join_seconds_bucket{kind=\"viewer\",le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_rtp_packets_total{direction=\"in\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("# HELP switchboard_rtp_packets_total RTP packets"),
            "{text}"
        );
        assert!(text.contains("switchboard_build_info{version="), "{text}");
    }
}
