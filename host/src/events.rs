//! Lifecycle events other parts of the server (webhooks, metrics, logs) subscribe to.
//!
//! A broadcast channel: publishing never blocks the SFU, and a slow subscriber only loses
//! its own backlog.

use crate::auth::Action;
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    SessionStarted {
        session: String,
        room: String,
        action: Action,
        subject: String,
    },
    SessionEnded {
        session: String,
        room: String,
        action: Action,
        subject: String,
        reason: String,
    },
}

#[derive(Clone)]
pub struct EventBus(broadcast::Sender<Event>);

impl Default for EventBus {
    fn default() -> Self {
        EventBus(broadcast::channel(1024).0)
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        // No subscribers is fine.
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}
