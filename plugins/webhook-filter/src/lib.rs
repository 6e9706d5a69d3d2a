//! Webhook filter: which events reach which endpoint, and in what shape — from config alone.
//!
//! ```toml
//! [[plugins]]
//! name = "webhooks"
//! path = "target/plugins/webhook-filter.wasm"
//! hooks = ["webhook"]
//! [plugins.config]
//! include = ["room.*", "publish.*"]   # event types delivered (`*`, `?` patterns); default all
//! exclude = ["plugin.*"]              # wins over include
//! rooms = ["studio-*"]                # only these rooms (room-less events still pass); default all
//! redact = ["subject"]                # fields removed from the body's `data`
//! [plugins.config.add]                # fields added at the top of every body
//! source = "eu-1"
//! [[plugins.config.routes]]           # which endpoints; the first route whose events match wins
//! events = ["room.*"]
//! endpoints = ["crm"]
//! ```
//!
//! With an empty config every event goes as is to every endpoint whose own filter matches —
//! the same as no plugin — so it is safe to load and then tighten. An event no route matches
//! goes to all of its endpoints; a route naming none of an event's endpoints drops it. Bodies
//! are only rewritten when `redact` or `add` ask for it.

use serde::Deserialize;
use serde_json::{Map, Value};
use switchboard_plugin_sdk::{Config, Plugin, WebhookDecision, WebhookEvent, glob};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    redact: Vec<String>,
    #[serde(default)]
    add: Map<String, Value>,
    #[serde(default)]
    routes: Vec<Route>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    events: Vec<String>,
    endpoints: Vec<String>,
}

pub struct WebhookFilter {
    settings: Settings,
}

fn any(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| glob::matches(p, value))
}

impl WebhookFilter {
    fn from_settings(settings: Settings) -> Result<Self, String> {
        for (key, list) in [
            ("include", &settings.include),
            ("exclude", &settings.exclude),
            ("rooms", &settings.rooms),
            ("redact", &settings.redact),
        ] {
            if let Some(i) = list.iter().position(|s| s.is_empty()) {
                return Err(format!("{key}[{i}]: must not be empty"));
            }
        }
        for (i, route) in settings.routes.iter().enumerate() {
            if route.events.is_empty() {
                return Err(format!("routes[{i}].events: name at least one event type"));
            }
            if route.endpoints.is_empty() {
                return Err(format!(
                    "routes[{i}].endpoints: name at least one endpoint (use exclude to drop events)"
                ));
            }
        }
        if settings.add.contains_key("type") || settings.add.contains_key("timestamp") {
            return Err(
                "add: `type` and `timestamp` belong to the event and cannot be replaced".into(),
            );
        }
        Ok(WebhookFilter { settings })
    }

    fn wanted(&self, event: &WebhookEvent) -> bool {
        let s = &self.settings;
        (s.include.is_empty() || any(&s.include, &event.event_type))
            && !any(&s.exclude, &event.event_type)
            && (s.rooms.is_empty() || event.room.as_deref().is_none_or(|r| any(&s.rooms, r)))
    }

    /// The body with `redact` and `add` applied, or `None` to send it as is.
    fn reshape(&self, body: &str) -> Option<String> {
        let s = &self.settings;
        if s.redact.is_empty() && s.add.is_empty() {
            return None;
        }
        let mut doc: Map<String, Value> = serde_json::from_str(body).ok()?;
        if let Some(Value::Object(data)) = doc.get_mut("data") {
            for field in &s.redact {
                data.remove(field);
            }
        }
        for (k, v) in &s.add {
            doc.insert(k.clone(), v.clone());
        }
        Some(Value::Object(doc).to_string())
    }

