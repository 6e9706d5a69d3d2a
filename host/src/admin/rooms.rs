//! Rooms, as operators and lobby pages see them:
//!
//! - `GET /admin/rooms`: every room with its publishers, viewers, tracks and bitrates.
//! - `GET /admin/rooms/{room}`: one room with its sessions (subject, kind, state, connected
//!   since, packets and bytes).
//! - `DELETE /admin/rooms/{room}`: close it — every session ends with reason `room-closed`
//!   and its events; answered once they have ended (or after [`CLOSE_WAIT`]).
//! - `GET /api/rooms` (public, off by default): live rooms and their viewer counts, without
//!   the rooms `public_api.hidden_rooms` names.
//!
//! Everything is read from the SFU's own counters at request time; nothing here touches the
//! media path.

use super::AdminState;
use super::error::{ErrorBody, error};
use super::sessions::{SessionInfo, not_found, rfc3339};
use crate::config::PublicApiConfig;
use crate::sfu::Sfu;
use crate::sfu::room::Room;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use utoipa::ToSchema;

/// How long closing a room waits for its sessions to finish ending before it answers.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The room routes (state applied by the admin router).
pub fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/admin/rooms", get(list_rooms))
        .route("/admin/rooms/{room}", get(get_room).delete(close_room))
}

/// Every room.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<RoomSummary>,
}

/// A room at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomSummary {
    pub name: String,
    /// Publishers live or being set up (one at most, or two for a moment while one replaces
    /// the other).
    pub publishers: u32,
    /// Viewers live or being set up.
    pub viewers: u32,
    /// What viewers receive now: one stream per media kind that has a publisher.
    pub tracks: Vec<TrackInfo>,
    /// The tracks' bitrates added up, bits per second.
    pub bitrate_bps: u64,
}

/// The stream of one media kind that viewers receive.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackInfo {
    pub kind: MediaKind,
    /// The publisher's SSRC of the stream forwarded now.
    pub ssrc: u32,
    /// Its simulcast layer (RID), if the publisher sends simulcast.
    #[schema(nullable)]
    pub rid: Option<String>,
    /// Its measured bitrate, bits per second.
    pub bitrate_bps: u64,
    /// Packets received from the publisher for this kind (every layer), since the room began.
    pub packets_in: u64,
    /// Packets handed to viewers (each viewer's copy counted), since the room began.
    pub packets_forwarded: u64,
    /// Keyframe requests sent to the publisher.
    pub keyframe_requests: u64,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

/// One room with its sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomDetail {
    #[serde(flatten)]
    pub room: RoomSummary,
    /// Live sessions, oldest first.
    pub sessions: Vec<SessionInfo>,
}

/// What closing a room did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClosedRoom {
    pub room: String,
    /// Sessions told to end (reason `room-closed`).
    pub sessions_ended: usize,
}

fn summary(room: &Room) -> RoomSummary {
    let counts = room.counts();
    let mut tracks = Vec::new();
    for (kind, hub) in [
        (MediaKind::Audio, &room.audio),
        (MediaKind::Video, &room.video),
    ] {
        if let Some(stream) = hub.current_stream() {
            tracks.push(TrackInfo {
                kind,
                ssrc: stream.ssrc,
                rid: stream.rid,
                bitrate_bps: stream.rate.saturating_mul(8),
                packets_in: hub.stats.received_packets.load(Relaxed),
                packets_forwarded: hub.stats.forwarded_packets.load(Relaxed),
                keyframe_requests: hub.stats.keyframe_requests.load(Relaxed),
            });
        }
    }
    RoomSummary {
        name: room.name.clone(),
        publishers: counts.publishers,
        viewers: counts.viewers,
        bitrate_bps: tracks.iter().map(|t| t.bitrate_bps).sum(),
        tracks,
    }
}

