//! A chat request that carries a session: the body is rebuilt with the session's system
//! prompt and history in front of the request's messages, the session's worker is preferred,
//! and a [`ReplyTap`] passes the worker's response through unchanged while collecting the
//! assistant's reply, which is stored with the request's messages once the response ended.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::store::{Message, Session, SessionStore};
use super::{now_ms, owner_of, Owner};
use crate::config::SessionsConfig;
use crate::edge::translate::{ResponseTranslator, Translation};
use crate::error::{ApiFlavor, GatewayError};
use crate::sse::Events;
use crate::state::AppState;

/// A plain response body larger than this is passed on but not parsed for the reply.
const MAX_REPLY_BODY: usize = 16 << 20;

/// What the request path needs to forward a session's chat request.
#[derive(Debug)]
pub struct Prepared {
    /// The rebuilt request body (history prepended, `session_id` removed).
    pub body: Bytes,
    pub translation: Translation,
    /// The session's worker (uid), when it is still in the pool.
    pub prefer: Option<u64>,
}

/// The text of a message's `content`: a string, or an array of text parts (joined).
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(
                |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => Some(t.as_str()),
                    _ => None,
                },
            )
            .collect::<Option<Vec<&str>>>()
            .map(|texts| texts.concat()),
        _ => None,
    }
}

/// The request's messages as stored in the session, or a 400 naming the offending field.
fn request_messages(messages: &[Value]) -> Result<Vec<Message>, GatewayError> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
                let field = format!("messages[{i}].role");
                GatewayError::invalid(format!("`{field}` must be a string"), Some(&field))
            })?;
            let content = m.get("content").and_then(text_of).ok_or_else(|| {
                let field = format!("messages[{i}].content");
                GatewayError::invalid(
                    format!(
                        "`{field}`: session requests take text messages (a string or text parts)"
                    ),
                    Some(&field),
                )
            })?;
            Ok(Message {
                role: role.to_string(),
                content,
            })
        })
        .collect()
}

fn message_value(m: &Message) -> Value {
    serde_json::json!({ "role": m.role, "content": m.content })
}

/// The body sent to the worker: system prompt, history, then the request's own messages.
fn rebuild(mut fields: Map<String, Value>, session: &Session, own: Vec<Value>) -> Bytes {
    let mut messages = Vec::with_capacity(session.messages.len() + own.len() + 1);
    if let Some(system) = &session.system_prompt {
        messages.push(serde_json::json!({ "role": "system", "content": system }));
    }
    messages.extend(session.messages.iter().map(message_value));
    messages.extend(own);
    fields.insert("messages".into(), Value::Array(messages));
    fields.remove("session_id");
    Bytes::from(serde_json::to_vec(&Value::Object(fields)).unwrap_or_default())
}

/// Look the session up for this caller and rebuild the request around it.
pub async fn prepare(
    state: &AppState,
    id: &str,
    api_key: Option<&str>,
    body: &[u8],
    stream: bool,
) -> Result<Prepared, GatewayError> {
    let owner = owner_of(api_key);
    let session = state
        .sessions
        .get(id, &owner, now_ms())
        .await?
        .ok_or_else(|| GatewayError::SessionNotFound(id.chars().take(100).collect()))?;
    let mut fields: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson {
            message: format!("invalid JSON body: {e}"),
        })?;
    let own = match fields.remove("messages") {
        Some(Value::Array(m)) => m,
        _ => {
            return Err(GatewayError::invalid(
                "`messages` must be an array of messages",
                Some("messages"),
            ))
        }
    };
    let asked = request_messages(&own)?;
    let prefer = session.worker.as_deref().and_then(|w| {
        let pool = state.pool.load();
        pool.workers.iter().find(|x| x.id == w).map(|x| x.uid)
    });
    let body = rebuild(fields, &session, own);
    let tap = TapSpec {
        store: state.sessions.clone(),
        id: session.id,
        owner,
        asked,
        limits: state.config.load().sessions.clone(),
        stream,
    };
    let translation = Translation {
        upstream_path: None,
        factory: Box::new(move |status, worker| -> Box<dyn ResponseTranslator> {
            if (200..300).contains(&status) {
                Box::new(ReplyTap::new(tap.clone(), worker))
            } else {
                Box::new(Unchanged)
            }
        }),
    };
    Ok(Prepared {
        body,
        translation,
        prefer,
    })
}

