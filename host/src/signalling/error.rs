//! HTTP errors: a status code and a short plain-text message, never a stack trace.

use crate::auth::Denied;
use crate::sfu::{Fault, Refusal, SfuError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.message;
        body.push('\n');
        (
            self.status,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            body,
        )
            .into_response()
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
            Fault::Server => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match e.fault() {
            Fault::Server => tracing::error!(error = %e, "request failed"),
            Fault::Capacity => tracing::warn!(error = %e, "request refused for capacity"),
            _ => {}
        }
        ApiError::new(status, e.to_string())
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
