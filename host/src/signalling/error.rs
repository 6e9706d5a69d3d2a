//! HTTP errors: a status code and a short plain-text message, never a stack trace.

use crate::auth::Denied;
use crate::sfu::{Fault, Refusal, SfuError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (seconds), with 429 and 503.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.message;
        body.push('\n');
        let mut response = (
            self.status,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            body,
        )
            .into_response();
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: never tell a client to come back too early.
            let secs = after.as_millis().div_ceil(1000).max(1);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs as u64),
            );
        }
        response
    }
}

impl From<SfuError> for ApiError {
    fn from(e: SfuError) -> Self {
        let status = match e.fault() {
            Fault::NotFound => StatusCode::NOT_FOUND,
            Fault::Precondition => StatusCode::PRECONDITION_FAILED,
            Fault::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Fault::Client => StatusCode::BAD_REQUEST,
            Fault::Conflict => StatusCode::CONFLICT,
            Fault::Capacity => StatusCode::SERVICE_UNAVAILABLE,
            Fault::ClientLimit => StatusCode::TOO_MANY_REQUESTS,
            Fault::Server => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match e.fault() {
            Fault::Server => tracing::error!(error = %e, "request failed"),
            Fault::Capacity => tracing::warn!(error = %e, "request refused for capacity"),
            _ => {}
        }
        let error = ApiError::new(status, e.to_string());
        match e {
            SfuError::ClientLimit { retry_after, .. } => error.with_retry_after(retry_after),
            _ => error,
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        let status = match &d {
            Denied::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
            Denied::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, d.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Denied(d) => d.into(),
            Refusal::Sfu(e) => e.into(),
        }
    }
}
