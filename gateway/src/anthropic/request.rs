//! An Anthropic Messages request body → an OpenAI chat-completions body (see the field table
//! in [`super`]). Client mistakes become 400s that name the field (`param`), e.g.
//! `messages[2].content[0].type`, in the same wording as [`crate::proxy`'s request parser].

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;

use crate::edge::check_model;
use crate::error::GatewayError;

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
#[path = "request_tests.rs"]
mod tests;
