//! Mid-stream failover of a streamed chat completion: the [`Splice`] that watches the stream
//! the client is getting, and the continuation request for the next worker when the current
//! one breaks off or stalls.
//!
//! ```text
//! worker A  role  "tok0 " "tok1 " "tok2 " ✗ (reset / stalled / error event)
//! worker B                                 role  "tok3 " … finish usage [DONE]
//! client    role  "tok0 " "tok1 " "tok2 "        "tok3 " … finish usage [DONE]
//! ```
//!
//! The client's stream is passed on event by event (a partial event at the break is never
//! sent). When it breaks, the continuation request is the original body plus the text so far
//! as a final assistant message, `continue_final_message: true, add_generation_prompt: false`
//! (vLLM's and SGLang's partial-message continuation) and `max_tokens` less the tokens already
//! produced. Events of the new worker are rewritten into the first stream: the first id, no
//! second role chunk, usage counting the whole completion. Only the workers whose kind
//! supports the continuation ([`supports_continuation`]) are chosen for it; a stream that
//! cannot be continued (several choices, tool calls, reasoning, no such worker left) ends as
//! before, with an SSE error event.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use crate::config::FailoverConfig;
use crate::sse::Events;
use crate::worker::WorkerKind;

/// Worker kinds known to continue a final assistant message (`continue_final_message`).
pub(super) fn supports_continuation(kind: WorkerKind) -> bool {
    matches!(
        kind,
        WorkerKind::Vllm | WorkerKind::Sglang | WorkerKind::SagellmEngine
    )
}

/// Why a stream left its worker (the `reason` label of `llm_stream_failovers_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Break {
    /// The connection broke or closed before the stream was complete.
    Broken,
    /// Nothing came for `failover.stall_timeout_ms`.
    Stalled,
    /// The worker sent an `error` event in the stream.
    WorkerError,
}

impl Break {
    pub fn as_str(self) -> &'static str {
        match self {
            Break::Broken => "broken",
            Break::Stalled => "stalled",
            Break::WorkerError => "worker_error",
        }
    }
}

/// What to do after a break.
#[derive(Debug, PartialEq)]
pub(super) enum Next {
    /// Send this body to another worker.
    Continue(Bytes),
    /// The token budget is used up: end the client's stream with these bytes.
    Complete(Bytes),
}

/// The state of one client stream across the workers that produce it.
#[derive(Debug, Default)]
pub(super) struct Splice {
    events: Events,
    /// The first worker's completion id, model and creation time, kept on every chunk.
    id: Option<Value>,
    model: Option<Value>,
    created: Option<Value>,
    /// The assistant text the client has been sent.
    text: String,
    /// Content chunks the client has been sent (one token each, as vLLM streams them).
    pub tokens: u32,
    /// Of those, the ones produced by earlier workers (added to the current one's usage).
    carried: u32,
    /// Times the stream moved to another worker.
    pub resumes: u32,
    /// A `finish_reason` went to the client; `[DONE]` went to the client.
    finished: bool,
    done: bool,
    /// Why the stream cannot be continued elsewhere, once something made it so.
    not_resumable: Option<&'static str>,
    /// The worker sent an error event (not passed on: the stream moves instead).
    worker_error: Option<String>,
}

impl Splice {
    /// A splice for this request, when failover applies to it: on, a streamed chat completion
    /// (or a translated Messages request) with one choice.
    pub fn for_request(
        cfg: &FailoverConfig,
        stream: bool,
        chat: bool,
        body: &[u8],
    ) -> Option<Self> {
        if !(cfg.enabled && stream && chat) {
            return None;
        }
        let n = serde_json::from_slice::<Map<String, Value>>(body)
            .ok()?
            .get("n")
            .cloned();
        match n {
            None | Some(Value::Null) => Some(Self::default()),
            Some(v) if v.as_u64() == Some(1) => Some(Self::default()),
            Some(_) => None,
        }
    }

    /// A new worker's stream begins.
    pub fn begin_attempt(&mut self) {
        self.events = Events::default();
        self.carried = self.tokens;
        self.worker_error = None;
    }

