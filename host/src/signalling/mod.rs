//! Signalling: the HTTP surface (WHIP, WHEP, session resources, health, pages).
//!
//! - `POST /whip/{room}` / `POST /whep/{room}`: SDP offer in, `201 Created` with the answer,
//!   `Location` of the session resource and an `ETag` (RFC 9725).
//! - `PATCH /{whip|whep}/{room}/{session}`: trickle candidates or ICE restart.
//! - `DELETE /{whip|whep}/{room}/{session}`: end the session.
//! - `OPTIONS` on all of them: CORS preflight or capability discovery.
//! - `POST /whep/{room}/{session}/sse`, `GET .../sse/stream`: the WHEP server-sent events
//!   extension (`sse`): live/offline and viewer count for players.
//! - `GET /healthz` and the embedded pages (`/readyz` is `crate::health`'s).
//!
//! Admission (`crate::auth`) is asked before any WebRTC work starts.

pub mod error;
pub mod forwarded;
pub mod host_check;
pub mod listener;
pub mod rate_limit;
pub mod sse;
pub mod tls;

use crate::auth::{Action, AdmitRequest};
use crate::config::Config;
use crate::ice::IceServers;
use crate::sfu::{Patched, Sfu};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
pub use error::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};
use tower_http::cors::{AllowOrigin, CorsLayer};

const SDP: &str = "application/sdp";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// Methods a session resource supports; also what clients look for before trickling.
const ALLOW_METHODS: &str = "OPTIONS, POST, PATCH, DELETE";

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct AppState {
    pub sfu: Arc<Sfu>,
    pub public_url: Arc<str>,
    /// The ICE servers clients are told about, asked per request (minted TURN credentials).
    pub ice: Arc<IceServers>,
    pub request_timeout: Duration,
    pub ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(config: &Config, sfu: Arc<Sfu>, ready: Arc<AtomicBool>) -> Self {
        AppState {
            ice: sfu.ice_servers(),
            sfu,
            public_url: config.http.public_url.trim_end_matches('/').into(),
            request_timeout: Duration::from_secs(config.http.request_timeout_secs),
            ready,
        }
    }
}

/// The whole HTTP application.
pub fn router(config: &Config, state: AppState) -> Router {
    let session_routes = Router::new()
        .route("/whip/{room}", post(whip))
        .route("/whep/{room}", post(whep))
        .route(
            "/whip/{room}/{session}",
            axum::routing::patch(patch_session).delete(delete_session),
        )
        .route(
            "/whep/{room}/{session}",
            axum::routing::patch(patch_session).delete(delete_session),
        )
        .route("/whep/{room}/{session}/sse", post(sse::subscribe))
        .route("/whep/{room}/{session}/sse/stream", get(sse::stream))
        .layer(DefaultBodyLimit::max(config.http.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            Duration::from_secs(config.limits.body_timeout_secs),
        ))
        .layer(axum::middleware::from_fn_with_state(
            rate_limit::ClientRateLimit::new(
                config.limits.requests_per_sec_per_ip,
                config.limits.request_burst_per_ip,
            ),
            rate_limit::limit_requests,
        ))
        .layer(cors_layer(config))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            options_extras,
        ));

    let hosts = Arc::new(host_check::HostCheck::new(
        &config.http.public_url,
        &config.http.allowed_hosts,
    ));
    Router::new()
        .merge(session_routes)
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::web::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            host_check::check_host,
        ))
}

fn cors_layer(config: &Config) -> CorsLayer {
    let origins = &config.http.cors_origins;
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::ETAG,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            HeaderName::from_static("accept-patch"),
            HeaderName::from_static("accept-post"),
        ])
        .max_age(Duration::from_secs(86400))
}

async fn whip(
    state: State<AppState>,
    room: Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    create_session(state, room, peer, headers, body, Action::Publish).await
}

async fn whep(
    state: State<AppState>,
    room: Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    create_session(state, room, peer, headers, body, Action::Play).await
}

async fn create_session(
    State(state): State<AppState>,
    Path(room): Path<String>,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Bytes,
    action: Action,
) -> Result<Response, ApiError> {
    validate_room(&room)?;
    require_content_type(&headers, SDP)?;
    let offer = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "SDP offer is not UTF-8 text"))?;
    if !offer.trim_start().starts_with("v=0") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid SDP offer: must start with v=0",
        ));
    }
    let admit = AdmitRequest {
        counts: Default::default(), // filled in by admission, under the room's lock
        room: room.clone(),
        action,
        credential: bearer(&headers),
        remote_addr: Some(peer),
        replacing: None,
    };
    // Who is it (in parallel with everyone else), then may they, on exact room counts.
    let identity = match state.sfu.gate().authenticate(&admit).await {
        Ok(identity) => identity,
        Err(denied) => return Err(refused(&admit, None, denied.into())),
    };
    let subject = identity.subject.clone();
    let reservation = match state.sfu.admit(admit.clone(), &identity).await {
        Ok(reservation) => reservation,
        Err(refusal) => return Err(refused(&admit, Some(&identity.subject), refusal.into())),
    };

    // Run session set-up in its own task: if the client hangs up mid-request, the session
    // still completes or fails cleanly (giving its place back) instead of leaving a
    // half-built peer connection.
    let sfu = state.sfu.clone();
    let offer = offer.to_owned();
    let task = tokio::spawn(async move { sfu.open(reservation, identity, admit, offer).await });
    let created = tokio::time::timeout(state.request_timeout, task)
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "session set-up timed out"))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("session set-up failed: {e}"),
            )
        })??;

    let kind = match action {
        Action::Publish => "whip",
        Action::Play => "whep",
    };
    let location = format!("{}/{kind}/{room}/{}", state.public_url, created.session_id);
    let mut response = (StatusCode::CREATED, created.answer).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    h.insert(header::LOCATION, header_value(&location)?);
    h.insert(header::ETAG, header_value(&created.etag)?);
    h.insert(
        HeaderName::from_static("accept-patch"),
        HeaderValue::from_static(SDPFRAG),
    );
    for link in state.ice.links_for(&subject, SystemTime::now()) {
        h.append(header::LINK, link);
    }
    if action == Action::Play
        && let Some(link) = sse::link(&state.public_url, &room, &created.session_id)
    {
        h.append(header::LINK, link);
    }
    Ok(response)
}

