//! The worker's OpenAI SSE stream → Anthropic's stream events (table in [`super`]).
//!
//! The input arrives split anywhere and is cut into events by [`crate::sse::Events`]. An
//! event whose JSON does not parse is skipped; the stream goes on. The output is always one well-formed Anthropic stream (`message_start` …
//! `message_stop`), or one that ends with an `error` event.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::response::{Choice, Usage};
use crate::edge::translate::ResponseTranslator;
use crate::sse::Events;

/// One `chat.completion.chunk` (lenient like [`super::response`]'s `Completion`), or a
/// worker's mid-stream `{"error":…}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Chunk {
    id: Option<String>,
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    error: Option<Value>,
}

pub struct StreamTranslator {
    model: String,
    events: Events,
    /// `message_start` is out.
    started: bool,
    /// `message_stop` or `error` is out; everything after is ignored.
    ended: bool,
    content_events: u64,
    finish_reason: Option<String>,
    matched_stop: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// `event: <type>\ndata: <json>\n\n`, the type taken from the payload.
fn event(out: &mut Vec<u8>, payload: &Value) {
    let kind = payload["type"].as_str().unwrap_or("error");
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serialising a `Value` cannot fail.
    out.extend_from_slice(&serde_json::to_vec(payload).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
}

impl StreamTranslator {
    /// `model`: the model the client asked for (echoed in `message_start`).
    pub fn new(model: String) -> Self {
        Self {
            model,
            events: Events::default(),
            started: false,
            ended: false,
            content_events: 0,
            finish_reason: None,
            matched_stop: None,
            input_tokens: None,
            output_tokens: None,
        }
    }

    /// One event's data.
    fn dispatch(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data.trim_ascii() == b"[DONE]" {
            self.end(out);
            return;
        }
        let chunk: Chunk = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a worker SSE event that is not JSON");
                return;
            }
        };
        if let Some(err) = chunk.error.as_ref().filter(|e| !e.is_null()) {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| err.as_str().map(str::to_string))
                .unwrap_or_else(|| err.to_string());
            self.fail(&message, out);
            return;
        }
        if let Some(u) = chunk.usage {
            self.input_tokens = u.prompt_tokens.or(self.input_tokens);
            self.output_tokens = u.completion_tokens.or(self.output_tokens);
        }
        if !self.started {
            self.start(chunk.id.as_deref(), out);
        }
        let Some(choice) = chunk.choices.as_ref().and_then(|c| c.first()) else {
            return;
        };
        if let Some(text) = choice
            .delta
            .as_ref()
            .and_then(|d| d.content.as_deref())
            .filter(|t| !t.is_empty())
        {
            self.content_events += 1;
            event(
                out,
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": text}}),
            );
        }
        if let Some(f) = &choice.finish_reason {
            self.finish_reason = Some(f.clone());
        }
        if let Some(s) = choice.matched_stop() {
            self.matched_stop = Some(s.to_string());
        }
    }

    /// `message_start` and the one text block's `content_block_start`.
    fn start(&mut self, worker_id: Option<&str>, out: &mut Vec<u8>) {
        self.started = true;
        event(
            out,
            &json!({
                "type": "message_start",
                "message": {
                    "id": super::message_id(worker_id),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": self.input_tokens.unwrap_or(0), "output_tokens": 0},
                },
            }),
        );
        event(
            out,
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
        );
    }

    /// Closes the block and the message.
    fn end(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(None, out);
        }
        self.ended = true;
        let (stop_reason, stop_sequence) =
            super::stop_reason(self.finish_reason.as_deref(), self.matched_stop.as_deref());
        let mut usage = json!({
            "output_tokens": self.output_tokens.unwrap_or(self.content_events),
        });
        // Usage in `message_delta` is cumulative: the SDKs overwrite `message_start`'s with it.
        if let Some(n) = self.input_tokens {
            usage["input_tokens"] = n.into();
        }
        event(out, &json!({"type": "content_block_stop", "index": 0}));
        event(
            out,
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": usage,
            }),
        );
        event(out, &json!({"type": "message_stop"}));
    }

    /// An `error` event, after which the stream is over.
    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        self.ended = true;
        event(out, &super::response::error_body("api_error", message));
    }
}

impl ResponseTranslator for StreamTranslator {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn chunk(&mut self, data: &[u8]) -> Bytes {
        let mut out = Vec::new();
        let mut events = std::mem::take(&mut self.events);
        events.push(data, |event| {
            if !self.ended {
                self.dispatch(event, &mut out);
            }
        });
        self.events = events;
        Bytes::from(out)
    }

    fn finish(&mut self) -> Bytes {
        let mut out = Vec::new();
        if !self.ended {
            let mut events = std::mem::take(&mut self.events);
            events.finish(|event| {
                if !self.ended {
                    self.dispatch(event, &mut out);
                }
            });
            if !self.ended {
                self.end(&mut out);
            }
        }
        Bytes::from(out)
    }

    fn abort(&mut self, message: &str) -> Bytes {
        let mut out = Vec::new();
        if !self.ended {
            self.fail(message, &mut out);
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