/// Every room, by name.
#[utoipa::path(
    get,
    path = "/admin/rooms",
    tag = "rooms",
    responses(
        (status = 200, description = "Every room, by name", body = RoomList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_rooms(State(state): State<AdminState>) -> Json<RoomList> {
    let rooms = state.sfu.rooms().iter().map(|r| summary(r)).collect();
    Json(RoomList { rooms })
}

/// One room with its sessions.
#[utoipa::path(
    get,
    path = "/admin/rooms/{room}",
    tag = "rooms",
    params(("room" = String, Path, description = "Room name", example = "lobby")),
    responses(
        (status = 200, description = "The room and its live sessions", body = RoomDetail),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such room", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get_room(
    State(state): State<AdminState>,
    room: Result<Path<String>, PathRejection>,
) -> Response {
    let Some(room) = room.ok().and_then(|Path(name)| state.sfu.room(&name)) else {
        return error(StatusCode::NOT_FOUND, "no such room");
    };
    let sessions = state
        .sfu
        .sessions_in(&room.name)
        .iter()
        .map(|s| SessionInfo::of(s))
        .collect();
    Json(RoomDetail {
        room: summary(&room),
        sessions,
    })
    .into_response()
}

/// Close a room: every session ends with reason `room-closed` (clients see their connection
/// close; each session's `*.ended` and `session.ended` events follow, then `room.finished`).
/// Answered once they have ended, or after 5 s.
#[utoipa::path(
    delete,
    path = "/admin/rooms/{room}",
    tag = "rooms",
    params(("room" = String, Path, description = "Room name", example = "closing")),
    responses(
        (status = 200, description = "Every session of the room ended", body = ClosedRoom),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such room", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn close_room(
    State(state): State<AdminState>,
    room: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(room)) = room else {
        return error(StatusCode::NOT_FOUND, "no such room");
    };
    let ended = match state.sfu.close_room(&room) {
        Ok(n) => n,
        Err(e) => return not_found(e),
    };
    tracing::info!(%room, sessions = ended, "room closed by an operator");
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    while !state.sfu.sessions_in(&room).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Json(ClosedRoom {
        room,
        sessions_ended: ended,
    })
    .into_response()
}

/// The public room list.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicRoomList {
    pub rooms: Vec<PublicRoom>,
}

/// A live room (one with a publisher), as lobby pages see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicRoom {
    pub name: String,
    /// Viewers now.
    pub viewers: u32,
    /// When its publisher's connection came up (RFC 3339); null while it is connecting.
    #[schema(nullable)]
    pub live_since: Option<String>,
}

/// What `GET /api/rooms` reads.
#[derive(Clone)]
pub struct PublicState {
    sfu: Arc<Sfu>,
    hidden: Arc<[String]>,
}

/// `GET /api/rooms`, with CORS for `cors_origins` (GET only, no credentials).
pub fn public_routes(
    sfu: Arc<Sfu>,
    config: &PublicApiConfig,
    cors_origins: &[String],
) -> axum::Router {
    let router = axum::Router::new()
        .route("/api/rooms", get(public_rooms))
        .with_state(PublicState {
            sfu,
            hidden: config.hidden_rooms.clone().into(),
        });
    if cors_origins.is_empty() {
        return router;
    }
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = if cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    router.layer(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET]),
    )
}

/// Live rooms with their viewer counts, for lobby pages. Off unless `public_api.enabled`;
/// rooms matching `public_api.hidden_rooms` are never listed.
#[utoipa::path(
    get,
    path = "/api/rooms",
    tag = "public",
    responses(
        (status = 200, description = "Live rooms, by name", body = PublicRoomList),
        (status = 404, description = "The public API is disabled (`public_api.enabled = false`)"),
    ),
    security(())
)]
pub async fn public_rooms(State(state): State<PublicState>) -> Response {
    let mut rooms = Vec::new();
    for room in state.sfu.rooms() {
        if state.hidden.iter().any(|p| glob(p, &room.name)) {
            continue;
        }
        let Some(publisher) = room.publisher() else {
            continue;
        };
        let live_since = state
            .sfu
            .session(&room.name, &publisher.session)
            .ok()
            .and_then(|s| s.connected_at.get().map(|t| rfc3339(*t)));
        rooms.push(PublicRoom {
            name: room.name.clone(),
            viewers: room.counts().viewers,
            live_since,
        });
    }
    let mut response = Json(PublicRoomList { rooms }).into_response();
    // Lobby pages poll; a second or two of staleness is fine and spares the server.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=2"),
    );
    response
}

/// `*` matches any run of characters (none included); everything else matches itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: an exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_patterns() {
        assert!(glob("private-*", "private-1"));
        assert!(glob("private-*", "private-"));
        assert!(!glob("private-*", "public-1"));
        assert!(glob("*-test", "room-test"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(glob("*", "anything"));
        assert!(!glob("ab*ba", "aba"), "the two ends may not overlap");
    }
}
