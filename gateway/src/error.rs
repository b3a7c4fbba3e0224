//! Errors a client can see, and the one function that turns them into a response body
//! ([`GatewayError::render`]): OpenAI's `{"error":{"message","type","param","code"}}` shape,
//! or Anthropic's `{"type":"error","error":{"type","message"}}` on `/v1/messages`.

use std::time::Duration;

use serde_json::json;

/// Which API family the client speaks (decides the error body's shape).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApiFlavor {
    #[default]
    OpenAi,
    Anthropic,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// The body is not valid JSON or a field has the wrong type.
    #[error("{message}")]
    InvalidJson { message: String },
    /// A required field is missing or a value is out of range.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the path `{0}` does not exist")]
    NotFound(String),
    /// The resource already exists (e.g. adding a worker URL that is in the pool).
    #[error("{0}")]
    Conflict(String),
    #[error("method {method} is not allowed on `{path}`")]
    MethodNotAllowed { method: String, path: String },
    #[error("the model `{0}` does not exist on any worker of this gateway")]
    ModelNotFound(String),
    #[error("the session `{0}` does not exist (or it expired, or it belongs to another API key)")]
    SessionNotFound(String),
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body was not received in time")]
    RequestTimeout,
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    /// Workers exist but the gateway is saturated (its in-flight limit, its queue): back-pressure,
    /// 429 with `Retry-After`. `NoWorker` (503) is for no usable worker at all.
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    NoWorker(String),
    #[error("{0}")]
    UpstreamFailed(String),
    #[error("{0}")]
    UpstreamTimeout(String),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::config::ConfigError> for GatewayError {
    /// An invalid setting sent to the management API: 400 naming the field.
    fn from(e: crate::config::ConfigError) -> Self {
        GatewayError::InvalidRequest {
            message: format!("{}: {}", e.field, e.message),
            param: Some(e.field),
        }
    }
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            GatewayError::InvalidJson { .. } | GatewayError::InvalidRequest { .. } => 400,
            GatewayError::Unauthorized(_) => 401,
            GatewayError::Forbidden(_) => 403,
            GatewayError::NotFound(_)
            | GatewayError::ModelNotFound(_)
            | GatewayError::SessionNotFound(_) => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::Conflict(_) => 409,
            GatewayError::RequestTimeout => 408,
            GatewayError::PayloadTooLarge { .. } => 413,
            GatewayError::RateLimited { .. } | GatewayError::Overloaded(_) => 429,
            GatewayError::UpstreamFailed(_) => 502,
            GatewayError::NoWorker(_) => 503,
            GatewayError::UpstreamTimeout(_) => 504,
            GatewayError::Internal(_) => 500,
        }
    }

    /// OpenAI's `error.type`.
    fn openai_type(&self) -> &'static str {
        match self {
            GatewayError::InvalidJson { .. }
            | GatewayError::InvalidRequest { .. }
            | GatewayError::NotFound(_)
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::Conflict(_)
            | GatewayError::ModelNotFound(_)
            | GatewayError::SessionNotFound(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::RequestTimeout => "invalid_request_error",
            GatewayError::Unauthorized(_) => "authentication_error",
            GatewayError::Forbidden(_) => "permission_error",
            GatewayError::RateLimited { .. } | GatewayError::Overloaded(_) => "rate_limit_error",
            GatewayError::NoWorker(_)
            | GatewayError::UpstreamFailed(_)
            | GatewayError::UpstreamTimeout(_) => "service_unavailable_error",
            GatewayError::Internal(_) => "server_error",
        }
    }

    /// OpenAI's `error.code`.
    fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidJson { .. } => "invalid_json",
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::Unauthorized(_) => "invalid_api_key",
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::Conflict(_) => "conflict",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::SessionNotFound(_) => "session_not_found",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::RequestTimeout => "request_timeout",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::Overloaded(_) => "gateway_overloaded",
            GatewayError::NoWorker(_) => "no_worker_available",
            GatewayError::UpstreamFailed(_) => "upstream_error",
            GatewayError::UpstreamTimeout(_) => "upstream_timeout",
            GatewayError::Internal(_) => "internal_error",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            GatewayError::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    /// Anthropic's `error.type`.
    fn anthropic_type(&self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            502..=504 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// `Retry-After` seconds for responses that carry one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::RateLimited { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            GatewayError::NoWorker(_) | GatewayError::Overloaded(_) => Some(1),
            _ => None,
        }
    }

    /// The single error-to-response function: status, extra headers and JSON body.
    pub fn render(&self, flavor: ApiFlavor) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
        let message = self.to_string();
        let body = match flavor {
            ApiFlavor::OpenAi => json!({
                "error": {
                    "message": message,
                    "type": self.openai_type(),
                    "param": self.param(),
                    "code": self.code(),
                }
            }),
            ApiFlavor::Anthropic => json!({
                "type": "error",
                "error": { "type": self.anthropic_type(), "message": message }
            }),
        };
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(s) = self.retry_after_secs() {
            headers.push(("retry-after", s.to_string()));
        }
        (
            self.status(),
            headers,
            serde_json::to_vec(&body).unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let (status, headers, body) =
            GatewayError::ModelNotFound("gpt-9".into()).render(ApiFlavor::OpenAi);
        assert_eq!(status, 404);
        assert_eq!(headers[0].1, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn anthropic_shape_and_retry_after() {
        let e = GatewayError::RateLimited {
            message: "slow down".into(),
            retry_after: Duration::from_millis(10_200),
        };
        let (status, headers, body) = e.render(ApiFlavor::Anthropic);
        assert_eq!(status, 429);
        assert!(headers.contains(&("retry-after", "11".to_string())));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(GatewayError::PayloadTooLarge { limit: 1 }.status(), 413);
        assert_eq!(GatewayError::NoWorker("x".into()).status(), 503);
        let busy = GatewayError::Overloaded("queue full".into());
        let (status, headers, body) = busy.render(ApiFlavor::OpenAi);
        assert_eq!(status, 429);
        assert!(headers.contains(&("retry-after", "1".to_string())));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "gateway_overloaded");
        let (_, headers, _) = GatewayError::NoWorker("none".into()).render(ApiFlavor::OpenAi);
        assert!(headers.contains(&("retry-after", "1".to_string())));
    }
}
