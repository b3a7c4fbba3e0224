//! The Anthropic translator both ways: Messages requests → chat-completions bodies, and the
//! worker's chat completions (JSON, SSE and error bodies) → Anthropic responses.
//!
//! Invariants: no panic; a refused request is a 4xx with an Anthropic error body; an accepted
//! one becomes a body the gateway's own chat parser accepts with the same model and `stream`;
//! a translated response is the same whatever the chunk borders and is well-formed in
//! Anthropic's API (one JSON body, or an event stream that starts once and ends once).

use serde_json::{json, Value};

use super::request::assert_client_error;
use super::{run, Gen};
use crate::anthropic::{request::translate, translator};
use crate::error::ApiFlavor;
use crate::proxy::request::{parse, KeySources};
use crate::proxy::route::Endpoint;

const KEYS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "metadata",
    "user_id",
    "role",
    "content",
    "type",
    "text",
    "tools",
];

fn content(g: &mut Gen) -> Value {
    if g.bool() {
        Value::String(g.text(30))
    } else {
        Value::Array(
            (0..g.rng.usize(1..3))
                .map(|_| json!({"type": "text", "text": g.text(20)}))
                .collect(),
        )
    }
}

/// A request a client could well send.
fn well_formed(g: &mut Gen) -> Value {
    let roles = ["user", "assistant"];
    let mut body = json!({
        "model": format!("claude-{}", g.rng.alphanumeric()),
        "max_tokens": g.rng.u32(1..100_000),
        "messages": (0..g.rng.usize(1..4))
            .map(|i| json!({"role": roles[i % 2], "content": content(g)}))
            .collect::<Vec<_>>(),
    });
    if g.bool() {
        body["system"] = content(g);
    }
    if g.bool() {
        body["stream"] = Value::Bool(g.bool());
    }
    if g.one_in(3) {
        body["stop_sequences"] = json!([g.text(4)]);
    }
    if g.one_in(3) {
        body["temperature"] = json!(g.rng.f64());
    }
    if g.one_in(3) {
        body["metadata"] = json!({"user_id": g.text(8)});
    }
    body
}

fn request_input(g: &mut Gen) -> Vec<u8> {
    match g.rng.u8(0..4) {
        0 => serde_json::to_vec(&g.json(4, KEYS)).unwrap(),
        1 => {
            let body = serde_json::to_vec(&well_formed(g)).unwrap();
            g.mutate(&body)
        }
        2 => g.bytes(64),
        _ => {
            let mut body = well_formed(g);
            body[*g.pick(KEYS)] = g.json(2, KEYS);
            serde_json::to_vec(&body).unwrap()
        }
    }
}

fn check_translated(body: &[u8]) -> Option<crate::anthropic::request::Translated> {
    match translate(body) {
        Ok(t) => {
            let openai: Value = serde_json::from_slice(&t.body).expect("the worker body is JSON");
            assert_eq!(openai["model"], Value::String(t.model.clone()));
            assert!(openai["messages"].is_array(), "{openai}");
            let keys = KeySources {
                prefix_bytes: 64,
                ..Default::default()
            };
            let info = parse(Endpoint::Chat, &t.body, keys)
                .unwrap_or_else(|e| panic!("translated body refused: {e:?}: {openai}"));
            assert_eq!(info.model.as_deref(), Some(t.model.as_str()));
            assert_eq!(info.stream, t.stream);
            Some(t)
        }
        Err(e) => {
            assert_client_error(&e);
            let (_, _, body) = e.render(ApiFlavor::Anthropic);
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["type"], "error", "{v}");
            assert!(v["error"]["type"].is_string(), "{v}");
            None
        }
    }
}

#[test]
fn any_messages_request_is_translated_or_refused_cleanly() {
    run("anthropic-request", |g| {
        let body = request_input(g);
        check_translated(&body);
    });
}

