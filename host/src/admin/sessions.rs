//! One session as operators see it, and kicking it:
//!
//! - `GET /admin/rooms/{room}/sessions/{session}`: the session ([`SessionInfo`]).
//! - `DELETE /admin/rooms/{room}/sessions/{session}`: end it now (reason `kicked`, with its
//!   `*.ended` and `session.ended` events), like the client's own DELETE.
//!
//! 404 names whether the room or the session is unknown.

use super::AdminState;
use super::error::{ErrorBody, error};
use crate::auth::Action;
use crate::sfu::SfuError;
use crate::sfu::session::Session;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use utoipa::ToSchema;
use webrtc::peer_connection::RTCPeerConnectionState;

/// The session routes (state applied by the admin router).
pub fn routes() -> axum::Router<AdminState> {
    axum::Router::new().route(
        "/admin/rooms/{room}/sessions/{session}",
        get(get_session).delete(kick),
    )
}

/// A session: who, what, since when, and what it moved.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    /// The id in the session's resource URL (`/whip/{room}/{id}`, `/whep/{room}/{id}`).
    pub id: String,
    pub kind: SessionKind,
    /// Who the auth plugin said it is (`anonymous` without one).
    pub subject: String,
    pub state: SessionState,
    /// The client's IP address.
    #[schema(nullable)]
    pub client: Option<String>,
    /// When its offer was accepted (RFC 3339).
    pub created_at: String,
    /// When its connection first came up (RFC 3339); null until then.
    #[schema(nullable)]
    pub connected_since: Option<String>,
    /// RTP packets received from this publisher, or sent to this viewer.
    pub packets: u64,
    /// RTP payload bytes of those packets.
    pub bytes: u64,
    /// Packets dropped: a publisher's over its bitrate cap, a viewer's it could not take.
    pub dropped: u64,
}

/// What a session does in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// Publishes over WHIP.
    Publisher,
    /// Plays over WHEP.
    Viewer,
}

impl From<Action> for SessionKind {
    fn from(action: Action) -> Self {
        match action {
            Action::Publish => SessionKind::Publisher,
            Action::Play => SessionKind::Viewer,
        }
    }
}

/// Its connection's state; `ending` once it was told to end (teardown in progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
    Ending,
}

/// Sent back when a session was kicked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Kicked {
    pub room: String,
    pub session: String,
}

impl SessionInfo {
    pub fn of(session: &Session) -> Self {
        let state = if session.is_ending() {
            SessionState::Ending
        } else {
            match *session.states.connection.borrow() {
                RTCPeerConnectionState::Connecting => SessionState::Connecting,
                RTCPeerConnectionState::Connected => SessionState::Connected,
                RTCPeerConnectionState::Disconnected => SessionState::Disconnected,
                RTCPeerConnectionState::Failed => SessionState::Failed,
                RTCPeerConnectionState::Closed => SessionState::Closed,
                _ => SessionState::New,
            }
        };
        let media = &session.states.media;
        let created = SystemTime::now()
            .checked_sub(session.created_at.elapsed())
            .unwrap_or(UNIX_EPOCH);
        SessionInfo {
            id: session.id.clone(),
            kind: session.action.into(),
            subject: session.identity.subject.clone(),
            state,
            client: session.admit.remote_addr.map(|a| a.ip().to_string()),
            created_at: rfc3339(created),
            connected_since: session.connected_at.get().map(|t| rfc3339(*t)),
            packets: media.packets.load(Relaxed),
            bytes: media.bytes.load(Relaxed),
            dropped: media.dropped.load(Relaxed),
        }
    }
}

/// `2026-12-01T20:26:10.344Z`.
pub(super) fn rfc3339(at: SystemTime) -> String {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    crate::events::rfc3339(ms)
}

/// 404 with which of the two is unknown.
pub(super) fn not_found(e: SfuError) -> Response {
    match e {
        SfuError::RoomNotFound => error(StatusCode::NOT_FOUND, "no such room"),
        SfuError::SessionNotFound => error(StatusCode::NOT_FOUND, "no such session in this room"),
        other => error(StatusCode::NOT_FOUND, &other.to_string()),
    }
}

/// One session.
#[utoipa::path(
    get,
    path = "/admin/rooms/{room}/sessions/{session}",
    tag = "sessions",
    params(
        ("room" = String, Path, description = "Room name", example = "lobby"),
        ("session" = String, Path, description = "Session id"),
    ),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such room or session", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get_session(
    State(state): State<AdminState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Ok(Path((room, id))) = path else {
        return error(StatusCode::NOT_FOUND, "no such room");
    };
    match state.sfu.session(&room, &id) {
        Ok(session) => Json(SessionInfo::of(&session)).into_response(),
        Err(e) => not_found(e),
    }
}

/// End one session now (reason `kicked`). Its client sees the connection close; its
/// `publish.ended`/`play.ended` and `session.ended` events follow.
#[utoipa::path(
    delete,
    path = "/admin/rooms/{room}/sessions/{session}",
    tag = "sessions",
    params(
        ("room" = String, Path, description = "Room name", example = "lobby"),
        ("session" = String, Path, description = "Session id"),
    ),
    responses(
        (status = 200, description = "The session is ending", body = Kicked),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such room or session", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn kick(
    State(state): State<AdminState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Ok(Path((room, id))) = path else {
        return error(StatusCode::NOT_FOUND, "no such room");
    };
    match state.sfu.kick(&room, &id) {
        Ok(()) => {
            tracing::info!(%room, session = %id, "session kicked by an operator");
            Json(Kicked { room, session: id }).into_response()
        }
        Err(e) => not_found(e),
    }
}
