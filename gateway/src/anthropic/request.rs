//! An Anthropic Messages request body → an OpenAI chat-completions body (see the field table
//! in [`super`]). Client mistakes become 400s that name the field (`param`), e.g.
//! `messages[2].content[0].type`, in the same wording as [`crate::proxy::request`].

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;

use crate::error::GatewayError;
use crate::proxy::request::check_model;

/// A translated request: what to forward and what the gateway routes and accounts by.
#[derive(Clone, Debug, PartialEq)]
pub struct Translated {
    /// The OpenAI chat-completions JSON body for the worker.
    pub body: Bytes,
    pub model: String,
    pub stream: bool,
    /// `metadata.user_id`, when non-empty (also sent as OpenAI's `user`).
    pub user: Option<String>,
}

/// The fields of Anthropic's request the gateway reads; the rest is ignored. Everything is
/// optional here so that a missing field gets our own message naming it.
#[derive(Deserialize)]
struct MessagesRequest {
    model: Option<String>,
    max_tokens: Option<serde_json::Number>,
    messages: Option<Vec<Message>>,
    system: Option<Text>,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u64>,
    stream: Option<bool>,
    metadata: Option<Metadata>,
    tools: Option<Vec<IgnoredAny>>,
    tool_choice: Option<ToolChoice>,
}

#[derive(Deserialize)]
struct Message {
    role: Option<String>,
    content: Option<Text>,
}

#[derive(Deserialize)]
struct Metadata {
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct ToolChoice {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// One content block; only `text` blocks are accepted (checked after parsing, so the error
/// can name the block).
#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
}

/// `content` / `system`: a string, or an array of content blocks.
enum Text {
    Plain(String),
    Blocks(Vec<Block>),
}

impl<'de> Deserialize<'de> for Text {
    /// A visitor rather than `#[serde(untagged)]`, so that an error inside a block keeps its
    /// path (`messages[0].content[1].text`) instead of "did not match any variant".
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content blocks")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text::Plain(v.to_string()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text::Plain(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
                while let Some(block) = seq.next_element::<Block>()? {
                    blocks.push(block);
                }
                Ok(Text::Blocks(blocks))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

impl Text {
    /// The text, blocks joined with nothing in between; `field` is the JSON path for errors.
    fn join(&self, field: &str) -> Result<Cow<'_, str>, GatewayError> {
        let blocks = match self {
            Text::Plain(s) => return Ok(Cow::Borrowed(s)),
            Text::Blocks(blocks) => blocks,
        };
        let mut out = String::new();
        for (j, block) in blocks.iter().enumerate() {
            match block.kind.as_deref() {
                Some("text") => match &block.text {
                    Some(t) => out.push_str(t),
                    None => return Err(required(&format!("{field}[{j}].text"))),
                },
                Some(other) => {
                    return Err(GatewayError::invalid(
                        format!(
                            "`{field}[{j}]` is a `{other}` block; only text content blocks are \
                             supported by this gateway"
                        ),
                        Some(&format!("{field}[{j}].type")),
                    ))
                }
                None => return Err(required(&format!("{field}[{j}].type"))),
            }
        }
        Ok(Cow::Owned(out))
    }
}

/// The chat-completions body sent to the worker (fields in this order).
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'a str,
    content: Cow<'a, str>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

fn required(field: &str) -> GatewayError {
    GatewayError::invalid(format!("`{field}` is required"), Some(field))
}

/// A parse failure: broken JSON, or a field of the wrong type (named by its path).
fn parse_error(e: serde_path_to_error::Error<serde_json::Error>) -> GatewayError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        Category::Data => {
            GatewayError::invalid(format!("invalid value for `{path}`: {inner}"), Some(&path))
        }
        _ => GatewayError::InvalidJson {
            message: format!("invalid JSON body: {inner}"),
        },
    }
}

