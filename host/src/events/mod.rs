//! Events: what happened to rooms, sessions and plugins, each with an id, a time, the room and
//! a typed payload. This module is a contract: the event types and their fields are documented
//! in the README, and renaming one is a breaking change.
//!
//! Who consumes them, and what each does when it falls behind:
//! - **Durable sinks** ([`EventSink`], e.g. the webhook outbox) are handed every event in the
//!   publisher's call, in order. A sink must not block and must not drop: it takes the event
//!   into its own queue (the outbox: an unbounded channel to its writer, whose disk policy is
//!   explicit) and does its I/O elsewhere.
//! - **Subscribers** ([`EventBus::subscribe`]: server-sent events to players, logs, tests) get
//!   them through a broadcast channel of [`BROADCAST_CAPACITY`]: a slow subscriber loses its
//!   own backlog (it sees `Lagged`), nobody else notices.
//!
//! Publishing never touches the per-packet path (events come from signalling, session
//! supervision and the plugin runtime) and never waits.
//!
//! Parts:
//! - this file: the envelope ([`Event`], [`EventData`]), the bus and its sinks.
//! - [`outbox`]: the durable webhook outbox (a sink), on the one store file.
//! - [`webhook`]: delivery to endpoints — signing, retries, parking.
//! - [`route`]: which endpoints get an event (filters, then `webhook` plugins).
//! - [`config`]: `[[webhooks]]`, `[outbox]`, `[store]`.
//! - [`sign`]: Standard Webhooks signatures.

pub mod config;
pub mod outbox;
pub mod route;
pub mod sign;
pub mod webhook;

use parking_lot::RwLock;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Events a slow subscriber may fall behind by before it loses the oldest.
pub const BROADCAST_CAPACITY: usize = 4096;

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique, time-ordered (`evt_` + UUIDv7): the webhook id, stable across retries.
    pub id: String,
    /// When it happened, Unix milliseconds.
    pub at_ms: u64,
    /// The room it concerns, if any (plugin events have none).
    pub room: Option<String>,
    pub data: EventData,
}

/// What happened. `type_name` is the event type consumers see (`room.started`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    /// The first session of a room started.
    RoomStarted {},
    /// The last session of a room ended; the room is gone.
    RoomFinished {},
    PublishStarted {
        session: String,
        subject: String,
    },
    PublishEnded {
        session: String,
        subject: String,
        reason: EndCode,
    },
    PlayStarted {
        session: String,
        subject: String,
    },
    PlayEnded {
        session: String,
        subject: String,
        reason: EndCode,
    },
    /// A publisher's track started arriving.
    TrackPublished {
        session: String,
        kind: String,
        codec: String,
        simulcast_layers: Vec<String>,
    },
    /// Any session ended, with why.
    SessionEnded {
        session: String,
        action: crate::auth::Action,
        subject: String,
        reason: EndCode,
        detail: String,
    },
    /// A recorder plugin decided to record a publish session; its files go to `dir`.
    RecordingStarted {
        recording: String,
        session: String,
        subject: String,
        kinds: Vec<String>,
        dir: String,
    },
    /// A segment of a recording was closed: its files are complete.
    RecordingSegmentClosed {
        recording: String,
        session: String,
        segment: u32,
        files: Vec<String>,
        duration_ms: u64,
    },
    /// A recording ended: `reason` is `stopped` (the publish session ended, or shutdown),
    /// `max-duration` or `write-failed` (with `detail`, e.g. the disk is full).
    RecordingStopped {
        recording: String,
        session: String,
        reason: String,
        detail: String,
        segments: u32,
        dropped_packets: u64,
    },
    /// A publish session could not be recorded: the recorder plugin failed, the recording's
    /// directory could not be made, or the plugin named a storage that is not configured.
    RecordingFailed {
        session: String,
        reason: String,
    },
    /// A recorded file is in storage (its upload was confirmed).
    RecordingUploaded {
        recording: String,
        session: String,
        segment: u32,
        file: String,
        storage: String,
        key: String,
        size_bytes: u64,
    },
    /// An upload attempt failed. `retry_in_ms` > 0: the file stays queued (on disk and in the
    /// store) and is tried again then; 0: it cannot be uploaded at all (its local file is gone).
    RecordingUploadFailed {
        recording: String,
        session: String,
        segment: u32,
        file: String,
        storage: String,
        key: String,
        attempt: u32,
        error: String,
        retry_in_ms: u64,
    },
    PluginLoaded {
        plugin: String,
        hooks: Vec<String>,
    },
    PluginReloaded {
        plugins: Vec<String>,
    },
    /// A plugin call failed (trap, timeout, memory, bad output). At most one per plugin per
    /// [`PLUGIN_FAILURE_EVERY`], counting the failures folded into it.
    PluginFailed {
        plugin: String,
        hook: String,
        failure: String,
        failures: u64,
    },
}

/// Plugin failures are reported at most this often per plugin (a failing plugin under load
/// would otherwise be an event per request).
pub const PLUGIN_FAILURE_EVERY: Duration = Duration::from_secs(10);

