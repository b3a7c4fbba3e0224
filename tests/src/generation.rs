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
    /// Output tokens: `min(max_tokens, output_tokens − start)`.
    pub n: u32,
    /// Index of the first output token: a continued final message (`continue_final_message`)
    /// picks up the token sequence after the words it already holds.
    pub start: u32,
    /// Fault knobs when the request arrived: the stream breaks off / goes silent after this
    /// many token chunks.
    pub break_after: Option<u32>,
    pub stall_after: Option<u32>,
    pub finish_reason: &'static str,
    pub prompt_tokens: u32,
    pub include_usage: bool,
    /// The prompt's blocks for the prefix cache.
    pub blocks: Vec<u64>,
    /// The timing knobs when the request arrived.
    pub ttft: Duration,
    pub tpot: Duration,
    pub prefill_per_1k_tokens: Duration,
    pub batch_penalty: f64,
    pub speed: f64,
}

impl Generation {
    /// Plans the generation of `req` under the current knobs.
    pub fn plan(req: &LlmRequest, knobs: &Knobs) -> Self {
        let chat = req.endpoint == Endpoint::Chat;
        let start = req.continue_after.min(knobs.output_tokens);
        let left = knobs.output_tokens - start;
        let (n, finish_reason) = match req.max_tokens {
            Some(max) if max <= left => (max, "length"),
            _ => (left, "stop"),
        };
        let prefix = if chat { "chatcmpl" } else { "cmpl" };
        Self {
            chat,
            id: format!("{prefix}-{:032x}", fastrand::u128(..)),
            created: unix_now(),
            model: req.model.clone(),
            n,
            start,
            break_after: knobs.break_after_tokens,
            stall_after: knobs.stall_after_tokens,
            finish_reason,
            prompt_tokens: req.prompt_tokens,
            include_usage: req.include_usage,
            blocks: req.blocks.clone(),
            ttft: knobs.ttft,
            tpot: knobs.tpot,
            prefill_per_1k_tokens: knobs.prefill_per_1k_tokens,
            batch_penalty: knobs.batch_penalty,
            speed: knobs.speed,
        }
    }

    /// Time to the first token when `cached` prompt tokens were in the prefix cache:
    /// `(ttft + prefill_per_1k_tokens × uncached / 1000) / speed`.
    pub fn first_token_after(&self, cached: u32) -> Duration {
        let uncached = self.prompt_tokens.saturating_sub(cached);
        let prefill = self
            .prefill_per_1k_tokens
            .mul_f64(f64::from(uncached) / 1000.0);
        (self.ttft + prefill).div_f64(self.speed)
    }

    /// Time per output token with `running` sequences in the batch:
    /// `tpot × (1 + batch_penalty × (running − 1)) / speed`.
    pub fn token_time(&self, running: u64) -> Duration {
        let extra = running.saturating_sub(1) as f64;
        self.tpot
            .mul_f64(1.0 + self.batch_penalty * extra)
            .div_f64(self.speed)
    }

    /// Wall time of a whole non-streamed generation: first token, then `n − 1` tokens.
    pub fn duration(&self, cached: u32, running: u64) -> Duration {
        self.first_token_after(cached)
            + self
                .token_time(running)
                .saturating_mul(self.n.saturating_sub(1))
    }

    /// `"tok0 tok1 … "`: the full output text (from `tok{start}` when continuing), the same
    /// text a stream's deltas add up to, as with vLLM.
    pub fn text(&self) -> String {
        (self.start..self.start + self.n)
            .map(|i| format!("{} ", token(i)))
            .collect()
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

    /// The chunk of output token `i` (`"tokN "`, N = `start + i`).
    pub fn token_chunk(&self, i: u32) -> Value {
        self.chunk(self.choice(format!("{} ", token(self.start + i)), None))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;
    use crate::control::SimControl;
    use crate::request::parse;

    fn planned(knobs: impl FnOnce(&mut Knobs), words: usize) -> Generation {
        let control = SimControl::new(&SimConfig::default());
        let mut k = control.knobs();
        k.ttft = Duration::from_millis(20);
        k.tpot = Duration::from_millis(10);
        knobs(&mut k);
        let prompt = vec!["w"; words].join(" ");
        let body = serde_json::json!({"model": "m", "prompt": prompt, "max_tokens": 5});
        let req = parse(Endpoint::Completion, body.to_string().as_bytes()).unwrap();
        Generation::plan(&req, &k)
    }

    /// Whole milliseconds (the f64 arithmetic of `mul_f64` may land a nanosecond off).
    fn ms(d: Duration) -> u64 {
        (d.as_secs_f64() * 1000.0).round() as u64
    }

    #[test]
    fn prefill_is_charged_only_for_uncached_tokens() {
        let g = planned(
            |k| k.prefill_per_1k_tokens = Duration::from_millis(100),
            2000,
        );
        assert_eq!(ms(g.first_token_after(0)), 220);
        assert_eq!(ms(g.first_token_after(1500)), 70);
        assert_eq!(ms(g.first_token_after(5000)), 20);
    }

    #[test]
    fn a_continued_message_picks_up_the_token_sequence() {
        let control = SimControl::new(&SimConfig::default());
        let mut k = control.knobs();
        k.output_tokens = 10;
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "tok0 tok1 tok2 tok3 "},
        ], "continue_final_message": true, "add_generation_prompt": false});
        let req = parse(Endpoint::Chat, body.to_string().as_bytes()).unwrap();
        let g = Generation::plan(&req, &k);
        assert_eq!((g.start, g.n, g.finish_reason), (4, 6, "stop"));
        assert_eq!(g.text(), "tok4 tok5 tok6 tok7 tok8 tok9 ");
        assert_eq!(g.token_chunk(0)["choices"][0]["delta"]["content"], "tok4 ");
    }

    #[test]
    fn decode_slows_with_the_batch_and_speed_scales_everything() {
        let g = planned(|k| k.batch_penalty = 0.5, 10);
        assert_eq!(ms(g.token_time(0)), 10);
        assert_eq!(ms(g.token_time(1)), 10);
        assert_eq!(ms(g.token_time(3)), 20);
        // 20 ms first token + 4 more tokens at 20 ms with 3 running.
        assert_eq!(ms(g.duration(0, 3)), 100);
        let slow = planned(|k| k.speed = 0.5, 10);
        assert_eq!(ms(slow.first_token_after(0)), 40);
        assert_eq!(ms(slow.token_time(4)), 20);
    }
}
