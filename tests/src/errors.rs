//! Error responses in the shape vLLM's OpenAI server uses:
//! `{"error":{"message":…,"type":…,"param":null,"code":<status>}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The `type` vLLM puts in its error objects for a status.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        413 => "RequestEntityTooLargeError",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        501 => "NotImplementedError",
        503 => "ServiceUnavailableError",
        504 => "GatewayTimeoutError",
        s if s >= 500 => "InternalServerError",
        _ => "BadRequestError",
    }
}

/// An OpenAI-style error with the given status.
pub(crate) fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({
        "error": {
            "message": message.into(),
            "type": error_type(status),
            "param": null,
            "code": status.as_u16(),
        }
    });
    (status, Json(body)).into_response()
}

/// 400 Bad Request.
pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    error_response(StatusCode::BAD_REQUEST, message)
}

/// 404 for a model this worker does not serve, worded like vLLM.
pub(crate) fn model_not_found(model: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("The model `{model}` does not exist."),
    )
}

/// A status number as a `StatusCode`; out-of-range numbers become 500.
pub(crate) fn status_or_500(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