#[derive(Clone)]
struct TapSpec {
    store: Arc<dyn SessionStore>,
    id: String,
    owner: Owner,
    asked: Vec<Message>,
    limits: SessionsConfig,
    stream: bool,
}

/// A worker's error answer, passed on as it is (the session is left unchanged).
struct Unchanged;

impl ResponseTranslator for Unchanged {
    fn content_type(&self) -> &'static str {
        "application/json"
    }
    fn chunk(&mut self, data: &[u8]) -> Bytes {
        Bytes::copy_from_slice(data)
    }
    fn finish(&mut self) -> Bytes {
        Bytes::new()
    }
}

/// Passes a successful response through and stores the exchange when it ended.
pub struct ReplyTap {
    spec: TapSpec,
    worker: String,
    events: Events,
    body: Vec<u8>,
    reply: String,
    /// The append built by `finish`, handed out by `commit` (run in the background if
    /// nobody takes it).
    pending: Option<BoxFuture<'static, ()>>,
}

impl Drop for ReplyTap {
    fn drop(&mut self) {
        if let (Some(work), Ok(rt)) = (self.pending.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(work);
        }
    }
}

impl ReplyTap {
    fn new(spec: TapSpec, worker: &str) -> Self {
        Self {
            spec,
            worker: worker.to_string(),
            events: Events::default(),
            body: Vec::new(),
            reply: String::new(),
            pending: None,
        }
    }
}

/// `choices[0].<field>.content` of an OpenAI chat response or chunk.
fn content_at<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("choices")?
        .get(0)?
        .get(field)?
        .get("content")?
        .as_str()
}

impl ResponseTranslator for ReplyTap {
    fn content_type(&self) -> &'static str {
        if self.spec.stream {
            "text/event-stream"
        } else {
            "application/json"
        }
    }

    fn chunk(&mut self, data: &[u8]) -> Bytes {
        if self.spec.stream {
            let reply = &mut self.reply;
            self.events.push(data, |payload| {
                if let Ok(v) = serde_json::from_slice::<Value>(payload) {
                    if let Some(text) = content_at(&v, "delta") {
                        reply.push_str(text);
                    }
                }
            });
        } else if self.body.len() + data.len() <= MAX_REPLY_BODY {
            self.body.extend_from_slice(data);
        }
        Bytes::copy_from_slice(data)
    }

    fn finish(&mut self) -> Bytes {
        if !self.spec.stream {
            if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
                if let Some(text) = content_at(&v, "message") {
                    self.reply = text.to_string();
                }
            }
        }
        let mut exchange = std::mem::take(&mut self.spec.asked);
        exchange.push(Message {
            role: "assistant".into(),
            content: std::mem::take(&mut self.reply),
        });
        let s = self.spec.clone();
        let worker = Some(self.worker.clone());
        self.pending = Some(Box::pin(async move {
            let stored = s
                .store
                .append(&s.id, &s.owner, exchange, worker, &s.limits, now_ms())
                .await;
            match stored {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(session = %s.id, "session gone before its reply was stored")
                }
                Err(e) => {
                    tracing::warn!(session = %s.id, error = %e, "a session's reply was not stored")
                }
            }
        }));
        Bytes::new()
    }

    fn commit(&mut self) -> Option<BoxFuture<'static, ()>> {
        self.pending.take()
    }

    fn abort(&mut self, message: &str) -> Bytes {
        if !self.spec.stream {
            return Bytes::new();
        }
        // The same SSE error event the gateway sends for broken streams without a session.
        let (_, _, body) =
            GatewayError::UpstreamFailed(message.to_string()).render(ApiFlavor::OpenAi);
        let mut event = b"data: ".to_vec();
        event.extend_from_slice(&body);
        event.extend_from_slice(b"\n\n");
        Bytes::from(event)
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
