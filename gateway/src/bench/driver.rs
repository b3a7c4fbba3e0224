//! One benchmark request, start to finish: send the body, read the response (SSE or JSON) and
//! turn it into an [`Outcome`] with its timings, or into a classified [`Failure`].
//!
//! Timings are taken when a piece of the body arrives from the socket, so events that arrive
//! together in one read share a timestamp (an inter-token gap of 0).

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::time::Instant;

use super::sse::{classify, Chunk, SseEvent, SseParser};
use super::target::{describe, error_message, Target};
use super::workload::Workload;

/// Error kinds that are not HTTP statuses.
pub mod kind {
    /// No connection, or it failed before the response headers arrived.
    pub const CONNECT: &str = "connect";
    /// No complete response within `--timeout`.
    pub const TIMEOUT: &str = "timeout";
    /// The stream broke off, ended without `[DONE]`, or carried an error event or garbage.
    pub const STREAM: &str = "stream";
    /// A 2xx non-streaming body that is not an OpenAI completion.
    pub const INVALID_RESPONSE: &str = "invalid_response";
}

/// How one request ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// From just before sending to the end of the response body (or to the failure).
    pub e2e: Duration,
    pub result: Result<Measured, Failure>,
}

/// What a successful request measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    /// Send → first event with content (streams only).
    pub ttft: Option<Duration>,
    /// Gaps between consecutive content events (streams only).
    pub itl: Vec<Duration>,
    /// `usage.completion_tokens`, else content events (streams) or words (non-streaming).
    pub output_tokens: u64,
    /// Whether `output_tokens` came from the server's `usage`.
    pub usage_reported: bool,
}

impl Measured {
    /// Time per output token after the first: `(e2e − ttft) / (tokens − 1)`, for streams with
    /// at least two output tokens.
    pub fn tpot(&self, e2e: Duration) -> Option<Duration> {
        let ttft = self.ttft?;
        if self.output_tokens < 2 {
            return None;
        }
        let per = e2e.saturating_sub(ttft).as_secs_f64() / (self.output_tokens - 1) as f64;
        Some(Duration::from_secs_f64(per))
    }
}

/// Why a request failed: `kind` is the HTTP status (`"503"`) or one of [`kind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// Sends request number `index` and measures it, giving up after `timeout`.
pub async fn execute(
    target: &Target,
    workload: &Workload,
    index: u64,
    timeout: Duration,
) -> Outcome {
    // Serialised before the clock starts: the latency is the target's, not ours.
    let body = serde_json::to_vec(&workload.body(index)).unwrap_or_default();
    let start = Instant::now();
    let result = match tokio::time::timeout(timeout, send(target, workload, body, start)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(
            kind::TIMEOUT,
            format!("no complete response within {timeout:?}"),
        )),
    };
    Outcome {
        e2e: start.elapsed(),
        result,
    }
}

async fn send(
    target: &Target,
    workload: &Workload,
    body: Vec<u8>,
    start: Instant,
) -> Result<Measured, Failure> {
    let path = workload.endpoint().path();
    let request = target
        .post(path)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    let resp = request.send().await.map_err(|e| {
        let k = if e.is_timeout() {
            kind::TIMEOUT
        } else {
            kind::CONNECT
        };
        Failure::new(k, format!("POST {}: {}", target.url(path), describe(&e)))
    })?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.bytes().await.unwrap_or_default();
        return Err(Failure::new(
            status.as_u16().to_string(),
            error_message(&body),
        ));
    }
    if workload.stream() {
        read_stream(resp, start).await
    } else {
        read_json(resp).await
    }
}

async fn read_stream(resp: reqwest::Response, start: Instant) -> Result<Measured, Failure> {
    let mut parser = SseParser::default();
    let mut tally = StreamTally::new(start);
    let mut body = resp.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| {
            Failure::new(
                kind::STREAM,
                format!("the stream broke off: {}", describe(&e)),
            )
        })?;
        let now = Instant::now();
        for event in parser.feed(&piece) {
            tally.event(&event, now)?;
        }
    }
    if let Some(event) = parser.finish() {
        tally.event(&event, Instant::now())?;
    }
    tally.finish()
}

/// Running measurements of one stream.
#[derive(Clone)]
struct StreamTally {
    start: Instant,
    measured: Measured,
    last_content: Option<Instant>,
    content_events: u64,
    usage_tokens: Option<u64>,
    done: bool,
}

impl StreamTally {
    fn new(start: Instant) -> Self {
        Self {
            start,
            measured: Measured::default(),
            last_content: None,
            content_events: 0,
            usage_tokens: None,
            done: false,
        }
    }

