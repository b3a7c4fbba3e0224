//! Unit tests of `session/chat.rs`.

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

#[tokio::test]
async fn history_goes_before_the_request_and_session_id_is_dropped() {
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

#[tokio::test]
async fn non_text_messages_are_refused_naming_the_field() {
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

#[tokio::test]
async fn a_stream_reply_is_collected_across_chunks_and_stored_at_the_end() {
    let store = Arc::new(MemoryStore::default());
    store
        .create(session(), &SessionsConfig::default())
        .await
        .unwrap();
    let stream = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n";
    for cut in [1, 30, 70, stream.len() - 3] {
        let mut t = tap(store.clone(), true);
        let mut out = Vec::new();
        out.extend_from_slice(&t.chunk(&stream[..cut]));
        out.extend_from_slice(&t.chunk(&stream[cut..]));
        assert_eq!(out, stream.to_vec(), "passed through unchanged");
        assert_eq!(t.reply, "Hello");
        t.finish();
        t.commit().expect("an append to run").await;
    }
    let s = store.get("sess_1", &None, now_ms()).await.unwrap().unwrap();
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

#[tokio::test]
async fn a_plain_reply_is_parsed_at_the_end() {
    let store = Arc::new(MemoryStore::default());
    store
        .create(session(), &SessionsConfig::default())
        .await
        .unwrap();
    let mut t = tap(store.clone(), false);
    let body = br#"{"choices":[{"message":{"role":"assistant","content":"Paris"}}],"usage":{}}"#;
    t.chunk(&body[..10]);
    t.chunk(&body[10..]);
    t.finish();
    t.commit().expect("an append to run").await;
    let s = store.get("sess_1", &None, now_ms()).await.unwrap().unwrap();
    assert_eq!(s.messages.back().unwrap().content, "Paris");
    assert_eq!(s.messages.len(), 4);
}

#[tokio::test]
async fn a_broken_stream_is_not_stored_and_ends_with_an_error_event() {
    let store = Arc::new(MemoryStore::default());
    store
        .create(session(), &SessionsConfig::default())
        .await
        .unwrap();
    let mut t = tap(store.clone(), true);
    t.chunk(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n");
    let end = t.abort("the worker broke off");
    assert!(end.starts_with(b"data: {\"error\""), "{end:?}");
    assert_eq!(
        store
            .get("sess_1", &None, now_ms())
            .await
            .unwrap()
            .unwrap()
            .messages
            .len(),
        2
    );
}
