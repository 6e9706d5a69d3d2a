//! The webhook endpoints, as operators see them:
//!
//! - `GET /admin/webhooks`: every `[[webhooks]]` endpoint with its state, queue depth, last
//!   error and parked count, and the outbox totals.
//! - `GET /admin/webhooks/{name}/parked?after=&limit=`: the deliveries set aside for one
//!   endpoint, oldest first, a page at a time.
//! - `POST /admin/webhooks/{name}/replay`: put them back in the queue, in order, and make the
//!   endpoint active again.
//!
//! Without `[[webhooks]]` the list is empty and every named endpoint is 404.

use super::AdminState;
use super::error::{ErrorBody, error};
use crate::events::outbox::{CounterSnapshot, ParkedDelivery};
use crate::events::webhook::EndpointStatus;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The most a page of parked deliveries holds (and its default size).
const MAX_PAGE: usize = 500;

/// The webhook routes (state applied by the admin router).
pub fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/admin/webhooks", get(list_webhooks))
        .route("/admin/webhooks/{name}/parked", get(parked))
        .route("/admin/webhooks/{name}/replay", post(replay))
}

/// Every endpoint, in config order, and the outbox totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub endpoints: Vec<EndpointStatus>,
    /// Null when no `[[webhooks]]` are configured.
    #[schema(nullable)]
    pub outbox: Option<CounterSnapshot>,
}

/// One page of an endpoint's parked deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedPage {
    pub deliveries: Vec<ParkedDelivery>,
    /// Pass as `after` for the next page; null on the last one.
    #[schema(nullable)]
    pub next_after: Option<u64>,
}

/// Which page of parked deliveries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Start after this position (`seq` of the last delivery of the previous page).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many (1 to 500, default 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// What a replay did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Deliveries put back in the queue.
    pub replayed: u64,
}

/// Every webhook endpoint with its state, queue depth, last error and parked deliveries.
#[utoipa::path(
    get,
    path = "/admin/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The endpoints, in config order", body = WebhookList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_webhooks(State(state): State<AdminState>) -> Json<WebhookList> {
    Json(match &state.outbox {
        Some(outbox) => WebhookList {
            endpoints: outbox.endpoints(),
            outbox: Some(outbox.counters()),
        },
        None => WebhookList {
            endpoints: Vec::new(),
            outbox: None,
        },
    })
}

/// The deliveries set aside for one endpoint (parked, or answered `410 Gone`), oldest first.
#[utoipa::path(
    get,
    path = "/admin/webhooks/{name}/parked",
    tag = "webhooks",
    params(("name" = String, Path, description = "The endpoint's `name`"), PageQuery),
    responses(
        (status = 200, description = "One page of parked deliveries", body = ParkedPage),
        (status = 400, description = "Bad paging parameters", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 500, description = "The outbox could not be read", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn parked(
    State(state): State<AdminState>,
    name: Result<Path<String>, PathRejection>,
    page: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let Ok(Path(name)) = name else {
        return error(StatusCode::BAD_REQUEST, "bad endpoint name");
    };
    let page = match page {
        Ok(Query(page)) => page,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let Ok(after) = page.after.map(u64::try_from).transpose() else {
        return error(StatusCode::BAD_REQUEST, "after must not be negative");
    };
    let limit = page.limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("limit must be 1 to {MAX_PAGE}"),
        );
    }
    let Some(outbox) = &state.outbox else {
        return unknown(&name);
    };
    match outbox.parked(&name, after, limit) {
        Ok(Some(deliveries)) => {
            let next_after = (deliveries.len() == limit)
                .then(|| deliveries.last().map(|d| d.seq))
                .flatten();
            Json(ParkedPage {
                deliveries,
                next_after,
            })
            .into_response()
        }
        Ok(None) => unknown(&name),
        Err(e) => {
            tracing::error!(endpoint = %name, error = %e, "cannot read parked deliveries");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the outbox could not be read",
            )
        }
    }
}

/// Put an endpoint's parked deliveries back in its queue, in order, and make it active again
/// (also after `410 Gone`, once the consumer is fixed).
#[utoipa::path(
    post,
    path = "/admin/webhooks/{name}/replay",
    tag = "webhooks",
    params(("name" = String, Path, description = "The endpoint's `name`")),
    responses(
        (status = 200, description = "Replayed", body = Replayed),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn replay(
    State(state): State<AdminState>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(name)) = name else {
        return error(StatusCode::BAD_REQUEST, "bad endpoint name");
    };
    let Some(outbox) = &state.outbox else {
        return unknown(&name);
    };
    match outbox.replay(&name).await {
        Some(replayed) => {
            tracing::info!(endpoint = %name, replayed, "webhook deliveries replayed");
            Json(Replayed { replayed }).into_response()
        }
        None => unknown(&name),
    }
}

fn unknown(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no webhook endpoint named `{name}`"),
    )
}
