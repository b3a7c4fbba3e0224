//! Unit tests of `anthropic/request.rs`.

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
