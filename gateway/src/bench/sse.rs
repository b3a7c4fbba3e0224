//! Reading a streamed response: an incremental `text/event-stream` parser ([`SseParser`]) and
//! what one OpenAI stream event means for the measurement ([`classify`]).

use serde_json::Value;

use super::target::error_message;

/// One complete server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the server set one.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Turns body bytes, in pieces of any size, into events (WHATWG rules: `\n` or `\r\n` line
/// ends, `:` comments, one optional space after the colon, multi-line `data`, blank line ends
/// an event).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds the next piece of the body; returns the events it completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(event) = self.line_done(&line) {
                    events.push(event);
                }
            } else {
                self.line.push(b);
            }
        }
        events
    }

    /// At the end of the body: an event the server did not terminate with a blank line (lenient;
    /// the spec would drop it).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.line);
        let from_line = if line.is_empty() {
            None
        } else {
            self.line_done(&line)
        };
        from_line.or_else(|| self.line_done(b""))
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take()?;
            return Some(SseEvent {
                event: self.event.take(),
                data,
            });
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

/// What one event of an OpenAI stream means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// `data: [DONE]`: the stream ended properly.
    Done,
    /// An `error` event, a chunk with an `error` object, or a chunk that is not JSON.
    Error(String),
    /// A regular chunk.
    Data {
        /// Carries generated text: non-empty `delta.content` (chat), `text` (completions) or
        /// `delta.reasoning_content` / `delta.reasoning` (reasoning models) in some choice.
        content: bool,
        /// `usage.completion_tokens`, when the chunk has it.
        completion_tokens: Option<u64>,
    },
}

/// Classifies one event of a chat or completions stream.
pub fn classify(event: &SseEvent) -> Chunk {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Chunk::Done;
    }
    if event.event.as_deref() == Some("error") {
        return Chunk::Error(error_message(data.as_bytes()));
    }
    let value: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => {
            let head: String = data.chars().take(120).collect();
            return Chunk::Error(format!("malformed stream chunk ({e}): {head}"));
        }
    };
    if value.get("error").is_some_and(|e| !e.is_null()) {
        return Chunk::Error(error_message(data.as_bytes()));
    }
    let content = value["choices"]
        .as_array()
        .is_some_and(|choices| choices.iter().any(has_content));
    Chunk::Data {
        content,
        completion_tokens: value["usage"]["completion_tokens"].as_u64(),
    }
}

fn has_content(choice: &Value) -> bool {
    let non_empty = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    let delta = &choice["delta"];
    non_empty(&delta["content"])
        || non_empty(&delta["reasoning_content"])
        || non_empty(&delta["reasoning"])
        || non_empty(&choice["text"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(d: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: d.to_string(),
        }
    }

    #[test]
    fn events_split_across_pieces_and_crlf() {
        let body = "data: {\"a\":1}\r\n\r\n: keep-alive\n\ndata:{\"b\":2}\n\nevent: error\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        // One byte at a time: the worst case of network chunking.
        for b in body.as_bytes() {
            events.extend(parser.feed(std::slice::from_ref(b)));
        }
        assert_eq!(parser.finish(), None);
        assert_eq!(
            events,
            vec![
                data("{\"a\":1}"),
                data("{\"b\":2}"),
                SseEvent {
                    event: Some("error".into()),
                    data: "x\ny".into()
                },
                data("[DONE]"),
            ]
        );
    }

    #[test]
    fn unterminated_last_event_is_kept() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"data: [DONE]").is_empty());
        assert_eq!(parser.finish(), Some(data("[DONE]")));
        let mut parser = SseParser::default();
        assert!(parser.feed(b"data: [DONE]\n").is_empty());
        assert_eq!(parser.finish(), Some(data("[DONE]")));
    }

    #[test]
    fn classifies_openai_chunks() {
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        let token = r#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#;
        let text = r#"{"choices":[{"index":0,"text":"hi","finish_reason":null}]}"#;
        let reasoning = r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#;
        let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7}}"#;
        let content = |c, n| Chunk::Data {
            content: c,
            completion_tokens: n,
        };
        assert_eq!(classify(&data(role)), content(false, None));
        assert_eq!(classify(&data(token)), content(true, None));
        assert_eq!(classify(&data(text)), content(true, None));
        assert_eq!(classify(&data(reasoning)), content(true, None));
        assert_eq!(classify(&data(finish)), content(false, None));
        assert_eq!(classify(&data(usage)), content(false, Some(7)));
        assert_eq!(classify(&data(" [DONE] ")), Chunk::Done);
    }

    #[test]
    fn error_events_and_garbage() {
        let err = r#"{"error":{"message":"worker died","type":"InternalServerError"}}"#;
        assert_eq!(classify(&data(err)), Chunk::Error("worker died".into()));
        let event = SseEvent {
            event: Some("error".into()),
            data: "upstream gone".into(),
        };
        assert_eq!(classify(&event), Chunk::Error("upstream gone".into()));
        assert!(matches!(classify(&data("{not json")), Chunk::Error(m) if m.contains("malformed")));
        assert_eq!(
            classify(&data(r#"{"error":null,"choices":[]}"#)),
            Chunk::Data {
                content: false,
                completion_tokens: None
            }
        );
    }
}
