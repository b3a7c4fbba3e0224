//! A chat request that carries a session: the body is rebuilt with the session's system
//! prompt and history in front of the request's messages, the session's worker is preferred,
//! and a [`ReplyTap`] passes the worker's response through unchanged while collecting the
//! assistant's reply, which is stored with the request's messages once the response ended.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::store::{Message, Session, SessionStore};
use super::{now_ms, owner_of, Owner, SessionsConfig};
use crate::error::{ApiFlavor, GatewayError};
use crate::proxy::translate::{ResponseTranslator, Translation};
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
pub fn prepare(
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
}

impl ReplyTap {
    fn new(spec: TapSpec, worker: &str) -> Self {
        Self {
            spec,
            worker: worker.to_string(),
            events: Events::default(),
            body: Vec::new(),
            reply: String::new(),
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
        let s = &self.spec;
        let stored = s.store.append(
            &s.id,
            &s.owner,
            exchange,
            Some(self.worker.clone()),
            &s.limits,
            now_ms(),
        );
        if !stored {
            tracing::debug!(session = %s.id, "session gone before its reply was stored");
        }
        Bytes::new()
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
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::session::MemoryStore;

    fn session() -> Session {
        Session {
            id: "sess_1".into(),
            owner: None,
            title: None,
            system_prompt: Some("be brief".into()),
            created_ms: now_ms(),
            last_used_ms: now_ms(),
            ttl_seconds: 60,
            messages: VecDeque::from(vec![
                Message {
                    role: "user".into(),
                    content: "q0".into(),
                },
                Message {
                    role: "assistant".into(),
                    content: "a0".into(),
                },
            ]),
            trimmed: 0,
            worker: None,
            seq: 0,
        }
    }

    #[test]
    fn history_goes_before_the_request_and_session_id_is_dropped() {
        let body = br#"{"model":"m","session_id":"sess_1","messages":[{"role":"user","content":[{"type":"text","text":"q"},{"type":"text","text":"1"}]}],"max_tokens":3}"#;
        let mut fields: Map<String, Value> = serde_json::from_slice(body).unwrap();
        let own = match fields.remove("messages") {
            Some(Value::Array(m)) => m,
            _ => unreachable!(),
        };
        let asked = request_messages(&own).unwrap();
        assert_eq!(
            asked,
            vec![Message {
                role: "user".into(),
                content: "q1".into()
            }]
        );
        let out: Value = serde_json::from_slice(&rebuild(fields, &session(), own)).unwrap();
        assert!(out.get("session_id").is_none());
        assert_eq!(out["max_tokens"], 3);
        let roles: Vec<&str> = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(out["messages"][0]["content"], "be brief");
        assert_eq!(
            out["messages"][3]["content"][1]["text"], "1",
            "the request's own messages are kept as sent"
        );
    }

    #[test]
    fn non_text_messages_are_refused_naming_the_field() {
        let own: Vec<Value> = serde_json::from_str(r#"[{"role":"user","content":"ok"},{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]"#).unwrap();
        let err = request_messages(&own).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("messages[1].content"), "{err}");
        let own: Vec<Value> = serde_json::from_str(r#"[{"content":"no role"}]"#).unwrap();
        assert!(request_messages(&own)
            .unwrap_err()
            .to_string()
            .contains("messages[0].role"));
    }

    fn tap(store: Arc<MemoryStore>, stream: bool) -> ReplyTap {
        let spec = TapSpec {
            store,
            id: "sess_1".into(),
            owner: None,
            asked: vec![Message {
                role: "user".into(),
                content: "q1".into(),
            }],
            limits: SessionsConfig::default(),
            stream,
        };
        ReplyTap::new(spec, "w:1")
    }

    #[test]
    fn a_stream_reply_is_collected_across_chunks_and_stored_at_the_end() {
        let store = Arc::new(MemoryStore::default());
        store.create(session(), &SessionsConfig::default()).unwrap();
        let stream = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n";
        for cut in [1, 30, 70, stream.len() - 3] {
            let mut t = tap(store.clone(), true);
            let mut out = Vec::new();
            out.extend_from_slice(&t.chunk(&stream[..cut]));
            out.extend_from_slice(&t.chunk(&stream[cut..]));
            assert_eq!(out, stream.to_vec(), "passed through unchanged");
            assert_eq!(t.reply, "Hello");
            t.finish();
        }
        let s = store.get("sess_1", &None, now_ms()).unwrap();
        let last: Vec<&str> = s
            .messages
            .iter()
            .rev()
            .take(2)
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(last, ["Hello", "q1"]);
        assert_eq!(s.worker.as_deref(), Some("w:1"));
    }

    #[test]
    fn a_plain_reply_is_parsed_at_the_end() {
        let store = Arc::new(MemoryStore::default());
        store.create(session(), &SessionsConfig::default()).unwrap();
        let mut t = tap(store.clone(), false);
        let body =
            br#"{"choices":[{"message":{"role":"assistant","content":"Paris"}}],"usage":{}}"#;
        t.chunk(&body[..10]);
        t.chunk(&body[10..]);
        t.finish();
        let s = store.get("sess_1", &None, now_ms()).unwrap();
        assert_eq!(s.messages.back().unwrap().content, "Paris");
        assert_eq!(s.messages.len(), 4);
    }

    #[test]
    fn a_broken_stream_is_not_stored_and_ends_with_an_error_event() {
        let store = Arc::new(MemoryStore::default());
        store.create(session(), &SessionsConfig::default()).unwrap();
        let mut t = tap(store.clone(), true);
        t.chunk(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n");
        let end = t.abort("the worker broke off");
        assert!(end.starts_with(b"data: {\"error\""), "{end:?}");
        assert_eq!(
            store.get("sess_1", &None, now_ms()).unwrap().messages.len(),
            2
        );
    }
}