#[test]
fn well_formed_messages_requests_are_translated() {
    run("anthropic-request-well-formed", |g| {
        let body = well_formed(g);
        let t = check_translated(&serde_json::to_vec(&body).unwrap())
            .unwrap_or_else(|| panic!("refused: {body}"));
        let openai: Value = serde_json::from_slice(&t.body).unwrap();
        let sent = body["messages"].as_array().unwrap().len();
        assert!(
            openai["messages"].as_array().unwrap().len() >= sent,
            "{openai}"
        );
    });
}

/// A worker's response body: a chat completion, a stream of chunks or an error body,
/// well-formed or damaged.
fn worker_body(g: &mut Gen, stream: bool) -> Vec<u8> {
    let finish = g
        .pick(&[json!("stop"), json!("length"), json!(null), json!(5)])
        .clone();
    let usage = json!({"prompt_tokens": g.rng.u32(..), "completion_tokens": g.rng.u32(..)});
    let mut out = if stream {
        let mut s = String::new();
        for _ in 0..g.rng.usize(0..6) {
            let chunk = json!({"id": "c1", "choices": [{"index": 0,
                "delta": {"content": g.text(8)}, "finish_reason": null}]});
            s.push_str(&format!("data: {chunk}\n\n"));
        }
        let last = json!({"id": "c1", "choices": [{"index": 0, "delta": {},
            "finish_reason": finish}], "usage": usage});
        s.push_str(&format!("data: {last}\n\n"));
        if g.bool() {
            s.push_str("data: [DONE]\n\n");
        }
        s.into_bytes()
    } else {
        serde_json::to_vec(&json!({"id": "c1", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": g.text(30)},
            "finish_reason": finish}], "usage": usage}))
        .unwrap()
    };
    match g.rng.u8(0..4) {
        0 => out = g.mutate(&out),
        1 => out = serde_json::to_vec(&g.json(3, &["choices", "usage", "error", "delta"])).unwrap(),
        2 if g.one_in(2) => out = g.bytes(100),
        _ => {}
    }
    out
}

/// The client's bytes for one translated response, fed in `pieces`.
fn translate_response(status: u16, stream: bool, pieces: &[&[u8]], abort: bool) -> Vec<u8> {
    // The message id is random when the worker sends none: the same seed for every reading.
    fastrand::seed(1);
    let mut t = translator(status, stream, "claude-x".into());
    let mut out = Vec::new();
    for p in pieces {
        out.extend_from_slice(&t.chunk(p));
    }
    out.extend_from_slice(&if abort {
        t.abort("worker gone")
    } else {
        t.finish()
    });
    out
}

/// The `(event, data)` pairs of an Anthropic event stream, checking each is well-formed.
fn anthropic_events(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).expect("the client's stream is UTF-8");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (head, data) = e.split_once('\n').expect("event and data lines");
            let name = head
                .strip_prefix("event: ")
                .expect("event line")
                .to_string();
            let data: Value =
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).expect("data is JSON");
            assert_eq!(data["type"], Value::String(name.clone()));
            (name, data)
        })
        .collect()
}

#[test]
fn worker_responses_translate_the_same_whatever_the_chunks() {
    run("anthropic-response", |g| {
        let status = *g.pick(&[200, 200, 200, 400, 429, 500, 503]);
        let stream = g.bool();
        let body = worker_body(g, stream);
        let abort = g.one_in(6);
        let whole = translate_response(status, stream, &[&body], abort);
        let split = translate_response(status, stream, &g.split(&body), abort);
        assert_eq!(split, whole, "chunk borders changed the answer");
        if stream && status == 200 {
            let events = anthropic_events(&whole);
            let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
            let ends = names
                .iter()
                .filter(|n| matches!(**n, "message_stop" | "error"))
                .count();
            assert_eq!(ends, 1, "exactly one end: {names:?}");
            assert!(
                matches!(*names.last().unwrap(), "message_stop" | "error"),
                "{names:?}"
            );
            if names[0] != "error" {
                assert_eq!(names[0], "message_start", "{names:?}");
            }
        } else {
            let v: Value = serde_json::from_slice(&whole).expect("one JSON body");
            assert!(
                matches!(v["type"].as_str(), Some("message" | "error")),
                "{v}"
            );
            if status != 200 {
                assert_eq!(v["type"], "error");
            }
        }
    });
}
