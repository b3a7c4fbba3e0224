//! Unit tests of `anthropic/response.rs`.

use super::*;

fn translate_json(body: &[u8]) -> Value {
    let mut t = JsonTranslator::new("req-model".into());
    assert_eq!(t.content_type(), "application/json");
    assert_eq!(t.status(200), 200);
    for piece in body.chunks(7) {
        assert!(t.chunk(piece).is_empty(), "nothing is sent before the end");
    }
    serde_json::from_slice(&t.finish()).unwrap()
}

/// What `sagellm-sim` answers (tests/src/generation.rs), with `finish_reason` and vLLM's
/// `stop_reason` as given.
fn sim_completion(finish: &str, stop_reason: Value) -> Vec<u8> {
    json!({
            "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "worker-model",
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": "tok0 tok1 tok2", "tool_calls": []},
                         "logprobs": null, "finish_reason": finish, "stop_reason": stop_reason}],
            "usage": {"prompt_tokens": 5, "total_tokens": 8, "completion_tokens": 3,
                      "prompt_tokens_details": null},
        })
        .to_string()
        .into_bytes()
}

#[test]
fn chat_completion_becomes_a_message() {
    let v = translate_json(&sim_completion("stop", Value::Null));
    assert_eq!(
        v,
        json!({
            "id": "msg_chatcmpl-abc", "type": "message", "role": "assistant",
            "model": "req-model",
            "content": [{"type": "text", "text": "tok0 tok1 tok2"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 5, "output_tokens": 3},
        })
    );
}

#[test]
fn stop_mapping() {
    let cases = [
        ("stop", Value::Null, "end_turn", Value::Null),
        ("stop", json!(151645), "end_turn", Value::Null),
        ("stop", json!("###"), "stop_sequence", json!("###")),
        ("length", Value::Null, "max_tokens", Value::Null),
        ("tool_calls", Value::Null, "end_turn", Value::Null),
        ("abort", json!("x"), "end_turn", Value::Null),
    ];
    for (finish, stop, want, seq) in cases {
        let v = translate_json(&sim_completion(finish, stop.clone()));
        assert_eq!(v["stop_reason"], want, "{finish} {stop}");
        assert_eq!(v["stop_sequence"], seq, "{finish} {stop}");
    }
}

#[test]
fn sparse_completion() {
    // No id, no usage, null content: still a well-formed message.
    let v = translate_json(br#"{"choices":[{"message":{"content":null},"finish_reason":null}]}"#);
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["content"], json!([{"type": "text", "text": ""}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"], json!({"input_tokens": 0, "output_tokens": 0}));
    let v = translate_json(br#"{"choices":[]}"#);
    assert_eq!(v["type"], "message");
}

#[test]
fn garbage_and_oversized_bodies_are_api_errors() {
    let v = translate_json(b"<html>oops");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "api_error");
    let mut t = JsonTranslator::new("m".into());
    let mb = vec![b' '; 1 << 20];
    for _ in 0..17 {
        t.chunk(&mb);
    }
    assert!(t.body.is_empty(), "the buffer is dropped once over the cap");
    let v: Value = serde_json::from_slice(&t.finish()).unwrap();
    assert_eq!(v["error"]["type"], "api_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("exceeds"));
}

fn translate_error(status: u16, body: &[u8]) -> Value {
    let mut t = super::super::translator(status, false, "m".into());
    assert_eq!(t.status(status), status);
    assert_eq!(t.content_type(), "application/json");
    for piece in body.chunks(3) {
        assert!(t.chunk(piece).is_empty());
    }
    serde_json::from_slice(&t.finish()).unwrap()
}

#[test]
fn worker_errors_by_status() {
    let cases = [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "api_error"),
        (529, "overloaded_error"),
        (302, "api_error"),
    ];
    for (status, kind) in cases {
        // vLLM's / the sim's shape.
        let body = json!({"error": {"message": format!("m{status}"), "type": "X",
                                        "param": null, "code": status}});
        let v = translate_error(status, body.to_string().as_bytes());
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": kind, "message": format!("m{status}")}}),
            "{status}"
        );
    }
}

#[test]
fn error_messages_from_any_body() {
    let msg = |body: &[u8]| translate_error(500, body)["error"]["message"].clone();
    assert_eq!(msg(br#"{"detail":"Not Found"}"#), "Not Found");
    assert_eq!(msg(br#"{"error":"plain"}"#), "plain");
    assert_eq!(msg(br#"{"message":"m"}"#), "m");
    assert_eq!(
        msg(br#"{"detail":[{"loc":["body"]}]}"#),
        r#"[{"loc":["body"]}]"#
    );
    assert_eq!(msg(b"  upstream connect error  "), "upstream connect error");
    assert_eq!(msg(b""), "the worker answered with status 500");
    assert_eq!(msg(b"{}"), "{}");
    let long = "é".repeat(2000);
    let m = msg(long.as_bytes());
    let m = m.as_str().unwrap();
    assert!(m.len() <= MAX_ERROR_MESSAGE && m.starts_with('é'));
    let mut t = ErrorTranslator::new(400);
    for _ in 0..100 {
        t.chunk(&[b'x'; 1024]);
    }
    assert_eq!(t.body.len(), MAX_ERROR_BODY);
}
