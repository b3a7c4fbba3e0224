//! OpenAI response shapes for chat and text completions, streamed (SSE) or whole.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::generate::{Event, Generation, TokenUsage};

/// Chat completions or text completions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    Chat,
    Completion,
}

/// Identity of one response.
#[derive(Clone, Debug)]
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Meta {
    pub fn new(shape: Shape, model: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let prefix = match shape {
            Shape::Chat => "chatcmpl",
            Shape::Completion => "cmpl",
        };
        Self {
            id: format!("{prefix}-{created:x}{:06x}", NEXT.fetch_add(1, Relaxed)),
            created,
            model: model.to_string(),
        }
    }
}

pub fn usage_json(u: TokenUsage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// One streaming chunk. For chat, `role` marks the opening chunk.
fn chunk(shape: Shape, m: &Meta, text: Option<&str>, role: bool, finish: Option<&str>) -> Value {
    match shape {
        Shape::Chat => {
            let mut delta = serde_json::Map::new();
            if role {
                delta.insert("role".into(), json!("assistant"));
            }
            if let Some(t) = text {
                delta.insert("content".into(), json!(t));
            }
            json!({
                "id": m.id, "object": "chat.completion.chunk", "created": m.created, "model": m.model,
                "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
            })
        }
        Shape::Completion => json!({
            "id": m.id, "object": "text_completion", "created": m.created, "model": m.model,
            "choices": [{ "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish }],
        }),
    }
}

fn usage_chunk(shape: Shape, m: &Meta, usage: TokenUsage) -> Value {
    let object = match shape {
        Shape::Chat => "chat.completion.chunk",
        Shape::Completion => "text_completion",
    };
    json!({ "id": m.id, "object": object, "created": m.created, "model": m.model, "choices": [], "usage": usage_json(usage) })
}

fn sse(v: &Value) -> Result<Bytes, Infallible> {
    Ok(Bytes::from(format!("data: {v}\n\n")))
}

/// The whole answer of a non-streaming request.
pub async fn complete(shape: Shape, meta: Meta, mut gen: Generation) -> Result<Response, ApiError> {
    let mut text = String::new();
    while let Some(ev) = gen.next().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            Event::Failed(e) => return Err(ApiError::Internal(format!("generation failed: {e}"))),
            Event::Finished { reason, usage } => {
                let choice = match shape {
                    Shape::Chat => json!({
                        "index": 0, "message": { "role": "assistant", "content": text },
                        "logprobs": null, "finish_reason": reason,
                    }),
                    Shape::Completion => {
                        json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": reason })
                    }
                };
                let object = match shape {
                    Shape::Chat => "chat.completion",
                    Shape::Completion => "text_completion",
                };
                let body = json!({
                    "id": meta.id, "object": object, "created": meta.created, "model": meta.model,
                    "choices": [choice], "usage": usage_json(usage),
                });
                return Ok((StatusCode::OK, Json(body)).into_response());
            }
        }
    }
    Err(ApiError::Internal(
        "the generation ended without a result".into(),
    ))
}

enum Phase {
    Open,
    Tokens,
    Usage(TokenUsage),
    Done,
    End,
}

/// An SSE stream: (chat: a role chunk,) one chunk per token, a chunk with the finish reason,
/// a usage chunk when `include_usage`, then `data: [DONE]`. An engine failure mid-stream is
/// sent as an `{"error":…}` event (the OpenAI SDKs raise it). The [`Generation`] lives in the
/// stream: when the client disconnects the stream is dropped and the generation cancelled.
pub fn stream(shape: Shape, meta: Meta, gen: Generation, include_usage: bool) -> Response {
    let state = (gen, Phase::Open);
    let events = futures_util::stream::unfold(state, move |(mut gen, phase)| {
        let meta = meta.clone();
        async move {
            match phase {
                Phase::Open if shape == Shape::Chat => Some((
                    sse(&chunk(shape, &meta, Some(""), true, None)),
                    (gen, Phase::Tokens),
                )),
                Phase::Open | Phase::Tokens => match gen.next().await {
                    Some(Event::Text(t)) => Some((
                        sse(&chunk(shape, &meta, Some(&t), false, None)),
                        (gen, Phase::Tokens),
                    )),
                    Some(Event::Finished { reason, usage }) => {
                        let next = if include_usage {
                            Phase::Usage(usage)
                        } else {
                            Phase::Done
                        };
                        Some((
                            sse(&chunk(shape, &meta, None, false, Some(&reason))),
                            (gen, next),
                        ))
                    }
                    Some(Event::Failed(e)) => {
                        let err = ApiError::Internal(format!("generation failed: {e}"));
                        Some((sse(&err.body()), (gen, Phase::End)))
                    }
                    None => None,
                },
                Phase::Usage(u) => Some((sse(&usage_chunk(shape, &meta, u)), (gen, Phase::Done))),
                Phase::Done => Some((
                    Ok(Bytes::from_static(b"data: [DONE]\n\n")),
                    (gen, Phase::End),
                )),
                Phase::End => None,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| ApiError::Internal("building the stream".into()).into_response())
}
