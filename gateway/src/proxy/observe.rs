//! Watching a response go by without buffering it: status, time to first byte (TTFT for
//! streams), SSE events, and the `usage` token counts, scanned incrementally from the chunks
//! (the final JSON of a plain response, or the last SSE chunk of a stream).

use std::sync::LazyLock;
use std::time::Instant;

use memchr::memmem;

/// Bytes kept from the end of the previous chunk, so a key split across two chunks is found.
const TAIL: usize = 48;

#[derive(Debug, Default)]
pub struct ResponseObserver {
    pub status: Option<u16>,
    pub first_byte: Option<Instant>,
    pub bytes: u64,
    /// Whether the response is an SSE stream.
    pub sse: bool,
    /// `data:` events seen (a stream's token count when it carries no usage).
    pub sse_events: u64,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Whether to collect `finish_reasons` (only for a traced request: it costs a scan).
    pub want_finish_reasons: bool,
    /// The distinct `finish_reason` strings seen, in order (at most [`MAX_REASONS`]).
    pub finish_reasons: Vec<String>,
    tail: Vec<u8>,
}

/// Distinct finish reasons kept (there are five in OpenAI's API).
const MAX_REASONS: usize = 8;
/// Longest finish reason read.
const MAX_REASON_LEN: usize = 32;

static COMPLETION_TOKENS: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"completion_tokens\":"));
static PROMPT_TOKENS: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"prompt_tokens\":"));
static FINISH_REASON: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"finish_reason\":"));
static DATA: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"data:"));

fn number_after(hay: &[u8], key: &memmem::Finder<'_>) -> Option<u64> {
    let mut last = None;
    for at in key.find_iter(hay) {
        let rest = &hay[at + key.needle().len()..];
        let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        // Only a complete number (followed by something) counts: "12" split as "1"|"2" would lie.
        if digits > 0 && digits < rest.len() && digits <= 18 {
            last = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|s| s.parse().ok());
        }
    }
    last
}

/// The quoted strings after each `key` (a `null` or a string cut off by the chunk's end is
/// skipped).
fn strings_after<'h>(hay: &'h [u8], key: &memmem::Finder<'_>) -> Vec<&'h [u8]> {
    let needle = key.needle().len();
    key.find_iter(hay)
        .filter_map(|at| {
            let rest = &hay[at + needle..];
            let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
            let rest = rest.strip_prefix(b"\"")?;
            let len = rest
                .iter()
                .take(MAX_REASON_LEN + 1)
                .position(|&b| b == b'"')?;
            Some(&rest[..len])
        })
        .collect()
}

impl ResponseObserver {
    pub fn on_headers(&mut self, status: u16, content_type: Option<&str>) {
        self.status = Some(status);
        self.sse = content_type.is_some_and(|c| c.starts_with("text/event-stream"));
    }

    pub fn on_chunk(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        if self.first_byte.is_none() {
            self.first_byte = Some(Instant::now());
        }
        self.bytes += chunk.len() as u64;
        let mut count = self.sse.then(|| DATA.find_iter(chunk).count() as u64);
        // The seam between the bytes seen before (the last `TAIL` of them) and this chunk.
        let mut seam = std::mem::take(&mut self.tail);
        let before = seam.len();
        if before > 0 {
            seam.extend_from_slice(&chunk[..chunk.len().min(TAIL)]);
            self.scan(&seam);
            if let Some(n) = count.as_mut() {
                // Only the `data:` that straddle the seam: the others are counted on their side.
                let needle = DATA.needle().len();
                *n += DATA
                    .find_iter(&seam)
                    .filter(|&at| at < before && at + needle > before)
                    .count() as u64;
            }
        }
        self.sse_events += count.unwrap_or(0);
        self.scan(chunk);
        // Keep the last `TAIL` bytes seen, across chunks shorter than that too.
        if chunk.len() >= TAIL || before == 0 {
            seam.clear();
            seam.extend_from_slice(&chunk[chunk.len().saturating_sub(TAIL)..]);
        } else {
            seam.drain(..seam.len().saturating_sub(TAIL));
        }
        self.tail = seam;
    }

