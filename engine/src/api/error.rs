//! Errors in OpenAI's shape, as axum responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client mistake: 400 with the offending parameter.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<&'static str>,
    },
    #[error("The model `{0}` does not exist.")]
    ModelNotFound(String),
    #[error("the model is still loading")]
    Loading,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Loading => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body (also used for errors inside an SSE stream).
    pub fn body(&self) -> serde_json::Value {
        let (kind, code, param) = match self {
            ApiError::BadRequest { param, .. } => {
                ("invalid_request_error", "invalid_request", *param)
            }
            ApiError::ModelNotFound(_) => {
                ("invalid_request_error", "model_not_found", Some("model"))
            }
            ApiError::NotFound(_) => ("invalid_request_error", "not_found", None),
            ApiError::Loading => ("service_unavailable_error", "model_loading", None),
            ApiError::Internal(_) => ("server_error", "internal_error", None),
        };
        json!({ "error": { "message": self.to_string(), "type": kind, "param": param, "code": code } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::bad(r.body_text(), None)
    }
}
