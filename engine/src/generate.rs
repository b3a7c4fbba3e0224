//! One generation: tokenize and check the prompt, submit it to mistral.rs in streaming mode,
//! and turn the engine's responses into [`Event`]s while keeping the metrics.
//!
//! Every request runs in mistral.rs's streaming mode, also the non-streaming ones (their answer
//! is assembled from the events): the engine then sends each token as it is sampled, so when
//! the client disconnects and the [`Generation`] is dropped, the engine's next send fails and
//! mistral.rs cancels the sequence at once instead of generating to the end.

use std::time::Instant;

use either::Either;
use indexmap::IndexMap;
use mistralrs::core::TokenizationRequest;
use mistralrs::{NormalRequest, Request, RequestMessage, Response};
use tokio::sync::mpsc;

use crate::api::error::ApiError;
use crate::api::types::Params;
use crate::inflight::InflightGuard;
use crate::sampling;
use crate::state::Ready;
use crate::stop::{Step, StopMatcher};

/// What to generate from.
pub enum Prompt {
    /// Chat messages as (role, text); the GGUF's chat template is applied.
    Chat(Vec<(String, String)>),
    /// Raw completion text.
    Text(String),
    /// Chat messages whose final assistant message is continued (`continue_final_message`):
    /// the template is applied to `messages` with the generation prompt, and the generation
    /// goes on after `partial`.
    Continue {
        messages: Vec<(String, String)>,
        partial: String,
    },
}

/// Token counts of a finished generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Generated text (may be empty for a token that completes no character yet).
    Text(String),
    /// The generation ended normally.
    Finished { reason: String, usage: TokenUsage },
    /// The engine failed mid-generation.
    Failed(String),
}

pub struct Generation {
    rx: mpsc::Receiver<Response>,
    guard: InflightGuard,
    ready: Ready,
    started: Instant,
    first_token: Option<Instant>,
    tokens: u64,
    prompt_tokens: u64,
    finished: bool,
    /// The finish event, held back while the last chunk's text is delivered.
    pending: Option<Event>,
    /// A continued message: mistral.rs trims the leading whitespace of a sequence's first
    /// piece of text, which a continuation needs (" magical" after "a beautiful and"); it is
    /// restored from the token's own text, which logprobs carry.
    restore_space: bool,
    stops: StopMatcher,
}

fn message_maps(messages: &[(String, String)]) -> Vec<IndexMap<String, mistralrs::MessageContent>> {
    messages
        .iter()
        .map(|(role, text)| {
            IndexMap::from([
                ("role".to_string(), Either::Left(role.clone())),
                ("content".to_string(), Either::Left(text.clone())),
            ])
        })
        .collect()
}

/// The prompt's tokens, as the engine will see them.
async fn prompt_tokens(ready: &Ready, prompt: &Prompt) -> Result<Vec<u32>, ApiError> {
    match prompt {
        Prompt::Chat(m) => tokenize(ready, Either::Left(message_maps(m)), true).await,
        Prompt::Text(t) => tokenize(ready, Either::Right(t.clone()), true).await,
        Prompt::Continue { messages, partial } => {
            let mut tokens = tokenize(ready, Either::Left(message_maps(messages)), true).await?;
            tokens.extend(tokenize(ready, Either::Right(partial.clone()), false).await?);
            Ok(tokens)
        }
    }
}

/// Tokenize chat messages (their template applied, with the generation prompt) or raw text
/// (`special`: with the tokenizer's special tokens, as a prompt's start).
async fn tokenize(
    ready: &Ready,
    text: Either<Vec<IndexMap<String, mistralrs::MessageContent>>, String>,
    special: bool,
) -> Result<Vec<u32>, ApiError> {
    let (tx, mut rx) = mpsc::channel(1);
    let req = Request::Tokenize(TokenizationRequest {
        text,
        tools: None,
        add_generation_prompt: true,
        add_special_tokens: special,
        enable_thinking: None,
        reasoning_effort: None,
        response: tx,
    });
    let sender = ready
        .model
        .runner
        .get_sender(None)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    sender
        .send(req)
        .await
        .map_err(|_| ApiError::Internal("the engine stopped".into()))?;
    match rx.recv().await {
        Some(Ok(tokens)) => Ok(tokens),
        Some(Err(e)) => Err(ApiError::bad(
            format!("the prompt cannot be tokenized: {e}"),
            None,
        )),
        None => Err(ApiError::Internal("the engine stopped".into())),
    }
}

