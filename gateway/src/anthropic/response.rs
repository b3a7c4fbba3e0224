//! The worker's non-streaming answers in Anthropic's shapes: a chat completion becomes a
//! `message` ([`JsonTranslator`]); an error body becomes `{"type":"error",…}` with the same
//! status ([`ErrorTranslator`]). Both buffer the whole body and answer on `finish()`.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::edge::translate::ResponseTranslator;

/// Largest worker body the JSON translator buffers; beyond it the client gets an `api_error`.
pub const MAX_BODY: usize = 16 << 20;

/// Most of an error body kept for its message (error bodies are small; this bounds garbage).
const MAX_ERROR_BODY: usize = 64 << 10;

/// Longest message taken from an error body that is not JSON.
const MAX_ERROR_MESSAGE: usize = 1000;

/// The parts of a chat completion the message is made of (everything lenient: a field of an
/// unexpected shape reads as absent rather than failing the whole answer).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Completion {
    pub id: Option<String>,
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Choice {
    message: Option<ChoiceMessage>,
    /// Streams: the chunk's piece of the text.
    pub delta: Option<ChoiceMessage>,
    pub finish_reason: Option<String>,
    /// vLLM: the matched stop string (a string), a stop token id (a number), or null.
    pub stop_reason: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ChoiceMessage {
    pub content: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
pub(super) struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

impl Choice {
    /// The matched stop string, when the worker reported one.
    pub fn matched_stop(&self) -> Option<&str> {
        self.stop_reason.as_ref().and_then(Value::as_str)
    }
}

/// Anthropic's error body.
pub(super) fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// A worker's chat completion → Anthropic's `message` object.
pub struct JsonTranslator {
    model: String,
    body: Vec<u8>,
    too_large: bool,
}

impl JsonTranslator {
    /// `model`: the model the client asked for (echoed back).
    pub fn new(model: String) -> Self {
        Self {
            model,
            body: Vec::new(),
            too_large: false,
        }
    }

    fn message(&self, c: &Completion) -> Value {
        let choice = c.choices.first();
        let text = choice
            .and_then(|ch| ch.message.as_ref())
            .and_then(|m| m.content.as_deref())
            .unwrap_or("");
        let (stop_reason, stop_sequence) = super::stop_reason(
            choice.and_then(|ch| ch.finish_reason.as_deref()),
            choice.and_then(Choice::matched_stop),
        );
        let usage = c.usage.unwrap_or_default();
        json!({
            "id": super::message_id(c.id.as_deref()),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {
                "input_tokens": usage.prompt_tokens.unwrap_or(0),
                "output_tokens": usage.completion_tokens.unwrap_or(0),
            },
        })
    }
}

impl ResponseTranslator for JsonTranslator {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn chunk(&mut self, data: &[u8]) -> Bytes {
        if !self.too_large {
            if self.body.len() + data.len() > MAX_BODY {
                self.too_large = true;
                self.body = Vec::new();
            } else {
                self.body.extend_from_slice(data);
            }
        }
        Bytes::new()
    }

    fn finish(&mut self) -> Bytes {
        // The status (2xx) is already on its way, so a failure here can only be told in the body.
        if self.too_large {
            return to_bytes(&error_body(
                "api_error",
                &format!("the worker's response exceeds {MAX_BODY} bytes"),
            ));
        }
        match serde_json::from_slice::<Completion>(&self.body) {
            Ok(c) => to_bytes(&self.message(&c)),
            Err(e) => {
                tracing::debug!(error = %e, "worker response is not a chat completion");
                to_bytes(&error_body(
                    "api_error",
                    &format!("the worker's response is not a valid chat completion: {e}"),
                ))
            }
        }
    }

    /// Nothing was sent yet but the status: the body says what happened.
    fn abort(&mut self, message: &str) -> Bytes {
        self.body = Vec::new();
        to_bytes(&error_body(
            "api_error",
            &format!("the worker broke off: {message}"),
        ))
    }
}

/// Anthropic's `error.type` for a worker's status (table in [`super`]).
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// A worker's non-2xx answer (OpenAI's error JSON, FastAPI's `detail`, or any body) →
/// Anthropic's error body, same status.
pub struct ErrorTranslator {
    status: u16,
    body: Vec<u8>,
}

impl ErrorTranslator {
    /// `status`: the worker's (decides `error.type`; the client gets the same).
    pub fn new(status: u16) -> Self {
        Self {
            status,
            body: Vec::new(),
        }
    }
}

/// The human-readable message of an error body.
fn error_message(body: &[u8], status: u16) -> String {
    fn text(v: &Value) -> Option<String> {
        match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Null | Value::String(_) => None,
            other => Some(other.to_string()),
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let found = v
            .pointer("/error/message")
            .and_then(text)
            .or_else(|| v.get("error").filter(|e| e.is_string()).and_then(text))
            .or_else(|| v.get("message").and_then(text))
            .or_else(|| v.get("detail").and_then(text));
        if let Some(m) = found {
            return m;
        }
    }
    let raw = String::from_utf8_lossy(body);
    let raw = raw.trim();
    if raw.is_empty() {
        return format!("the worker answered with status {status}");
    }
    let mut end = raw.len().min(MAX_ERROR_MESSAGE);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    raw[..end].to_string()
}

impl ResponseTranslator for ErrorTranslator {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn chunk(&mut self, data: &[u8]) -> Bytes {
        let room = MAX_ERROR_BODY.saturating_sub(self.body.len());
        self.body.extend_from_slice(&data[..data.len().min(room)]);
        Bytes::new()
    }

    fn finish(&mut self) -> Bytes {
        to_bytes(&error_body(
            error_type(self.status),
            &error_message(&self.body, self.status),
        ))
    }

    /// The worker's error body broke off: the error is still the worker's status.
    fn abort(&mut self, _message: &str) -> Bytes {
        self.finish()
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