/// Parse, validate and translate an Anthropic Messages request body.
pub fn translate(body: &[u8]) -> Result<Translated, GatewayError> {
    if body.is_empty() {
        return Err(GatewayError::invalid(
            "the request body is empty; a JSON object is required",
            None,
        ));
    }
    // Checked first: serde would read a struct from an array too, and name its elements.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(GatewayError::InvalidJson {
            message: "the request body must be a JSON object".to_string(),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let req: MessagesRequest = serde_path_to_error::deserialize(&mut *de).map_err(parse_error)?;
    de.end().map_err(|e| GatewayError::InvalidJson {
        message: format!("invalid JSON body: {e}"),
    })?;

    let model = req.model.as_deref().ok_or_else(|| required("model"))?;
    check_model(model)?;
    let max_tokens = match &req.max_tokens {
        None => return Err(required("max_tokens")),
        Some(n) => match n.as_u64() {
            Some(v) if v >= 1 => v,
            _ => {
                return Err(GatewayError::invalid(
                    format!("`max_tokens` must be an integer >= 1, got {n}"),
                    Some("max_tokens"),
                ))
            }
        },
    };
    let Some(messages) = &req.messages else {
        return Err(required("messages"));
    };
    if messages.is_empty() {
        return Err(GatewayError::invalid(
            "`messages` must contain at least one message",
            Some("messages"),
        ));
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(GatewayError::invalid(
            "tools are not supported by this gateway",
            Some("tools"),
        ));
    }
    if let Some(kind) = req.tool_choice.as_ref().and_then(|c| c.kind.as_deref()) {
        if kind != "auto" && kind != "none" {
            return Err(GatewayError::invalid(
                "tools are not supported by this gateway",
                Some("tool_choice"),
            ));
        }
    }

    let mut chat = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = &req.system {
        let text = system.join("system")?;
        if !text.is_empty() {
            chat.push(ChatMessage {
                role: "system",
                content: text,
            });
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_deref() {
            Some(r @ ("user" | "assistant")) => r,
            Some(other) => {
                return Err(GatewayError::invalid(
                    format!(
                        "`messages[{i}].role` must be \"user\" or \"assistant\", got \"{other}\""
                    ),
                    Some(&format!("messages[{i}].role")),
                ))
            }
            None => return Err(required(&format!("messages[{i}].role"))),
        };
        let field = format!("messages[{i}].content");
        let content = match &m.content {
            Some(c) => c.join(&field)?,
            None => return Err(required(&field)),
        };
        chat.push(ChatMessage { role, content });
    }

    let stream = req.stream.unwrap_or(false);
    let user = req
        .metadata
        .as_ref()
        .and_then(|m| m.user_id.as_deref())
        .filter(|u| !u.is_empty());
    let out = ChatRequest {
        model,
        messages: chat,
        max_tokens,
        stop: req.stop_sequences.as_deref().filter(|s| !s.is_empty()),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
        user,
    };
    let body = serde_json::to_vec(&out)
        .map_err(|e| GatewayError::Internal(format!("could not encode the request: {e}")))?;
    Ok(Translated {
        body: Bytes::from(body),
        model: model.to_string(),
        stream,
        user: user.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn ok(body: Value) -> (Translated, Value) {
        let t = translate(body.to_string().as_bytes()).unwrap();
        let v = serde_json::from_slice(&t.body).unwrap();
        (t, v)
    }

    #[test]
    fn minimal_request() {
        let (t, v) = ok(json!({
            "model": "m", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
        }));
        assert_eq!(t.model, "m");
        assert!(!t.stream);
        assert_eq!(t.user, None);
        assert_eq!(
            v,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "max_tokens": 16, "stream": false})
        );
        // Field order is fixed: model first, as the OpenAI request parser's probe reads it.
        assert!(std::str::from_utf8(&t.body).unwrap().starts_with(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16"#
        ));
    }

    #[test]
    fn full_request() {
        let (t, v) = ok(json!({
            "model": "claude-x", "max_tokens": 100,
            "system": "be brief",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"},
                                             {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]},
                {"role": "assistant", "content": "c"},
                {"role": "user", "content": []},
            ],
            "stop_sequences": ["###", "\n\nHuman:"],
            "temperature": 0.5, "top_p": 0.9, "top_k": 40,
            "stream": true,
            "metadata": {"user_id": "u-1"},
            "thinking": {"type": "disabled"},
            "tools": [], "tool_choice": {"type": "auto"},
        }));
        assert!(t.stream);
        assert_eq!(t.user.as_deref(), Some("u-1"));
        assert_eq!(
            v,
            json!({
                "model": "claude-x",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "ab"},
                    {"role": "assistant", "content": "c"},
                    {"role": "user", "content": ""},
                ],
                "max_tokens": 100,
                "stop": ["###", "\n\nHuman:"],
                "temperature": 0.5, "top_p": 0.9, "top_k": 40,
                "stream": true,
                "stream_options": {"include_usage": true},
                "user": "u-1",
            })
        );
    }

    #[test]
    fn system_blocks_and_empty_values() {
        let (t, v) = ok(json!({
            "model": "m", "max_tokens": 1,
            "system": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}],
            "messages": [{"role": "user", "content": "hi"}],
            "stop_sequences": [], "metadata": {"user_id": ""}, "stream": false,
        }));
        assert_eq!(
            v["messages"][0],
            json!({"role": "system", "content": "one two"})
        );
        assert!(v.get("stop").is_none());
        assert!(v.get("user").is_none() && t.user.is_none());
        assert!(v.get("stream_options").is_none());
        for system in [json!(""), json!([]), Value::Null] {
            let (_, v) = ok(json!({
                "model": "m", "max_tokens": 1, "system": system,
                "messages": [{"role": "user", "content": "hi"}],
            }));
            assert_eq!(v["messages"].as_array().unwrap().len(), 1, "{system}");
        }
    }

    #[test]
    fn rejects_client_mistakes_naming_the_field() {
        let base = || {
            json!({"model": "m", "max_tokens": 8,
                   "messages": [{"role": "user", "content": "hi"}]})
        };
        let with = |k: &str, val: Value| {
            let mut b = base();
            b[k] = val;
            b
        };
        let without = |k: &str| {
            let mut b = base();
            b.as_object_mut().unwrap().remove(k);
            b
        };
        let two = |content: Value| {
            with(
                "messages",
                json!([{"role": "user", "content": "x"},
                       {"role": "assistant", "content": "y"},
                       {"role": "user", "content": content}]),
            )
        };
        let cases: Vec<(Value, &str, &str)> = vec![
            (without("model"), "model", "`model` is required"),
            (with("model", json!("  ")), "model", "must not be empty"),
            (
                with("model", json!("a".repeat(300))),
                "model",
                "longer than 256",
            ),
            (with("model", json!(5)), "model", "invalid type"),
            (
                without("max_tokens"),
                "max_tokens",
                "`max_tokens` is required",
            ),
            (
                with("max_tokens", json!(0)),
                "max_tokens",
                "integer >= 1, got 0",
            ),
            (with("max_tokens", json!(-3)), "max_tokens", "integer >= 1"),
            (with("max_tokens", json!(1.5)), "max_tokens", "integer >= 1"),
            (with("max_tokens", json!("8")), "max_tokens", "invalid type"),
            (without("messages"), "messages", "`messages` is required"),
            (
                with("messages", json!([])),
                "messages",
                "at least one message",
            ),
            (with("messages", json!("hi")), "messages", "invalid type"),
            (
                with("messages", json!([{"content": "x"}])),
                "messages[0].role",
                "is required",
            ),
            (
                with("messages", json!([{"role": "system", "content": "x"}])),
                "messages[0].role",
                "\"user\" or \"assistant\"",
            ),
            (
                with("messages", json!([{"role": "user"}])),
                "messages[0].content",
                "is required",
            ),
            (
                two(json!(7)),
                "messages[2].content",
                "a string or an array of content blocks",
            ),
            (
                two(json!([{"type": "text", "text": "ok"}, {"type": "image", "source": {}}])),
                "messages[2].content[1].type",
                "only text content blocks are supported",
            ),
            (
                two(json!([{"type": "tool_result", "tool_use_id": "t", "content": "r"}])),
                "messages[2].content[0].type",
                "`tool_result` block",
            ),
            (
                two(json!([{"text": "x"}])),
                "messages[2].content[0].type",
                "is required",
            ),
            (
                two(json!([{"type": "text"}])),
                "messages[2].content[0].text",
                "is required",
            ),
            (
                two(json!([{"type": "text", "text": 3}])),
                "messages[2].content[0].text",
                "invalid type",
            ),
            (
                two(json!(["plain"])),
                "messages[2].content[0]",
                "invalid type",
            ),
            (
                with("system", json!([{"type": "document"}])),
                "system[0].type",
                "only text content blocks",
            ),
            (with("system", json!({"a": 1})), "system", "invalid type"),
            (
                with("stop_sequences", json!("###")),
                "stop_sequences",
                "invalid type",
            ),
            (
                with("stop_sequences", json!(["a", 1])),
                "stop_sequences[1]",
                "invalid type",
            ),
            (
                with("temperature", json!("hot")),
                "temperature",
                "invalid type",
            ),
            (with("top_p", json!([])), "top_p", "invalid type"),
            (with("top_k", json!(-1)), "top_k", "invalid value"),
            (with("stream", json!("yes")), "stream", "invalid type"),
            (
                with("metadata", json!({"user_id": 9})),
                "metadata.user_id",
                "invalid type",
            ),
            (
                with(
                    "tools",
                    json!([{"name": "get_weather", "input_schema": {}}]),
                ),
                "tools",
                "tools are not supported by this gateway",
            ),
            (with("tools", json!({})), "tools", "invalid type"),
            (
                with("tool_choice", json!({"type": "any"})),
                "tool_choice",
                "tools are not supported",
            ),
        ];
        for (body, param, want) in cases {
            let e = translate(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            match &e {
                GatewayError::InvalidRequest { param: p, .. } => {
                    assert_eq!(p.as_deref(), Some(param), "{body}: {e}")
                }
                other => panic!("{body}: not InvalidRequest: {other:?}"),
            }
            assert!(e.to_string().contains(want), "{body}: `{e}` lacks `{want}`");
        }
    }

    #[test]
    fn broken_json_is_invalid_json() {
        for body in [
            &b"{\"model\":"[..],
            b"[1,2]",
            b"\"text\"",
            b"{\"model\":\"m\xff\"}",
            b"{} x",
        ] {
            let e = translate(body).unwrap_err();
            assert!(
                matches!(e, GatewayError::InvalidJson { .. }),
                "{}: {e:?}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(e.status(), 400);
        }
        let e = translate(b"").unwrap_err();
        assert!(e.to_string().contains("empty"));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let t = translate(
            br#"{"model":"m\u0031","max_tokens":2,"messages":[{"role":"user","content":"\"q\"\n"}]}"#,
        )
        .unwrap();
        assert_eq!(t.model, "m1");
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["messages"][0]["content"], "\"q\"\n");
    }
}