impl Generation {
    /// Validate the prompt's length and submit the request.
    pub async fn start(ready: &Ready, prompt: Prompt, params: &Params) -> Result<Self, ApiError> {
        let started = Instant::now();
        let tokens = prompt_tokens(ready, &prompt).await?;
        let prompt_tokens = tokens.len() as u64;
        let context = ready.model.max_seq_len as u64;
        let max_tokens = match params.max_tokens {
            Some(m) if prompt_tokens + m as u64 > context => {
                return Err(ApiError::bad(
                    format!(
                        "This model's maximum context length is {context} tokens. However, you requested {} tokens ({prompt_tokens} in the prompt, {m} for the completion).",
                        prompt_tokens + m as u64
                    ),
                    Some("max_tokens"),
                ))
            }
            Some(m) => m,
            None if prompt_tokens >= context => {
                return Err(ApiError::bad(
                    format!("The prompt has {prompt_tokens} tokens; this model's maximum context length is {context}."),
                    Some("messages"),
                ))
            }
            None => (context - prompt_tokens) as usize,
        };
        let (sampling_params, mut processors) = sampling::engine_params(params, max_tokens);
        if let Some(pin) = crate::pin::processor() {
            processors.get_or_insert_with(Vec::new).insert(0, pin);
        }
        let continued = matches!(prompt, Prompt::Continue { .. });
        let messages = match prompt {
            Prompt::Chat(m) => RequestMessage::Chat {
                messages: message_maps(&m),
                enable_thinking: None,
                reasoning_effort: None,
            },
            Prompt::Text(text) => RequestMessage::Completion {
                text,
                echo_prompt: false,
                best_of: None,
            },
            // The template and the partial message are already tokens.
            Prompt::Continue { .. } => RequestMessage::CompletionTokens(tokens),
        };
        let (tx, rx) = mpsc::channel(64);
        let runner = &ready.model.runner;
        let mut req = NormalRequest::new_simple(
            messages,
            sampling_params,
            tx,
            runner.next_request_id(),
            None,
            None,
        );
        req.is_streaming = true;
        req.logits_processors = processors;
        req.return_logprobs = continued;
        let sender = runner
            .get_sender(None)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        sender
            .send(Request::Normal(Box::new(req)))
            .await
            .map_err(|_| ApiError::Internal("the engine stopped".into()))?;
        ready.metrics.prompt_tokens.inc_by(prompt_tokens);
        Ok(Self {
            rx,
            guard: ready.inflight.begin(prompt_tokens),
            ready: ready.clone(),
            started,
            first_token: None,
            tokens: 0,
            prompt_tokens,
            finished: false,
            pending: None,
            restore_space: continued,
            stops: StopMatcher::new(params.stop.clone()),
        })
    }

    fn on_token(&mut self) {
        let now = Instant::now();
        if self.first_token.is_none() {
            self.first_token = Some(now);
            self.ready
                .metrics
                .ttft
                .observe(now.duration_since(self.started).as_secs_f64());
        }
        self.tokens += 1;
        self.guard.add_token();
        self.ready.metrics.token();
    }

