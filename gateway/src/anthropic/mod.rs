//! Anthropic's Messages API (`POST /v1/messages`) in front of workers that speak only OpenAI's
//! chat completions: [`request::translate`] turns the client's body into a chat-completions
//! body before routing, and [`translator`] makes the [`ResponseTranslator`] that turns the
//! worker's answer (JSON, SSE stream or error) back into Anthropic's shapes on the way out.
//! Only text is supported: image/document/tool blocks and `tools` are refused with a 400.
//!
//! # Request fields ([`request`])
//! | Anthropic                                | OpenAI chat completions                    |
//! |------------------------------------------|--------------------------------------------|
//! | `model` (required)                       | `model`                                    |
//! | `max_tokens` (required, ≥ 1)             | `max_tokens`                               |
//! | `system` (string or text blocks)         | a first `system` message (none if empty)   |
//! | `messages[].role` (`user`, `assistant`)  | `messages[].role`                          |
//! | `messages[].content` (string or blocks)  | `messages[].content`, one string           |
//! | `stop_sequences`                         | `stop` (none if empty)                     |
//! | `temperature`, `top_p`, `top_k`          | the same (`top_k`: a vLLM extension)       |
//! | `stream`                                 | `stream`, `stream_options.include_usage`   |
//! | `metadata.user_id`                       | `user` (and [`request::Translated::user`]) |
//! | `tools` (non-empty), `tool_choice` `any`/`tool` | refused with a 400                  |
//! | anything else (`thinking`, …)            | ignored                                    |
//!
//! The text blocks of one message (or of `system`) are joined with nothing in between:
//! consecutive text blocks are one continuous text in Anthropic's semantics.
//!
//! # Stop reasons ([`response`], [`stream`])
//! | worker `finish_reason`                        | `stop_reason`   | `stop_sequence` |
//! |-----------------------------------------------|-----------------|-----------------|
//! | `stop`, with a string `stop_reason` (vLLM)    | `stop_sequence` | that string     |
//! | `stop` otherwise                              | `end_turn`      | `null`          |
//! | `length`                                      | `max_tokens`    | `null`          |
//! | anything else, or none                        | `end_turn`      | `null`          |
//!
//! vLLM puts the matched stop string in the choice's `stop_reason`; workers that do not
//! report it give `end_turn` for a stop sequence too.
//!
//! Usage: `prompt_tokens` → `input_tokens`, `completion_tokens` → `output_tokens` (0 when the
//! worker reports none; a stream without a usage chunk counts its content events).
//!
//! # Worker errors ([`response`])
//! A non-2xx worker answer keeps its status; its message (`error.message` of OpenAI's shape,
//! else `error`/`message`/`detail`, else the body text) goes into
//! `{"type":"error","error":{"type","message"}}` with `type` by status:
//!
//! | worker status | `error.type`            |
//! |---------------|-------------------------|
//! | 400, other 4xx | `invalid_request_error` |
//! | 401           | `authentication_error`  |
//! | 403           | `permission_error`      |
//! | 404           | `not_found_error`       |
//! | 413           | `request_too_large`     |
//! | 429           | `rate_limit_error`      |
//! | 529           | `overloaded_error`      |
//! | 5xx, anything else | `api_error`        |
//!
//! The gateway's own errors on this route are rendered by
//! [`GatewayError::render`](crate::error::GatewayError::render) with
//! [`ApiFlavor::Anthropic`](crate::error::ApiFlavor::Anthropic).
//!
//! # Stream events ([`stream`])
//! Each output event is `event: <type>\ndata: <json>\n\n`:
//!
//! 1. At the worker's first event: `message_start` (empty content, usage 0/0, or the
//!    prompt tokens when the worker already sent them) and `content_block_start` (index 0,
//!    empty text).
//! 2. For each non-empty `choices[0].delta.content`: `content_block_delta` (`text_delta`).
//! 3. At `data: [DONE]`, or when the body ends without it: `content_block_stop`,
//!    `message_delta` (stop reason; usage from the worker's usage chunk, which the request
//!    asks for with `include_usage`), `message_stop`.
//! 4. Instead of 3, at a worker `{"error":…}` event or [`ResponseTranslator::abort`]: one
//!    `error` event (`api_error`). Nothing follows either end.
//!
//! No `ping` events are sent (the SDKs skip them).

pub mod request;
pub mod response;
pub mod stream;

use crate::edge::translate::{ResponseTranslator, TranslatorFactory};

/// The translator for one attempt's response, from the worker's status and whether the
/// client asked for a stream: an error translator for non-2xx, else the stream or JSON one.
/// `model` is the model the client asked for (echoed in the message).
pub fn translator(status: u16, stream: bool, model: String) -> Box<dyn ResponseTranslator> {
    if !(200..300).contains(&status) {
        Box::new(response::ErrorTranslator::new(status))
    } else if stream {
        Box::new(stream::StreamTranslator::new(model))
    } else {
        Box::new(response::JsonTranslator::new(model))
    }
}

/// [`translator`] as the proxy's per-attempt factory.
pub fn factory(stream: bool, model: String) -> TranslatorFactory {
    Box::new(move |status, _worker| translator(status, stream, model.clone()))
}

/// `msg_` followed by the worker's response id, or by 32 random hex digits without one.
fn message_id(worker_id: Option<&str>) -> String {
    match worker_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("msg_{id}"),
        None => format!("msg_{:032x}", fastrand::u128(..)),
    }
}

/// Anthropic's `(stop_reason, stop_sequence)` for a worker's `finish_reason` and the matched
/// stop string vLLM reports in `stop_reason` (see the table above).
fn stop_reason(
    finish_reason: Option<&str>,
    matched: Option<&str>,
) -> (&'static str, Option<String>) {
    match (finish_reason, matched) {
        (Some("stop"), Some(s)) => ("stop_sequence", Some(s.to_string())),
        (Some("length"), _) => ("max_tokens", None),
        _ => ("end_turn", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_translator_by_status_and_stream() {
        assert_eq!(
            translator(200, false, "m".into()).content_type(),
            "application/json"
        );
        assert_eq!(
            translator(200, true, "m".into()).content_type(),
            "text/event-stream"
        );
        let mut e = translator(500, true, "m".into());
        assert_eq!(e.content_type(), "application/json");
        assert_eq!(e.status(500), 500);
        e.chunk(br#"{"error":{"message":"boom"}}"#);
        let v: serde_json::Value = serde_json::from_slice(&e.finish()).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(
            factory(true, "m".into())(200, "w1").content_type(),
            "text/event-stream"
        );
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason(Some("stop"), None), ("end_turn", None));
        assert_eq!(
            stop_reason(Some("stop"), Some("###")),
            ("stop_sequence", Some("###".to_string()))
        );
        assert_eq!(stop_reason(Some("length"), None), ("max_tokens", None));
        assert_eq!(stop_reason(Some("length"), Some("x")), ("max_tokens", None));
        assert_eq!(stop_reason(Some("abort"), None), ("end_turn", None));
        assert_eq!(stop_reason(None, None), ("end_turn", None));
    }

    #[test]
    fn message_ids() {
        assert_eq!(message_id(Some("chatcmpl-1")), "msg_chatcmpl-1");
        let a = message_id(None);
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("msg_"));
        assert_ne!(message_id(Some("")), "msg_");
    }
}
