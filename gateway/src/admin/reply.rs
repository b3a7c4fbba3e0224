//! JSON replies of the admin service (errors through the one render function).

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiFlavor, GatewayError};

pub fn error(e: &GatewayError) -> Response {
    let (status, headers, body) = e.render(ApiFlavor::OpenAi);
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    for (k, v) in headers {
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

pub async fn not_found(uri: Uri) -> Response {
    error(&GatewayError::NotFound(
        uri.path().chars().take(200).collect(),
    ))
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        error(&self)
    }
}