/// Why a session ended, as consumers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndCode {
    Deleted,
    Replaced,
    IceFailed,
    ConnectTimeout,
    PeerClosed,
    CredentialExpired,
    RevokedOnRecheck,
    Kicked,
    RoomClosed,
    Shutdown,
    InternalFault,
}

impl EventData {
    /// The event type, as in webhook bodies and the README.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventData::RoomStarted {} => "room.started",
            EventData::RoomFinished {} => "room.finished",
            EventData::PublishStarted { .. } => "publish.started",
            EventData::PublishEnded { .. } => "publish.ended",
            EventData::PlayStarted { .. } => "play.started",
            EventData::PlayEnded { .. } => "play.ended",
            EventData::TrackPublished { .. } => "track.published",
            EventData::SessionEnded { .. } => "session.ended",
            EventData::RecordingStarted { .. } => "recording.started",
            EventData::RecordingSegmentClosed { .. } => "recording.segment_closed",
            EventData::RecordingStopped { .. } => "recording.stopped",
            EventData::RecordingFailed { .. } => "recording.failed",
            EventData::RecordingUploaded { .. } => "recording.uploaded",
            EventData::RecordingUploadFailed { .. } => "recording.upload_failed",
            EventData::PluginLoaded { .. } => "plugin.loaded",
            EventData::PluginReloaded { .. } => "plugin.reloaded",
            EventData::PluginFailed { .. } => "plugin.failed",
        }
    }
}

/// Every event type, for validation of filters in config.
pub const EVENT_TYPES: &[&str] = &[
    "room.started",
    "room.finished",
    "publish.started",
    "publish.ended",
    "play.started",
    "play.ended",
    "track.published",
    "session.ended",
    "recording.started",
    "recording.segment_closed",
    "recording.stopped",
    "recording.failed",
    "recording.uploaded",
    "recording.upload_failed",
    "plugin.loaded",
    "plugin.reloaded",
    "plugin.failed",
];

impl Event {
    pub fn type_name(&self) -> &'static str {
        self.data.type_name()
    }

    /// The JSON body consumers get (the Standard Webhooks shape):
    /// `{"type": ..., "timestamp": RFC 3339, "data": {"id", "room", ...fields}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut data = serde_json::to_value(&self.data).unwrap_or_default();
        if let serde_json::Value::Object(fields) = &mut data {
            fields.insert("id".into(), self.id.clone().into());
            if let Some(room) = &self.room {
                fields.insert("room".into(), room.clone().into());
            }
        }
        serde_json::json!({
            "type": self.type_name(),
            "timestamp": rfc3339(self.at_ms),
            "data": data,
        })
    }
}

/// `2026-12-01T20:26:10.344Z`.
pub fn rfc3339(at_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// A consumer that must see every event (see the module docs).
pub trait EventSink: Send + Sync {
    /// Take the event. Called in the publisher's call: never block, never drop.
    fn accept(&self, event: &Arc<Event>);
}

/// Where events are published. Cheap to clone; every clone publishes to the same consumers.
#[derive(Clone)]
pub struct EventBus {
    broadcast: broadcast::Sender<Arc<Event>>,
    sinks: Arc<RwLock<Vec<Arc<dyn EventSink>>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            broadcast: broadcast::channel(BROADCAST_CAPACITY).0,
            sinks: Arc::default(),
        }
    }
}

impl EventBus {
    /// Publish what happened (in `room`, if any) now.
    pub fn publish(&self, room: Option<&str>, data: EventData) -> Arc<Event> {
        let event = Arc::new(Event {
            id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            room: room.map(str::to_owned),
            data,
        });
        for sink in self.sinks.read().iter() {
            sink.accept(&event);
        }
        // No subscribers is fine.
        let _ = self.broadcast.send(event.clone());
        event
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.broadcast.subscribe()
    }

    /// Add a durable consumer; it sees every event published from now on.
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks.write().push(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Arc<Event>>>);

    impl EventSink for Collect {
        fn accept(&self, event: &Arc<Event>) {
            self.0.lock().push(event.clone());
        }
    }

    #[test]
    fn bodies_have_type_timestamp_id_room_and_fields() {
        let bus = EventBus::default();
        let sink = Arc::new(Collect::default());
        bus.add_sink(sink.clone());
        let a = bus.publish(
            Some("lobby"),
            EventData::PublishEnded {
                session: "s1".into(),
                subject: "alice".into(),
                reason: EndCode::RevokedOnRecheck,
            },
        );
        let b = bus.publish(
            None,
            EventData::PluginReloaded {
                plugins: vec!["auth".into()],
            },
        );
        assert!(
            a.id.starts_with("evt_") && a.id < b.id,
            "unique and time-ordered"
        );
        let json = a.to_json();
        assert_eq!(json["type"], "publish.ended");
        assert_eq!(json["data"]["reason"], "revoked-on-recheck");
        assert_eq!(json["data"]["room"], "lobby");
        assert_eq!(json["data"]["id"], a.id.as_str());
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(b.to_json()["data"].get("room").is_none());
        assert_eq!(sink.0.lock().len(), 2, "sinks see every event");
        assert!(EVENT_TYPES.contains(&a.type_name()));
    }
}