    pub fn decide(&self, event: &WebhookEvent) -> WebhookDecision {
        if !self.wanted(event) {
            return WebhookDecision::drop_event();
        }
        let decision = match self.reshape(&event.body) {
            Some(body) => WebhookDecision::reshaped(body),
            None => WebhookDecision::as_is(),
        };
        let route = self
            .settings
            .routes
            .iter()
            .find(|r| any(&r.events, &event.event_type));
        match route {
            None => decision,
            Some(route) => {
                let to: Vec<&String> = route
                    .endpoints
                    .iter()
                    .filter(|n| event.endpoints.contains(n))
                    .collect();
                if to.is_empty() {
                    WebhookDecision::drop_event()
                } else {
                    decision.to(to.into_iter().cloned())
                }
            }
        }
    }
}

impl Plugin for WebhookFilter {
    fn new(config: Config) -> Result<Self, String> {
        Self::from_settings(config.parse()?)
    }

    fn route_webhook(&self, event: &WebhookEvent) -> WebhookDecision {
        self.decide(event)
    }
}

switchboard_plugin_sdk::register!(WebhookFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::Delivery;

    fn filter(json: Value) -> Result<WebhookFilter, String> {
        WebhookFilter::new(Config::from_json(json.to_string()))
    }

    fn event(event_type: &str, room: Option<&str>) -> WebhookEvent {
        WebhookEvent {
            id: "evt_1".into(),
            event_type: event_type.into(),
            room: room.map(Into::into),
            timestamp_ms: 1,
            body: serde_json::json!({
                "type": event_type, "timestamp": "t",
                "data": { "id": "evt_1", "subject": "alice", "session": "s" },
            })
            .to_string(),
            endpoints: vec!["crm".into(), "audit".into()],
        }
    }

    #[test]
    fn empty_config_passes_everything_as_is() {
        let f = filter(serde_json::json!({})).unwrap();
        assert_eq!(
            f.decide(&event("room.started", Some("a"))),
            WebhookDecision::as_is()
        );
    }

    #[test]
    fn filters_types_and_rooms() {
        let f = filter(serde_json::json!({
            "include": ["room.*", "publish.*", "plugin.*"], "exclude": ["publish.ended"],
            "rooms": ["studio-*"],
        }))
        .unwrap();
        let dropped = |t, r| f.decide(&event(t, r)).delivery == Delivery::Drop;
        assert!(!dropped("room.started", Some("studio-1")));
        assert!(dropped("room.started", Some("lobby")));
        assert!(dropped("publish.ended", Some("studio-1")));
        assert!(dropped("play.started", Some("studio-1")));
        assert!(
            !dropped("plugin.loaded", None),
            "room-less events pass the room filter"
        );
    }

    #[test]
    fn reshapes_and_routes() {
        let f = filter(serde_json::json!({
            "redact": ["subject"], "add": { "source": "eu-1" },
            "routes": [
                { "events": ["room.*"], "endpoints": ["crm"] },
                { "events": ["play.*"], "endpoints": ["elsewhere"] },
            ],
        }))
        .unwrap();
        let d = f.decide(&event("room.started", Some("a")));
        assert_eq!(d.endpoints, Some(vec!["crm".to_string()]));
        let Delivery::Reshaped(body) = d.delivery else {
            panic!("reshaped expected");
        };
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["source"], "eu-1");
        assert!(body["data"].get("subject").is_none());
        assert_eq!(body["data"]["session"], "s");
        // No route matches: every endpoint.
        assert_eq!(
            f.decide(&event("publish.started", Some("a"))).endpoints,
            None
        );
        // A route naming none of the event's endpoints drops it.
        assert_eq!(
            f.decide(&event("play.started", Some("a"))).delivery,
            Delivery::Drop
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        let err = |j| filter(j).err().unwrap();
        assert!(
            err(serde_json::json!({ "routes": [{ "events": ["x"], "endpoints": [] }] }))
                .starts_with("routes[0].endpoints")
        );
        assert!(err(serde_json::json!({ "include": [""] })).starts_with("include[0]"));
        assert!(err(serde_json::json!({ "add": { "type": "x" } })).starts_with("add:"));
        assert!(err(serde_json::json!({ "nope": 1 })).contains("unknown field"));
    }
}
