//! The WHEP server-sent events extension: a player learns whether the stream is live and how
//! many watch, without polling.
//!
//! The WHEP answer carries `Link: <.../whep/{room}/{session}/sse>;
//! rel="urn:ietf:params:whep:ext:core:server-sent-events"; events="active,inactive,viewercount"`.
//! The player POSTs the JSON list of events it wants there (an empty body means all) and gets
//! `201` with the `Location` of its event stream; a GET on that is `text/event-stream`:
//! - `active` / `inactive`: the room has a publisher / has none (sent at once, then on change);
//! - `viewercount`: `{"viewercount": N}` (sent at once, then on change).
//!
//! The stream follows the room's events (`crate::events`), so nothing here touches media; it
//! ends when the viewer's session ends. A subscriber that falls behind the event bus re-reads
//! the room's state instead of losing it.

use super::{ApiError, AppState};
use crate::events::{Event, EventData};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The link relation of the extension (draft-ietf-wish-whep).
pub const REL: &str = "urn:ietf:params:whep:ext:core:server-sent-events";
/// The events this server sends.
pub const EVENTS: [&str; 3] = ["active", "inactive", "viewercount"];
/// Comment lines keep idle streams open through proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The `Link` value for a viewer session's answer.
pub fn link(public_url: &str, room: &str, session: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "<{public_url}/whep/{room}/{session}/sse>; rel=\"{REL}\"; events=\"{}\"",
        EVENTS.join(",")
    ))
    .ok()
}

/// `POST /whep/{room}/{session}/sse`: subscribe; the body lists the events wanted.
pub async fn subscribe(
    State(state): State<AppState>,
    Path((room, session)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    state.sfu.session(&room, &session)?;
    if !body.is_empty() {
        let wanted: Vec<String> = serde_json::from_slice(&body).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "expected a JSON array of event names",
            )
        })?;
        if let Some(unknown) = wanted.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown event {unknown:?}; this server sends {}",
                    EVENTS.join(", ")
                ),
            ));
        }
    }
    let location = format!("{}/whep/{room}/{session}/sse/stream", state.public_url);
    let mut response = (StatusCode::CREATED, Json(EVENTS)).into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "invalid room or session"))?,
    );
    Ok(response)
}

/// `GET /whep/{room}/{session}/sse/stream`: the event stream itself.
pub async fn stream(
    State(state): State<AppState>,
    Path((room, session)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>, ApiError> {
    state.sfu.session(&room, &session)?;
    let mut events = state.sfu.events().subscribe();
    let sfu = state.sfu.clone();
    let stream = async_stream_of(move |tx| async move {
        let snapshot = |sfu: &crate::sfu::Sfu| {
            let counts = sfu.counts(&room);
            (counts.publishers > 0, counts.viewers)
        };
        let (mut live, mut viewers) = snapshot(&sfu);
        if !tx.send(activity(live)).await || !tx.send(viewer_count(viewers)).await {
            return;
        }
        loop {
            let event: Arc<Event> = match events.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => {
                    // Fell behind the bus: re-read the room rather than guess.
                    let (l, v) = snapshot(&sfu);
                    if l != live && !tx.send(activity(l)).await {
                        return;
                    }
                    if v != viewers && !tx.send(viewer_count(v)).await {
                        return;
                    }
                    (live, viewers) = (l, v);
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            if event.room.as_deref() != Some(room.as_str()) {
                continue;
            }
            if let EventData::PlayEnded { session: ended, .. }
            | EventData::SessionEnded { session: ended, .. } = &event.data
                && *ended == session
            {
                return; // this viewer is gone: so is its stream
            }
            let (l, v) = snapshot(&sfu);
            if l != live {
                live = l;
                if !tx.send(activity(live)).await {
                    return;
                }
            }
            if v != viewers {
                viewers = v;
                if !tx.send(viewer_count(viewers)).await {
                    return;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn activity(live: bool) -> SseEvent {
    SseEvent::default()
        .event(if live { "active" } else { "inactive" })
        .data("{}")
}

fn viewer_count(viewers: u32) -> SseEvent {
    SseEvent::default()
        .event("viewercount")
        .data(serde_json::json!({ "viewercount": viewers }).to_string())
}

/// A stream fed by a task through a small channel; the task ends when the client goes away.
fn async_stream_of<F, Fut>(
    produce: F,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>>
where
    F: FnOnce(Feed) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(Feed(tx)));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

/// The sending end of an event stream.
struct Feed(tokio::sync::mpsc::Sender<SseEvent>);

impl Feed {
    /// False once the client is gone.
    async fn send(&self, event: SseEvent) -> bool {
        self.0.send(event).await.is_ok()
    }
}
