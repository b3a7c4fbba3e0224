//! The HTTP routes of a simulated worker, and the `x-sim-name` tag on every response.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, map_response_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::control::SimControl;
use crate::{admin, metrics, openai};

/// Largest request body accepted (vLLM itself has no small limit; gateways forward up to 16 MiB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Name of the identity header on every response.
pub const SIM_NAME_HEADER: &str = "x-sim-name";

/// All routes of one simulated worker.
pub(crate) fn router(control: Arc<SimControl>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/version", get(openai::version))
        .route("/health", get(openai::health))
        .route("/metrics", get(metrics::metrics))
        .route("/sim/stats", get(admin::stats))
        .route("/sim/config", post(admin::config))
        .route("/sim/die", post(admin::die))
        .fallback(openai::not_found)
        .layer(from_fn_with_state(Arc::clone(&control), check_api_key))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(map_response_with_state(Arc::clone(&control), tag_name))
        .with_state(control)
}

/// vLLM's `--api-key` check: only `/v1/*` is guarded, and the answer is its 401 body. The
/// request's `traceparent` is noted on the way (tests read what the gateway propagated).
async fn check_api_key(
    State(control): State<Arc<SimControl>>,
    request: Request,
    next: Next,
) -> Response {
    // Only what a client sent (POST): the gateway's own probes (`GET /v1/models`) do not count.
    if request.method() == axum::http::Method::POST && request.uri().path().starts_with("/v1/") {
        let tp = request.headers().get("traceparent");
        control.note_traceparent(tp.and_then(|v| v.to_str().ok()));
    }
    if let Some(key) = control.api_key() {
        let given = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if request.uri().path().starts_with("/v1") && given != Some(&format!("Bearer {key}")) {
            let body = axum::Json(serde_json::json!({"error": "Unauthorized"}));
            return (StatusCode::UNAUTHORIZED, body).into_response();
        }
    }
    next.run(request).await
}

async fn tag_name(State(control): State<Arc<SimControl>>, mut response: Response) -> Response {
    if let Ok(value) = HeaderValue::from_str(control.name()) {
        response.headers_mut().insert(SIM_NAME_HEADER, value);
    }
    response
}
