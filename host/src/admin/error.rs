//! The admin API's error body: `{"error": "..."}` with a status code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A JSON error response.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