    fn finish(&mut self, reason: String, completion_tokens: Option<u64>) -> Event {
        self.finished = true;
        let m = &self.ready.metrics;
        let end = Instant::now();
        m.e2e
            .observe(end.duration_since(self.started).as_secs_f64());
        if let (Some(first), true) = (self.first_token, self.tokens > 1) {
            m.tpot
                .observe(end.duration_since(first).as_secs_f64() / (self.tokens - 1) as f64);
        }
        m.success.with_label_values(&[reason.as_str()]).inc();
        let usage = TokenUsage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: completion_tokens.unwrap_or(self.tokens),
        };
        Event::Finished { reason, usage }
    }

    fn fail(&mut self, message: String) -> Event {
        self.finished = true;
        self.ready.metrics.failed.inc();
        tracing::warn!(error = %message, "generation failed");
        Event::Failed(message)
    }

    /// The next event; `None` after the last one.
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.pending.take() {
            return Some(event);
        }
        if self.finished {
            return None;
        }
        loop {
            let Some(resp) = self.rx.recv().await else {
                return Some(self.fail("the engine stopped before the generation finished".into()));
            };
            match resp {
                Response::Chunk(chunk) => {
                    let Some(choice) = chunk.choices.into_iter().next() else {
                        continue;
                    };
                    self.on_token();
                    let text = choice.delta.content.unwrap_or_default();
                    let text = self.untrimmed(text, choice.logprobs.as_ref());
                    let completion = chunk.usage.map(|u| u.completion_tokens as u64);
                    return Some(self.on_text(text, choice.finish_reason, completion));
                }
                Response::CompletionChunk(chunk) => {
                    let Some(choice) = chunk.choices.into_iter().next() else {
                        continue;
                    };
                    // Completion chunks carry no usage: every chunk is one sampled token,
                    // except a closing chunk without text that only reports the finish.
                    if choice.finish_reason.is_none() || !choice.text.is_empty() {
                        self.on_token();
                    }
                    let text = self.untrimmed(choice.text, choice.logprobs.as_ref());
                    return Some(self.on_text(text, choice.finish_reason, None));
                }
                Response::ModelError(e, _) | Response::CompletionModelError(e, _) => {
                    return Some(self.fail(e))
                }
                Response::InternalError(e) | Response::ValidationError(e) => {
                    return Some(self.fail(e.to_string()))
                }
                Response::Done(done) => {
                    let reason = done
                        .choices
                        .first()
                        .map(|c| c.finish_reason.clone())
                        .unwrap_or_else(|| "stop".into());
                    return Some(self.finish(reason, Some(done.usage.completion_tokens as u64)));
                }
                Response::CompletionDone(done) => {
                    let reason = done
                        .choices
                        .first()
                        .map(|c| c.finish_reason.clone())
                        .unwrap_or_else(|| "stop".into());
                    return Some(self.finish(reason, Some(done.usage.completion_tokens as u64)));
                }
                _ => continue,
            }
        }
    }

    /// The first piece of a continuation with the leading whitespace mistral.rs trimmed off
    /// put back (the sampled token's own text is `logprob.bytes`).
    fn untrimmed(
        &mut self,
        text: String,
        logprob: Option<&mistralrs::core::ResponseLogprob>,
    ) -> String {
        if !self.restore_space || text.is_empty() {
            return text;
        }
        self.restore_space = false;
        let token = logprob.and_then(|l| l.bytes.as_ref());
        let token = token.and_then(|b| std::str::from_utf8(b).ok());
        match token.and_then(|t| t.strip_suffix(text.as_str())) {
            Some(lead) if !lead.is_empty() && lead.trim().is_empty() => format!("{lead}{text}"),
            _ => text,
        }
    }

    /// New text from the engine, with its finish reason if it is the last piece. Stop strings
    /// are applied here; a match ends the generation (dropping it cancels the sequence).
    fn on_text(&mut self, text: String, finish: Option<String>, completion: Option<u64>) -> Event {
        let (text, reason) = match (self.stops.push(&text), finish) {
            (Step::Stop(t), _) => (t, Some("stop".to_string())),
            (Step::Emit(t), Some(r)) => (t + &self.stops.flush(), Some(normalise_reason(&r))),
            (Step::Emit(t), None) => (t, None),
        };
        let Some(reason) = reason else {
            return Event::Text(text);
        };
        let done = self.finish(reason, completion);
        if text.is_empty() {
            done
        } else {
            // The last piece carries text and the finish together: deliver the text first.
            self.pending = Some(done);
            Event::Text(text)
        }
    }
}

/// OpenAI's finish reasons: mistral.rs also reports `canceled` and tool-call reasons.
fn normalise_reason(reason: &str) -> String {
    match reason {
        "length" | "stop" | "tool_calls" => reason.to_string(),
        _ => "stop".to_string(),
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away: dropping `rx` makes mistral.rs cancel the sequence.
            self.ready.metrics.cancelled.inc();
        }
    }
}
