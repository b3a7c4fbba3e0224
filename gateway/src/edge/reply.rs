//! JSON replies of the axum services (management API, sessions, control plane, dashboard):
//! errors through the one render function, request bodies parsed with errors naming the field.

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

/// Parse a JSON request body; errors are 400s naming the offending field.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string();
        if field == "." {
            GatewayError::invalid(format!("invalid JSON body: {message}"), None)
        } else {
            GatewayError::invalid(format!("{field}: {message}"), Some(&field))
        }
    })?;
    de.end()
        .map_err(|e| GatewayError::invalid(format!("invalid JSON body: {e}"), None))?;
    Ok(value)
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
