//! Webhook outbox benchmark (not a test): events delivered per second to a local consumer
//! through the durable outbox (every event committed to the store file before it is sent, and
//! removed once acknowledged), and how long a backlog of 10,000 events takes to drain once a
//! consumer that was down comes back.
//!
//! ```sh
//! cargo run --release -p switchboard --example webhook_bench [-- EVENTS ROOMS]
//! ```
//!
//! The consumer is an axum server on loopback answering 204 (503 while "down"); events are
//! spread over ROOMS rooms (default 50; a room's events go one at a time, in order).

use axum::extract::State;
use axum::http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard::events::config::{OutboxConfig, Secrets, WebhookEndpointConfig};
use switchboard::events::outbox::Outbox;
use switchboard::events::route::AsIs;
use switchboard::events::{EventBus, EventData};
use switchboard::store::Store;

struct Consumer {
    received: AtomicU64,
    down: AtomicBool,
}

async fn hook(State(c): State<Arc<Consumer>>, _body: String) -> StatusCode {
    if c.down.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    c.received.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn wait_for(c: &Consumer, n: u64) {
    while c.received.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn publish(bus: &EventBus, events: usize, rooms: usize) {
    for i in 0..events {
        bus.publish(
            Some(&format!("room-{}", i % rooms)),
            EventData::PlayStarted {
                session: format!("s{i}"),
                subject: "bench".into(),
            },
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let events = args.first().copied().unwrap_or(20_000);
    let rooms = args.get(1).copied().unwrap_or(50);
    let backlog = 10_000;

    let consumer = Arc::new(Consumer {
        received: AtomicU64::new(0),
        down: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(consumer.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("bench.redb")).unwrap());
    let endpoint = WebhookEndpointConfig {
        name: "bench".into(),
        url,
        secret: Secrets::One("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        events: vec![],
        timeout_ms: 10_000,
    };
    let config = OutboxConfig {
        retry_initial_ms: 100,
        retry_max_ms: 500,
        ..OutboxConfig::default()
    };
    let outbox = Outbox::start(store, vec![endpoint], config.clone(), Arc::new(AsIs)).unwrap();
    let bus = EventBus::default();
    bus.add_sink(outbox.clone());

    // 1. Throughput: publish as fast as events come, until the consumer has them all.
    let started = Instant::now();
    publish(&bus, events, rooms);
    let published = started.elapsed();
    wait_for(&consumer, events as u64).await;
    let took = started.elapsed();
    println!(
        "throughput: {events} events over {rooms} rooms delivered in {:.2} s = {:.0} events/s \
         (publishing took {:.1} ms; max_in_flight {})",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        published.as_secs_f64() * 1e3,
        config.max_in_flight,
    );

    // 2. Backlog: the consumer is down while 10,000 events arrive; then it comes back.
    consumer.down.store(true, Ordering::Relaxed);
    let before = consumer.received.load(Ordering::Relaxed);
    publish(&bus, backlog, rooms);
    outbox.flush().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queued = outbox.endpoints()[0].queued;
    let back = Instant::now();
    consumer.down.store(false, Ordering::Relaxed);
    wait_for(&consumer, before + backlog as u64).await;
    let drained = back.elapsed();
    println!(
        "backlog: {queued} queued while the consumer was down; drained in {:.2} s after it came \
         back = {:.0} events/s (includes up to {} ms until each room's next retry)",
        drained.as_secs_f64(),
        backlog as f64 / drained.as_secs_f64(),
        config.retry_max_ms,
    );
    println!("counters: {:?}", outbox.counters());
    outbox.shutdown().await;
}
