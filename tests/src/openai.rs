//! Handlers of the OpenAI-compatible surface: `POST /v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, and the informational `GET /v1/models`, `/version`, `/health`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::time::sleep;

use crate::control::{Knobs, SimControl};
use crate::errors::{bad_request, error_response, model_not_found, status_or_500};
use crate::generation::{unix_now, Generation};
use crate::queue::admit;
use crate::request::{parse, Endpoint, LlmRequest};
use crate::sse::event_stream;

type Ctl = State<Arc<SimControl>>;

/// `POST /v1/chat/completions`
pub(crate) async fn chat_completions(State(control): Ctl, body: Bytes) -> Response {
    generate(control, Endpoint::Chat, &body).await
}

/// `POST /v1/completions`
pub(crate) async fn completions(State(control): Ctl, body: Bytes) -> Response {
    generate(control, Endpoint::Completion, &body).await
}

/// The fault knobs and validation every LLM request goes through, in this order: forced status,
/// hang, body validation (400), model lookup (404), a full queue (503, as vLLM's
/// `--max-num-queued-reqs`), simulated failure (500).
async fn accept(
    control: &SimControl,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<(LlmRequest, Knobs), Response> {
    control.record_request(body);
    let knobs = control.knobs();
    if let Some(code) = knobs.status {
        control.record_failure();
        let mut resp = error_response(
            status_or_500(code),
            format!("Simulated status {code} from {}.", control.name()),
        );
        if let Some(secs) = knobs.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        return Err(resp);
    }
    if knobs.hang {
        return Err(std::future::pending::<Response>().await);
    }
    let request = parse(endpoint, body).map_err(|message| {
        control.record_failure();
        bad_request(message)
    })?;
    if !control.models().contains(&request.model) {
        control.record_failure();
        return Err(model_not_found(&request.model));
    }
    if control.queue_full() {
        control.record_failure();
        control.record_queue_full();
        return Err(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is at capacity: too many requests are queued. Retry later.",
        ));
    }
    if control.roll_failure(knobs.fail_rate) {
        control.record_failure();
        return Err(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Simulated engine failure in {}.", control.name()),
        ));
    }
    Ok((request, knobs))
}

async fn generate(control: Arc<SimControl>, endpoint: Endpoint, body: &[u8]) -> Response {
    let (request, knobs) = match accept(&control, endpoint, body).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let generation = Generation::plan(&request, &knobs);
    if request.stream {
        let body = Body::from_stream(event_stream(control, generation));
        return (
            [
                (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response();
    }
    let slot = admit(&control).await;
    let cached = control.prefill(&generation.blocks, generation.prompt_tokens);
    sleep(generation.duration(cached, control.running())).await;
    drop(slot);
    control.record_success(generation.prompt_tokens, generation.n);
    Json(generation.response()).into_response()
}

/// `POST /v1/embeddings`: one deterministic 8-dimensional unit vector per input, after ttft.
pub(crate) async fn embeddings(State(control): Ctl, body: Bytes) -> Response {
    let (request, knobs) = match accept(&control, Endpoint::Embedding, &body).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let slot = admit(&control).await;
    sleep(knobs.ttft.div_f64(knobs.speed)).await;
    drop(slot);
    control.record_success(request.prompt_tokens, 0);
    let data: Vec<Value> = request
        .inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": embedding_of(text)})
        })
        .collect();
    Json(json!({
        "id": format!("embd-{:032x}", fastrand::u128(..)),
        "object": "list",
        "created": unix_now(),
        "model": request.model,
        "data": data,
        "usage": {
            "prompt_tokens": request.prompt_tokens,
            "total_tokens": request.prompt_tokens,
            "completion_tokens": 0,
            "prompt_tokens_details": null,
        },
    }))
    .into_response()
}

/// A unit vector of 8 floats that depends only on `text`.
pub(crate) fn embedding_of(text: &str) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(crate::fnv1a64(text.as_bytes()));
    let raw: Vec<f32> = (0..8).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > f32::EPSILON {
        raw.iter().map(|x| x / norm).collect()
    } else {
        raw
    }
}

/// `GET /v1/models`
pub(crate) async fn models(State(control): Ctl) -> Json<Value> {
    control.record_models_request();
    let created = unix_now();
    let data: Vec<Value> = control
        .models()
        .iter()
        .map(|m| {
            json!({
                "id": m,
                "object": "model",
                "created": created,
                "owned_by": control.owned_by(),
                "root": m,
                "parent": null,
                "max_model_len": 4096,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /version`: only a vLLM worker has it.
pub(crate) async fn version(State(control): Ctl) -> Response {
    if control.owned_by() == "vllm" {
        Json(json!({"version": "0.11.0"})).into_response()
    } else {
        not_found().await
    }
}

/// `GET /health`: empty body with the `health_status` knob.
pub(crate) async fn health(State(control): Ctl) -> StatusCode {
    status_or_500(control.knobs().health_status)
}

/// Unknown paths answer like FastAPI: `404 {"detail":"Not Found"}`.
pub(crate) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response()
}
