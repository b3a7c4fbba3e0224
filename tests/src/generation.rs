//! One simulated generation: how many tokens, why it stops, how long it takes, and the
//! vLLM/OpenAI JSON shapes of its full response and of its stream chunks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::control::Knobs;
use crate::request::{Endpoint, LlmRequest};

/// Seconds since the Unix epoch (the `created` field).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The text of output token `i`.
fn token(i: u32) -> String {
    format!("tok{i}")
}

/// A planned generation for one chat or completion request.
#[derive(Clone, Debug)]
pub(crate) struct Generation {
    pub chat: bool,
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Output tokens: `min(max_tokens, output_tokens)`.
    pub n: u32,
    pub finish_reason: &'static str,
    pub prompt_tokens: u32,
    pub include_usage: bool,
    pub ttft: Duration,
    pub tpot: Duration,
}

impl Generation {
    /// Plans the generation of `req` under the current knobs.
    pub fn plan(req: &LlmRequest, knobs: &Knobs) -> Self {
        let chat = req.endpoint == Endpoint::Chat;
        let (n, finish_reason) = match req.max_tokens {
            Some(max) if max <= knobs.output_tokens => (max, "length"),
            _ => (knobs.output_tokens, "stop"),
        };
        let prefix = if chat { "chatcmpl" } else { "cmpl" };
        Self {
            chat,
            id: format!("{prefix}-{:032x}", fastrand::u128(..)),
            created: unix_now(),
            model: req.model.clone(),
            n,
            finish_reason,
            prompt_tokens: req.prompt_tokens,
            include_usage: req.include_usage,
            ttft: knobs.ttft,
            tpot: knobs.tpot,
        }
    }

    /// Wall time of the whole generation: `ttft + tpot × (n − 1)`.
    pub fn duration(&self) -> Duration {
        self.ttft + self.tpot.saturating_mul(self.n.saturating_sub(1))
    }

    /// `"tok0 tok1 …"`: the full output text.
    pub fn text(&self) -> String {
        (0..self.n).map(token).collect::<Vec<_>>().join(" ")
    }

    pub fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": u64::from(self.prompt_tokens) + u64::from(self.n),
            "completion_tokens": self.n,
            "prompt_tokens_details": null,
        })
    }

    /// The non-streaming response body.
    pub fn response(&self) -> Value {
        let choice = if self.chat {
            json!({
                "index": 0,
                "message": {"role": "assistant", "content": self.text(), "tool_calls": []},
                "logprobs": null,
                "finish_reason": self.finish_reason,
                "stop_reason": null,
            })
        } else {
            json!({
                "index": 0,
                "text": self.text(),
                "logprobs": null,
                "finish_reason": self.finish_reason,
                "stop_reason": null,
            })
        };
        json!({
            "id": self.id,
            "object": if self.chat { "chat.completion" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(),
        })
    }

    fn chunk(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": if self.chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    fn choice(&self, text: String, finish_reason: Option<&str>) -> Value {
        if self.chat {
            let delta = if finish_reason.is_some() {
                json!({})
            } else {
                json!({"content": text})
            };
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}])
        } else {
            json!([{"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason}])
        }
    }

    /// Chat only: the first chunk, announcing the assistant role.
    pub fn role_chunk(&self) -> Value {
        self.chunk(json!([{
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": null,
            "finish_reason": null,
        }]))
    }

    /// The chunk of output token `i` (`"tokN "`).
    pub fn token_chunk(&self, i: u32) -> Value {
        self.chunk(self.choice(format!("{} ", token(i)), None))
    }

    /// The last chunk, carrying `finish_reason`.
    pub fn finish_chunk(&self) -> Value {
        self.chunk(self.choice(String::new(), Some(self.finish_reason)))
    }

    /// The usage chunk (`stream_options.include_usage`): empty `choices` plus `usage`.
    pub fn usage_chunk(&self) -> Value {
        let mut chunk = self.chunk(json!([]));
        if let Value::Object(map) = &mut chunk {
            map.insert("usage".to_string(), self.usage());
        }
        chunk
    }
}
