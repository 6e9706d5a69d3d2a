//! HTTP errors: a status code and a short plain-text message, never a stack trace.

use crate::auth::Denied;
use crate::sfu::SfuError;
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
        let status = match &e {
            SfuError::RoomNotFound | SfuError::SessionNotFound => StatusCode::NOT_FOUND,
            SfuError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            SfuError::BadOffer(_) | SfuError::BadFragment(_) => StatusCode::BAD_REQUEST,
            SfuError::Conflict(_) => StatusCode::CONFLICT,
            SfuError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            SfuError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
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
