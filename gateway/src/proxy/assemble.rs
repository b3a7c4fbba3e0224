//! Non-streamed chat completions that survive their worker's death: the gateway asks the
//! worker for a stream instead (`stream: true`, usage included), passes it through the
//! [`Splice`](super::resume::Splice) like any client stream — so a worker that breaks off
//! or stalls is continued on another — and answers the client with the one
//! `chat.completion` object built from the events ([`Assembler`]). Nothing reaches the
//! client until the answer is whole, so a request that cannot be finished still gets a
//! plain JSON error.
//!
//! ```text
//! client  {"messages":[…]}                        → gateway
//! worker  {"messages":[…],"stream":true,"stream_options":{"include_usage":true}}
//! worker  role "tok0 " "tok1 " ✗   (continued elsewhere: "tok2 " … finish usage [DONE])
//! client  {"object":"chat.completion","choices":[{"message":{"content":"tok0 tok1 tok2 …"}}]}
//! ```
//!
//! Only requests whose answer the events carry whole are turned into streams: one choice,
//! no tools, no log-probabilities, no `stream_options` of the client's own
//! ([`streamed_body`]). The others go to the worker as they came.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::sse::Events;

/// Longest assembled answer (content plus reasoning) kept; a longer one is refused.
pub(super) const MAX_ANSWER: usize = 32 << 20;

/// Request fields whose answer a stream does not carry the way the JSON response does.
const NOT_ASSEMBLED: &[&str] = &[
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "logprobs",
    "top_logprobs",
    "prompt_logprobs",
    "stream_options",
    "echo",
];

/// The body to send the worker instead of `original`, a non-streamed chat completion
/// request, when its answer can be assembled from a stream; `None` to send it unchanged.
pub(super) fn streamed_body(original: &[u8]) -> Option<Bytes> {
    let mut body = serde_json::from_slice::<Map<String, Value>>(original).ok()?;
    let absent = |v: Option<&Value>| v.is_none_or(Value::is_null);
    let off = |v: Option<&Value>| absent(v) || v == Some(&Value::Bool(false));
    let one = |v: Option<&Value>| absent(v) || v.and_then(Value::as_u64) == Some(1);
    let plain = off(body.get("stream"))
        && one(body.get("n"))
        && NOT_ASSEMBLED
            .iter()
            .all(|k| absent(body.get(*k)) || off(body.get(*k)));
    if !plain || !body.get("messages").is_some_and(Value::is_array) {
        return None;
    }
    body.insert("stream".into(), Value::Bool(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    serde_json::to_vec(&body).ok().map(Bytes::from)
}

/// Builds one `chat.completion` from the events of a chat completion stream (one choice).
#[derive(Debug, Default)]
pub(super) struct Assembler {
    events: Events,
    /// Top-level fields of the first chunk: `id`, `created`, `model`, `system_fingerprint`.
    head: Map<String, Value>,
    role: Option<Value>,
    content: String,
    reasoning: String,
    /// The name the worker gave the reasoning field (`reasoning_content` or `reasoning`).
    reasoning_key: Option<String>,
    finish_reason: Option<Value>,
    stop_reason: Option<Value>,
    usage: Option<Value>,
    /// What made the events unusable, once something did.
    broken: Option<String>,
}

impl Assembler {
    /// Feed bytes of the (spliced) stream.
    pub fn push(&mut self, chunk: &[u8]) {
        let mut events = std::mem::take(&mut self.events);
        events.push(chunk, |payload| self.on_event(payload));
        self.events = events;
    }

    fn on_event(&mut self, payload: &[u8]) {
        if self.broken.is_some() {
            return;
        }
        if payload == b"[DONE]" {
            return;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(payload) else {
            self.broken = Some("the worker sent an event that is not a JSON object".into());
            return;
        };
        if self.head.is_empty() {
            for key in ["id", "created", "model", "system_fingerprint"] {
                if let Some(v) = chunk.get(key) {
                    self.head.insert(key.into(), v.clone());
                }
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            self.on_choice(choice);
        }
        if self.content.len() + self.reasoning.len() > MAX_ANSWER {
            self.broken = Some(format!("the answer is longer than {MAX_ANSWER} bytes"));
        }
    }

    fn on_choice(&mut self, choice: &Value) {
        if let Some(f) = choice.get("finish_reason").filter(|f| !f.is_null()) {
            self.finish_reason = Some(f.clone());
            self.stop_reason = choice.get("stop_reason").cloned();
        }
        let Some(delta) = choice.get("delta").and_then(Value::as_object) else {
            return;
        };
        if let Some(role) = delta.get("role").filter(|r| !r.is_null()) {
            self.role.get_or_insert_with(|| role.clone());
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.content.push_str(text);
        }
        for key in ["reasoning_content", "reasoning"] {
            if let Some(text) = delta.get(key).and_then(Value::as_str) {
                self.reasoning.push_str(text);
                self.reasoning_key.get_or_insert_with(|| key.to_string());
            }
        }
    }

    /// The whole response, once the stream ended with its finish; `Err` says what is missing.
    pub fn finish(mut self) -> Result<Bytes, String> {
        let mut events = std::mem::take(&mut self.events);
        events.finish(|payload| self.on_event(payload));
        if let Some(why) = self.broken {
            return Err(why);
        }
        let Some(finish_reason) = self.finish_reason.take() else {
            return Err("the worker's stream ended without a finish reason".into());
        };
        let mut message = Map::new();
        let role = self.role.take().unwrap_or_else(|| "assistant".into());
        message.insert("role".into(), role);
        message.insert("content".into(), Value::String(self.content));
        if let Some(key) = self.reasoning_key {
            message.insert(key, Value::String(self.reasoning));
        }
        let mut choice = json!({
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason,
        });
        if let Some(stop) = self.stop_reason {
            choice["stop_reason"] = stop;
        }
        let mut out = self.head;
        out.insert("object".into(), "chat.completion".into());
        out.insert("choices".into(), Value::Array(vec![choice]));
        if let Some(usage) = self.usage {
            out.insert("usage".into(), usage);
        }
        serde_json::to_vec(&out)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
