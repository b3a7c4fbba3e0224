//! The HTTP API: OpenAI routes, `/health`, `/v1/models`, `/metrics`.

pub mod error;
pub mod openai;
pub mod types;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::generate::{Generation, Prompt};
use crate::state::EngineState;
use error::ApiError;
use openai::{Meta, Shape};
use types::{ChatRequest, CompletionRequest};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

pub fn router(state: Arc<EngineState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Parse a JSON body whatever its `Content-Type` (curl's `-d` sends form-urlencoded).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad(
            "the request body is empty; a JSON object is required",
            None,
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}"), None))
}

fn check_model(requested: &Option<String>, served: &str) -> Result<(), ApiError> {
    match requested {
        Some(m) if m != served => Err(ApiError::ModelNotFound(m.clone())),
        _ => Ok(()),
    }
}

async fn health(State(s): State<Arc<EngineState>>) -> Response {
    if s.is_ready() {
        StatusCode::OK.into_response()
    } else {
        ApiError::Loading.into_response()
    }
}

async fn models(State(s): State<Arc<EngineState>>) -> Response {
    let max_len = s.ready().map(|r| r.model.max_seq_len).ok();
    Json(json!({
        "object": "list",
        "data": [{
            "id": s.name, "object": "model", "created": 0, "owned_by": "sagellm-engine",
            "root": s.name, "max_model_len": max_len,
        }],
    }))
    .into_response()
}

async fn chat(State(s): State<Arc<EngineState>>, body: Bytes) -> Result<Response, ApiError> {
    let ready = s.ready()?;
    let req: ChatRequest = parse(&body)?;
    check_model(&req.model, &ready.model.name)?;
    let prompt = types::chat_prompt(&req)?;
    let params = req.sampling.validate(ready.model.max_seq_len)?;
    let gen = Generation::start(ready, prompt, &params).await?;
    let meta = Meta::new(Shape::Chat, &ready.model.name);
    if req.stream {
        let usage = req.stream_options.is_some_and(|o| o.include_usage);
        Ok(openai::stream(Shape::Chat, meta, gen, usage))
    } else {
        openai::complete(Shape::Chat, meta, gen).await
    }
}

async fn completions(State(s): State<Arc<EngineState>>, body: Bytes) -> Result<Response, ApiError> {
    let ready = s.ready()?;
    let req: CompletionRequest = parse(&body)?;
    check_model(&req.model, &ready.model.name)?;
    if req.echo {
        return Err(ApiError::bad("`echo` is not supported", Some("echo")));
    }
    let prompt = types::prompt_text(&req.prompt)?;
    let params = req.sampling.validate(ready.model.max_seq_len)?;
    let gen = Generation::start(ready, Prompt::Text(prompt), &params).await?;
    let meta = Meta::new(Shape::Completion, &ready.model.name);
    if req.stream {
        let usage = req.stream_options.is_some_and(|o| o.include_usage);
        Ok(openai::stream(Shape::Completion, meta, gen, usage))
    } else {
        openai::complete(Shape::Completion, meta, gen).await
    }
}

async fn metrics(State(s): State<Arc<EngineState>>) -> Response {
    let snapshot = s
        .ready()
        .map(|r| r.inflight.snapshot())
        .unwrap_or(crate::inflight::Snapshot {
            running: 0,
            waiting: 0,
            kv_cache_usage: 0.0,
        });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(snapshot),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("the path `{}` does not exist", uri.path()))
}
