//! The `text/event-stream` body of a streaming chat/completion, event for event like vLLM:
//! (queue for a slot) → after the prefill (ttft plus the uncached prompt tokens) the role
//! chunk (chat) and the first token → one token chunk per token time (longer while more
//! sequences run) → the `finish_reason` chunk → the usage chunk (only with
//! `stream_options.include_usage`) → `data: [DONE]`. The fault knobs `break_after_tokens`
//! (the body ends in an error: the connection is reset without the last chunk, as when the
//! engine dies) and `stall_after_tokens` (nothing more is ever sent) cut it short.
//!
//! The stream owns its batch slot, so when the client goes away and the server drops the body,
//! the slot is freed and the disconnect is counted.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use serde_json::Value;
use tokio::time::{sleep, sleep_until, Instant};

use crate::control::SimControl;
use crate::generation::Generation;
use crate::queue::{admit, RunningGuard};

/// Where a stream is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Queue,
    Role,
    Token(u32),
    Finish,
    Usage,
    Done,
    End,
}

struct SseState {
    control: Arc<SimControl>,
    generation: Generation,
    phase: Phase,
    slot: Option<RunningGuard>,
    /// When the latest token was due.
    token_at: Instant,
    finished: bool,
    /// Set when the stream breaks off: the error that ends the body.
    broken: Option<std::io::Error>,
}

impl Drop for SseState {
    fn drop(&mut self) {
        if !self.finished {
            self.control.record_disconnect();
        }
    }
}

/// One SSE event: `data: <payload>\n\n`.
fn event(payload: &Value) -> Bytes {
    Bytes::from(format!("data: {payload}\n\n"))
}

impl SseState {
    /// Produces the next event, waiting as long as the simulated engine would; an error
    /// breaks the connection off.
    async fn next_event(&mut self) -> Option<std::io::Result<Bytes>> {
        let event = self.next_payload().await;
        if event.is_some() {
            self.control.record_stream_event();
        }
        event.map(Ok).or_else(|| self.broken.take().map(Err))
    }

    async fn next_payload(&mut self) -> Option<Bytes> {
        loop {
            match self.phase {
                Phase::Queue => {
                    self.slot = Some(admit(&self.control).await);
                    let cached = self
                        .control
                        .prefill(&self.generation.blocks, self.generation.prompt_tokens);
                    sleep(self.generation.first_token_after(cached)).await;
                    self.token_at = Instant::now();
                    self.phase = if self.generation.chat {
                        Phase::Role
                    } else {
                        Phase::Token(0)
                    };
                }
                Phase::Role => {
                    self.phase = Phase::Token(0);
                    return Some(event(&self.generation.role_chunk()));
                }
                Phase::Token(i) if i < self.generation.n => {
                    if self.generation.stall_after == Some(i) {
                        std::future::pending::<()>().await;
                    }
                    if self.generation.break_after == Some(i) {
                        self.phase = Phase::End;
                        self.slot = None;
                        self.finished = true;
                        self.control.record_failure();
                        self.broken = Some(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "simulated engine death mid-stream",
                        ));
                        return None;
                    }
                    if i > 0 {
                        self.token_at += self.generation.token_time(self.control.running());
                        sleep_until(self.token_at).await;
                    }
                    self.phase = Phase::Token(i + 1);
                    return Some(event(&self.generation.token_chunk(i)));
                }
                Phase::Token(_) => {
                    self.phase = Phase::Finish;
                }
                Phase::Finish => {
                    self.phase = Phase::Usage;
                    return Some(event(&self.generation.finish_chunk()));
                }
                Phase::Usage => {
                    self.phase = Phase::Done;
                    if self.generation.include_usage {
                        return Some(event(&self.generation.usage_chunk()));
                    }
                }
                Phase::Done => {
                    self.phase = Phase::End;
                    self.slot = None;
                    self.finished = true;
                    self.control
                        .record_success(self.generation.prompt_tokens, self.generation.n);
                    return Some(Bytes::from_static(b"data: [DONE]\n\n"));
                }
                Phase::End => return None,
            }
        }
    }
}

/// The event stream of `generation`; each item is one event, to be flushed as produced.
pub(crate) fn event_stream(
    control: Arc<SimControl>,
    generation: Generation,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let state = SseState {
        control,
        generation,
        phase: Phase::Queue,
        slot: None,
        token_at: Instant::now(),
        finished: false,
        broken: None,
    };
    stream::unfold(state, |mut state| async move {
        let event = state.next_event().await?;
        Some((event, state))
    })
}