    /// Whether the stream may move to another worker now; `Err` says why not.
    pub fn resumable(&self, cfg: &FailoverConfig) -> Result<(), String> {
        if let Some(why) = self.not_resumable {
            return Err(why.to_string());
        }
        if self.resumes >= cfg.max_resumes {
            return Err(format!(
                "the stream already moved {} time(s) (failover.max_resumes)",
                self.resumes
            ));
        }
        Ok(())
    }

    /// The stream is complete for the client (`[DONE]` sent).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The error a worker sent in its stream, once.
    pub fn take_worker_error(&mut self) -> Option<String> {
        self.worker_error.take()
    }

    /// A piece of the current worker's body; returns the bytes for the client (whole events).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        let mut events = std::mem::take(&mut self.events);
        events.push(chunk, |payload| self.on_event(payload, &mut out));
        self.events = events;
        out.freeze()
    }

    /// The current worker's body ended. Returns the last bytes for the client and whether
    /// the stream is complete; a stream that ended before its finish is not.
    pub fn end_of_body(&mut self) -> (Bytes, bool) {
        let mut out = BytesMut::new();
        let mut events = std::mem::take(&mut self.events);
        events.finish(|payload| self.on_event(payload, &mut out));
        if self.finished && !self.done && self.worker_error.is_none() {
            // The finish reached the client and only `[DONE]` is missing.
            self.done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
        (out.freeze(), self.done)
    }

    /// The current worker broke off: when the finish already reached the client, only
    /// `[DONE]` is missing — returned here, and the stream is complete.
    pub fn complete_on_break(&mut self) -> Option<Bytes> {
        if !self.finished || self.done {
            return None;
        }
        self.done = true;
        Some(Bytes::from_static(b"data: [DONE]\n\n"))
    }

    fn on_event(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.done || self.worker_error.is_some() {
            return;
        }
        if payload == b"[DONE]" {
            if self.finished || self.resumes == 0 {
                self.done = true;
                event(out, payload);
            } else {
                // A continuation that ends without a finish: not the client's end.
                self.worker_error = Some("the stream ended without a finish reason".into());
            }
            return;
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_slice::<Value>(payload) else {
            self.not_resumable = Some("the worker sent an event that is not a JSON object");
            event(out, payload);
            return;
        };
        if let Some(err) = chunk.get("error") {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error event");
            self.worker_error = Some(format!("the worker reported an error: {message}"));
            return;
        }
        self.observe(&chunk);
        if self.resumes == 0 {
            if self.id.is_none() {
                self.id = chunk.get("id").cloned();
                self.model = chunk.get("model").cloned();
                self.created = chunk.get("created").cloned();
            }
            event(out, payload);
            return;
        }
        if self.rewrite(&mut chunk) {
            let bytes = serde_json::to_vec(&chunk).unwrap_or_default();
            event(out, &bytes);
        }
    }

    /// Learn from a chunk the client gets: the text, the token count, the finish, and
    /// whatever makes a continuation impossible.
    fn observe(&mut self, chunk: &Map<String, Value>) {
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return;
        };
        if choices.len() > 1 {
            self.not_resumable = Some("the stream has several choices");
        }
        for choice in choices {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                self.not_resumable = Some("the stream has several choices");
            }
            if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
                self.finished = true;
            }
            let Some(delta) = choice.get("delta") else {
                continue;
            };
            let present = |k: &str| {
                delta.get(k).is_some_and(|v| match v {
                    Value::Null => false,
                    Value::String(s) => !s.is_empty(),
                    Value::Array(a) => !a.is_empty(),
                    _ => true,
                })
            };
            if present("tool_calls") || present("function_call") {
                self.not_resumable = Some("the stream is calling a tool");
            }
            if present("reasoning_content") || present("reasoning") {
                self.not_resumable = Some("the stream carries reasoning");
            }
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                if !text.is_empty() {
                    self.text.push_str(text);
                    self.tokens += 1;
                }
            }
        }
    }

    /// Make a later worker's chunk part of the first stream. `false`: drop it (the second
    /// role announcement).
    fn rewrite(&self, chunk: &mut Map<String, Value>) -> bool {
        for (key, value) in [
            ("id", &self.id),
            ("model", &self.model),
            ("created", &self.created),
        ] {
            if let Some(v) = value {
                chunk.insert(key.to_string(), v.clone());
            }
        }
        if let Some(usage) = chunk.get_mut("usage").and_then(Value::as_object_mut) {
            let carried = u64::from(self.carried);
            let get = |u: &Map<String, Value>, k: &str| u.get(k).and_then(Value::as_u64);
            if let (Some(prompt), Some(completion)) =
                (get(usage, "prompt_tokens"), get(usage, "completion_tokens"))
            {
                // The continuation's prompt held the earlier tokens as the partial message.
                let prompt = prompt.saturating_sub(carried);
                let completion = completion + carried;
                usage.insert("prompt_tokens".into(), prompt.into());
                usage.insert("completion_tokens".into(), completion.into());
                usage.insert("total_tokens".into(), (prompt + completion).into());
            }
        }
        let has_usage = chunk.get("usage").is_some_and(|u| !u.is_null());
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
            return true;
        };
        let mut empty = true;
        for choice in choices.iter_mut() {
            let finish = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                delta.remove("role");
                let content = delta.get("content").and_then(Value::as_str);
                let other = delta.keys().any(|k| k != "content");
                if finish || other || content.is_some_and(|c| !c.is_empty()) {
                    empty = false;
                }
            } else {
                empty = false;
            }
        }
        !(empty && !has_usage && !choices.is_empty())
    }

    /// What to send next after the current worker broke off: the continuation of `original`
    /// (the body the first worker got), or the end of the stream when no tokens are left.
    pub fn next(&mut self, original: &[u8]) -> Result<Next, String> {
        let mut body = serde_json::from_slice::<Map<String, Value>>(original)
            .map_err(|e| format!("the request body cannot be continued: {e}"))?;
        if self.tokens == 0 {
            // Nothing of the answer reached the client: the whole request again.
            self.resumes += 1;
            return Ok(Next::Continue(Bytes::copy_from_slice(original)));
        }
        for key in ["max_completion_tokens", "max_tokens"] {
            let Some(max) = body.get(key).and_then(Value::as_u64) else {
                continue;
            };
            let left = max.saturating_sub(u64::from(self.tokens));
            if left == 0 {
                return Ok(Next::Complete(self.finish_length()));
            }
            body.insert(key.to_string(), left.into());
        }
        let continuing = body.get("continue_final_message") == Some(&Value::Bool(true));
        let Some(Value::Array(messages)) = body.get_mut("messages") else {
            return Err("the request has no messages to continue".into());
        };
        let last_is_assistant = messages
            .last()
            .is_some_and(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
        if continuing && last_is_assistant {
            // The client already asked for a continuation: extend its partial message.
            let last = messages.last_mut().and_then(Value::as_object_mut);
            match last.and_then(|m| m.get_mut("content")) {
                Some(Value::String(s)) => s.push_str(&self.text),
                _ => return Err("the final message's content is not a string".into()),
            }
        } else {
            messages.push(json!({"role": "assistant", "content": self.text}));
        }
        body.insert("continue_final_message".into(), Value::Bool(true));
        body.insert("add_generation_prompt".into(), Value::Bool(false));
        self.resumes += 1;
        let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        Ok(Next::Continue(Bytes::from(bytes)))
    }

    /// The end of a stream whose token budget ran out at the break: a `length` finish and
    /// `[DONE]`, in the first stream's name.
    fn finish_length(&mut self) -> Bytes {
        self.finished = true;
        self.done = true;
        let chunk = json!({
            "id": self.id.clone().unwrap_or(Value::Null),
            "object": "chat.completion.chunk",
            "created": self.created.clone().unwrap_or(Value::Null),
            "model": self.model.clone().unwrap_or(Value::Null),
            "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"}],
        });
        let mut out = BytesMut::new();
        event(&mut out, &serde_json::to_vec(&chunk).unwrap_or_default());
        event(&mut out, b"[DONE]");
        out.freeze()
    }
}

/// Append one SSE event, `data: <payload>\n\n`.
fn event(out: &mut BytesMut, payload: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
#[path = "resume_tests.rs"]
mod tests;