    fn event(&mut self, event: &SseEvent, at: Instant) -> Result<(), Failure> {
        if self.done {
            return Ok(()); // Nothing after [DONE] counts.
        }
        match classify(event) {
            Chunk::Done => self.done = true,
            Chunk::Error(message) => return Err(Failure::new(kind::STREAM, message)),
            Chunk::Data {
                content,
                completion_tokens,
            } => {
                if completion_tokens.is_some() {
                    self.usage_tokens = completion_tokens;
                }
                if content {
                    self.content_events += 1;
                    match self.last_content {
                        None => self.measured.ttft = Some(at - self.start),
                        Some(last) => self.measured.itl.push(at - last),
                    }
                    self.last_content = Some(at);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Measured, Failure> {
        if !self.done {
            return Err(Failure::new(
                kind::STREAM,
                "the stream ended without [DONE]",
            ));
        }
        self.measured.usage_reported = self.usage_tokens.is_some();
        self.measured.output_tokens = self.usage_tokens.unwrap_or(self.content_events);
        Ok(self.measured)
    }
}

async fn read_json(resp: reqwest::Response) -> Result<Measured, Failure> {
    let bytes = resp.bytes().await.map_err(|e| {
        Failure::new(
            kind::STREAM,
            format!("the body broke off: {}", describe(&e)),
        )
    })?;
    let invalid = |why: String| Failure::new(kind::INVALID_RESPONSE, why);
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("the body is not JSON ({e})")))?;
    if value.get("error").is_some_and(|e| !e.is_null()) {
        return Err(invalid(error_message(&bytes)));
    }
    let choices = value["choices"]
        .as_array()
        .ok_or_else(|| invalid("the body has no `choices`".to_string()))?;
    let usage = value["usage"]["completion_tokens"].as_u64();
    let words = || {
        choices
            .iter()
            .flat_map(|c| {
                [
                    &c["message"]["content"],
                    &c["message"]["reasoning_content"],
                    &c["text"],
                ]
            })
            .filter_map(Value::as_str)
            .map(|s| s.split_whitespace().count() as u64)
            .sum()
    };
    Ok(Measured {
        ttft: None,
        itl: Vec::new(),
        output_tokens: usage.unwrap_or_else(words),
        usage_reported: usage.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn tpot_excludes_the_first_token() {
        let m = Measured {
            ttft: Some(ms(100)),
            output_tokens: 10,
            ..Default::default()
        };
        assert_eq!(m.tpot(ms(280)), Some(ms(20)));
        let one = Measured {
            output_tokens: 1,
            ..m.clone()
        };
        assert_eq!(one.tpot(ms(100)), None, "one token has no TPOT");
        let no_ttft = Measured { ttft: None, ..m };
        assert_eq!(no_ttft.tpot(ms(280)), None, "non-streaming has no TPOT");
    }

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn tally_times_content_and_prefers_usage() {
        let start = Instant::now();
        let mut t = StreamTally::new(start);
        let role = r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#;
        let tok = r#"{"choices":[{"delta":{"content":"a"}}]}"#;
        t.event(&event(role), start + ms(5)).unwrap();
        t.event(&event(tok), start + ms(100)).unwrap();
        t.event(&event(tok), start + ms(120)).unwrap();
        t.event(&event(tok), start + ms(150)).unwrap();
        assert!(t.clone().finish().is_err(), "no [DONE] yet");
        t.event(
            &event(r#"{"choices":[],"usage":{"completion_tokens":4}}"#),
            start + ms(151),
        )
        .unwrap();
        t.event(&event("[DONE]"), start + ms(152)).unwrap();
        t.event(&event("{garbage after done"), start + ms(153))
            .unwrap();
        let m = t.finish().unwrap();
        assert_eq!(m.ttft, Some(ms(100)));
        assert_eq!(m.itl, vec![ms(20), ms(30)]);
        assert_eq!(m.output_tokens, 4);
        assert!(m.usage_reported);
    }

    #[test]
    fn tally_counts_chunks_without_usage_and_fails_on_error_events() {
        let start = Instant::now();
        let mut t = StreamTally::new(start);
        let tok = r#"{"choices":[{"text":"a"}]}"#;
        t.event(&event(tok), start + ms(1)).unwrap();
        t.event(&event(tok), start + ms(2)).unwrap();
        t.event(&event("[DONE]"), start + ms(3)).unwrap();
        let m = t.finish().unwrap();
        assert_eq!((m.output_tokens, m.usage_reported), (2, false));

        let mut t = StreamTally::new(start);
        let err = t
            .event(&event(r#"{"error":{"message":"boom"}}"#), start)
            .unwrap_err();
        assert_eq!(err, Failure::new(kind::STREAM, "boom"));
    }
}