    fn scan(&mut self, hay: &[u8]) {
        if let Some(n) = number_after(hay, &COMPLETION_TOKENS) {
            self.completion_tokens = Some(n);
        }
        if let Some(n) = number_after(hay, &PROMPT_TOKENS) {
            self.prompt_tokens = Some(n);
        }
        if self.want_finish_reasons {
            for r in strings_after(hay, &FINISH_REASON) {
                let known = self.finish_reasons.iter().any(|k| k.as_bytes() == r);
                let printable = r.iter().all(|b| b.is_ascii_graphic());
                if !known && printable && self.finish_reasons.len() < MAX_REASONS {
                    self.finish_reasons
                        .push(String::from_utf8_lossy(r).into_owned());
                }
            }
        }
    }

    /// Output tokens: from `usage`, else (streams) the number of content events.
    pub fn output_tokens(&self) -> Option<u64> {
        self.completion_tokens.or_else(|| {
            // A stream without usage: role chunk, N token chunks, finish chunk, [DONE].
            (self.sse && self.sse_events > 2).then(|| self.sse_events - 2)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_usage_in_plain_json() {
        let mut o = ResponseObserver::default();
        o.on_headers(200, Some("application/json"));
        o.on_chunk(br#"{"choices":[],"usage":{"prompt_tokens":12,"total_tokens":28,"completion_tokens":16,"completion_tokens_details":null}}"#);
        assert_eq!((o.prompt_tokens, o.completion_tokens), (Some(12), Some(16)));
        assert!(o.first_byte.is_some());
    }

    #[test]
    fn finds_usage_split_across_chunks() {
        let body = br#"data: {"choices":[],"usage":{"prompt_tokens": 7,"completion_tokens":1234}}"#;
        for cut in 1..body.len() {
            let mut o = ResponseObserver::default();
            o.on_headers(200, Some("text/event-stream"));
            o.on_chunk(&body[..cut]);
            o.on_chunk(&body[cut..]);
            o.on_chunk(b"\n\ndata: [DONE]\n\n");
            assert_eq!(o.completion_tokens, Some(1234), "cut at {cut}");
            assert_eq!(o.prompt_tokens, Some(7), "cut at {cut}");
        }
    }

    #[test]
    fn finish_reasons_when_asked_split_or_not() {
        let body = br#"data: {"choices":[{"delta":{},"finish_reason":null}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"},{"index":1,"finish_reason": "stop"}]}

data: {"choices":[{"index":2,"finish_reason":"stop"}]}

data: [DONE]

"#;
        for cut in 1..body.len() {
            let mut o = ResponseObserver {
                want_finish_reasons: true,
                ..Default::default()
            };
            o.on_headers(200, Some("text/event-stream"));
            o.on_chunk(&body[..cut]);
            o.on_chunk(&body[cut..]);
            assert_eq!(o.finish_reasons, ["length", "stop"], "cut at {cut}");
        }
        let mut o = ResponseObserver::default();
        o.on_chunk(body);
        assert!(o.finish_reasons.is_empty(), "not collected unless asked");
    }

    #[test]
    fn counts_stream_events_without_usage() {
        let mut o = ResponseObserver::default();
        o.on_headers(200, Some("text/event-stream; charset=utf-8"));
        for _ in 0..5 {
            o.on_chunk(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
        }
        o.on_chunk(b"data: [DONE]\n\n");
        assert_eq!(o.output_tokens(), Some(4));
    }

    /// Found by fuzzing: with chunks shorter than the carried tail, usage was lost and a
    /// `data:` split across chunks was counted twice.
    #[test]
    fn one_byte_chunks_find_usage_and_count_events_once() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\n\n\
data: [DONE]\n\n";
        let mut o = ResponseObserver::default();
        o.on_headers(200, Some("text/event-stream"));
        for b in body.chunks(1) {
            o.on_chunk(b);
        }
        assert_eq!((o.prompt_tokens, o.completion_tokens), (Some(3), Some(9)));
        let mut whole = ResponseObserver::default();
        whole.on_headers(200, Some("text/event-stream"));
        whole.on_chunk(body);
        assert_eq!(o.sse_events, whole.sse_events);
    }
}
