//! What the gateway reads from a request body: the routing fields (`model`, `stream`, the
//! affinity key) and enough validation to answer client mistakes with a 400 itself.
//!
//! The body is deserialised into a borrowing struct (`messages`/`prompt`/`input` stay raw
//! JSON slices), never into a `serde_json::Value` and never re-serialised: it is forwarded
//! byte for byte.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use std::sync::Arc;

use super::route::Endpoint;
use crate::config::CacheAwareConfig;
use crate::edge::check_model;
use crate::error::GatewayError;
use crate::routing::prefix_index::Prompt;
use crate::routing::rng::hash_bytes;

/// Routing facts of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestInfo {
    pub model: Option<String>,
    pub stream: bool,
    /// Hash of the affinity key (see [`affinity`]).
    pub affinity: Option<u64>,
    /// Hash of the body's `user` field (a rate-limit identity when there is no API key).
    pub user: Option<u64>,
    /// The body's `session_id` field, as sent.
    pub session_id: Option<String>,
    /// The body's `priority` field (the gateway queue's class; also passed on to the worker).
    pub priority: Option<i64>,
    /// The prompt's chunk hashes for the cache-aware policies (only when they are in use).
    pub prompt: Option<Arc<Prompt>>,
    /// Size of the prompt as sent (`messages`, `prompt` or `input`, raw JSON): the tokens
    /// estimate of the per-key quotas.
    pub prompt_bytes: u64,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
}

/// Header-side inputs of the affinity key.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeySources<'a> {
    /// `X-Session-ID` header.
    pub session_header: Option<&'a str>,
    /// The caller's API key (`Authorization: Bearer …` / `x-api-key`).
    pub api_key: Option<&'a str>,
    /// Prompt bytes used when nothing else identifies the conversation.
    pub prefix_bytes: usize,
    /// When set, the prompt is cut into chunk hashes for the cache-aware policies.
    pub prefixes: Option<&'a CacheAwareConfig>,
}

fn is_null(raw: Option<&RawValue>) -> bool {
    raw.is_none_or(|r| r.get() == "null")
}

/// Parse and validate a JSON body for `endpoint`.
pub fn parse(
    endpoint: Endpoint,
    body: &[u8],
    keys: KeySources<'_>,
) -> Result<RequestInfo, GatewayError> {
    if body.is_empty() {
        if endpoint == Endpoint::OtherV1 {
            return Ok(RequestInfo {
                affinity: affinity(None, None, keys, None),
                ..Default::default()
            });
        }
        return Err(GatewayError::invalid(
            "the request body is empty; a JSON object is required",
            None,
        ));
    }
    let probe: Probe<'_> = match serde_json::from_slice(body) {
        Ok(p) => p,
        // Other endpoints may carry non-JSON bodies (multipart audio, …): route without a model.
        Err(_) if endpoint == Endpoint::OtherV1 => return Ok(RequestInfo::default()),
        Err(e) => {
            return Err(GatewayError::InvalidJson {
                message: format!("invalid JSON body: {e}"),
            })
        }
    };
    let model = match probe.model {
        Some(m) => {
            check_model(&m)?;
            Some(m.into_owned())
        }
        None if endpoint == Endpoint::OtherV1 => None,
        None => return Err(GatewayError::invalid("`model` is required", Some("model"))),
    };
    let (field, raw) = match endpoint {
        Endpoint::Chat => ("messages", probe.messages),
        Endpoint::Completions => ("prompt", probe.prompt),
        Endpoint::Embeddings => ("input", probe.input),
        Endpoint::Messages => ("messages", probe.messages),
        Endpoint::OtherV1 => ("", None),
    };
    if endpoint != Endpoint::OtherV1 && is_null(raw) {
        return Err(GatewayError::invalid(
            format!("`{field}` is required"),
            Some(static_param(endpoint)),
        ));
    }
    if endpoint == Endpoint::Chat && raw.is_some_and(|r| !r.get().starts_with('[')) {
        return Err(GatewayError::invalid(
            "`messages` must be an array of messages",
            Some("messages"),
        ));
    }
    let prompt = raw.or(probe.messages).or(probe.prompt).or(probe.input);
    let prompt_chunks = keys.prefixes.zip(raw).and_then(|(c, text)| {
        // Embeddings have no prefix cache to find.
        (endpoint != Endpoint::Embeddings).then(|| {
            let decode = probe
                .max_completion_tokens
                .or(probe.max_tokens)
                .and_then(|r| r.get().parse::<u64>().ok())
                .map_or(c.default_decode_tokens, |n| {
                    n.min(u64::from(u32::MAX)) as u32
                });
            let model = model.as_deref().unwrap_or("");
            Prompt::new(
                model,
                text.get().as_bytes(),
                c.chunk_bytes,
                c.bytes_per_token,
                decode,
            )
        })
    });
    Ok(RequestInfo {
        model,
        stream: probe.stream.unwrap_or(false),
        user: nonempty(probe.user.as_deref()).map(|u| hash_bytes(u.as_bytes())),
        session_id: nonempty(probe.session_id.as_deref()).map(str::to_string),
        priority: probe.priority,
        prompt: prompt_chunks,
        prompt_bytes: prompt.map_or(0, |r| r.get().len() as u64),
        affinity: affinity(
            probe.session_id.as_deref(),
            probe.user.as_deref(),
            keys,
            prompt.map(|r| r.get()),
        ),
    })
}

fn static_param(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "messages",
        Endpoint::Completions => "prompt",
        Endpoint::Embeddings => "input",
        Endpoint::Messages => "messages",
        Endpoint::OtherV1 => "body",
    }
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|v| !v.is_empty())
}

/// The affinity key, first present of: `X-Session-ID` header, `session_id` field, `user`
/// field, API key, the first `prefix_bytes` of the prompt (raw JSON). Hashed; kinds are
/// tagged so a user named like a session does not collide with it.
pub fn affinity(
    session_field: Option<&str>,
    user: Option<&str>,
    keys: KeySources<'_>,
    prompt: Option<&str>,
) -> Option<u64> {
    let tagged = |tag: u8, s: &str| {
        let mut h = hash_bytes(s.as_bytes());
        h ^= tag as u64;
        Some(crate::routing::rng::mix64(h))
    };
    if let Some(s) = nonempty(keys.session_header).or(nonempty(session_field)) {
        return tagged(1, s);
    }
    if let Some(u) = nonempty(user) {
        return tagged(2, u);
    }
    if let Some(k) = nonempty(keys.api_key) {
        return tagged(3, k);
    }
    let p = nonempty(prompt)?;
    let mut end = p.len().min(keys.prefix_bytes.max(1));
    while !p.is_char_boundary(end) {
        end -= 1;
    }
    tagged(4, &p[..end])
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