/// Log a refused admission — one line, never the credential — and pass the error on.
fn refused(admit: &AdmitRequest, subject: Option<&str>, error: ApiError) -> ApiError {
    tracing::info!(
        room = %admit.room,
        action = %admit.action,
        remote = ?admit.remote_addr,
        subject = subject.unwrap_or("-"),
        credential = if admit.credential.is_some() { "present" } else { "absent" },
        status = error.status.as_u16(),
        reason = %error.message,
        "admission refused"
    );
    error
}

async fn patch_session(
    State(state): State<AppState>,
    Path((room, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_content_type(&headers, SDPFRAG)?;
    // Liberal in what we accept: some clients send the tag back as `ETag` instead of `If-Match`.
    let tag = headers
        .get(header::IF_MATCH)
        .or_else(|| headers.get(header::ETAG))
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let outcome = tokio::time::timeout(
        state.request_timeout,
        state.sfu.patch(&room, &session, tag, &body),
    )
    .await
    .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ICE restart timed out"))??;
    Ok(match outcome {
        Patched::Trickled => StatusCode::NO_CONTENT.into_response(),
        Patched::Restarted { fragment, etag } => {
            let mut r = (StatusCode::OK, fragment).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(SDPFRAG));
            r.headers_mut().insert(header::ETAG, header_value(&etag)?);
            r
        }
    })
}

async fn delete_session(
    State(state): State<AppState>,
    Path((room, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.sfu.delete(&room, &session)?;
    Ok((StatusCode::OK, "session ended\n").into_response())
}

/// `OPTIONS` on WHIP/WHEP URLs. The CORS layer answers preflights; this adds what plain
/// capability discovery needs (RFC 9725): `Accept-Post`/`Accept-Patch`, `Allow`, the ICE
/// servers, and the allowed methods some clients check before they trickle. A request that is
/// not a CORS preflight gets `204 No Content`.
async fn options_extras(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() != Method::OPTIONS {
        return next.run(req).await;
    }
    let preflight = req
        .headers()
        .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let segments: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    // Minted TURN credentials go only to whoever the bearer token authenticates.
    let subject = match (&segments[..], preflight) {
        ([kind, room], false) if state.ice.mints_on_options() => {
            let credential = bearer(req.headers());
            let client = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            options_subject(&state, kind, room, credential, client).await
        }
        _ => None,
    };
    let segments = segments.len();
    let mut r = next.run(req).await;
    if !preflight {
        *r.status_mut() = StatusCode::NO_CONTENT;
    }
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    if segments == 2 {
        h.insert(header::ALLOW, HeaderValue::from_static("OPTIONS, POST"));
        h.insert(
            HeaderName::from_static("accept-post"),
            HeaderValue::from_static(SDP),
        );
        for link in state
            .ice
            .links_for_options(subject.as_deref(), SystemTime::now())
        {
            h.append(header::LINK, link);
        }
    } else {
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("OPTIONS, PATCH, DELETE"),
        );
        h.insert(
            HeaderName::from_static("accept-patch"),
            HeaderValue::from_static(SDPFRAG),
        );
    }
    r
}

/// Who an `OPTIONS` on `/{kind}/{room}` authenticates as (its bearer token, the auth
/// plugins), or `None` when it does not.
async fn options_subject(
    state: &AppState,
    kind: &str,
    room: &str,
    credential: Option<String>,
    client: Option<SocketAddr>,
) -> Option<String> {
    let action = match kind {
        "whip" => Action::Publish,
        "whep" => Action::Play,
        _ => return None,
    };
    validate_room(room).ok()?;
    let admit = AdmitRequest {
        counts: Default::default(),
        room: room.to_owned(),
        action,
        credential,
        remote_addr: client,
        replacing: None,
    };
    let identity = state.sfu.gate().authenticate(&admit).await.ok()?;
    Some(identity.subject)
}

fn validate_room(room: &str) -> Result<(), ApiError> {
    let ok = !room.is_empty()
        && room.len() <= 128
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid room name: use 1-128 characters from A-Z a-z 0-9 - _ . ~",
        ))
    }
}

fn require_content_type(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type: {expected}"),
        ))
    }
}

/// The credential from `Authorization: Bearer <token>` (or the raw value for other schemes).
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    (!token.is_empty()).then(|| token.to_owned())
}

fn header_value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "invalid header value"))
}
