use super::*;

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn parse(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn a_plain_request_becomes_a_stream_with_usage() {
    let original = body(json!({"model": "m", "max_tokens": 8, "stream": false,
        "messages": [{"role": "user", "content": "hi"}]}));
    let out = parse(&streamed_body(&original).unwrap());
    assert_eq!(out["stream"], true);
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["max_tokens"], 8);
    assert_eq!(out["messages"][0]["content"], "hi");
    let no_stream_field = body(json!({"model": "m", "n": 1, "logprobs": false,
        "tools": null, "messages": []}));
    assert!(streamed_body(&no_stream_field).is_some());
}

#[test]
fn answers_a_stream_does_not_carry_whole_stay_as_they_are() {
    let msgs = json!([{"role": "user", "content": "hi"}]);
    for extra in [
        json!({"stream": true}),
        json!({"n": 2}),
        json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
        json!({"tool_choice": "none"}),
        json!({"logprobs": true}),
        json!({"top_logprobs": 2}),
        json!({"prompt_logprobs": 1}),
        json!({"stream_options": {"include_usage": false}}),
        json!({"echo": true}),
        json!({"messages": "not an array"}),
    ] {
        let mut v = json!({"model": "m", "messages": msgs});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        assert_eq!(streamed_body(&body(v.clone())), None, "{v}");
    }
    for bad in [&b"not json"[..], b"[1,2]", b"", b"{\"messages\": 3"] {
        assert_eq!(streamed_body(bad), None);
    }
}

/// A vLLM-shaped stream of `parts`, with a finish and usage.
fn vllm_stream(parts: &[&str]) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7,
            "model": "m", "choices": [{"index": 0, "delta": delta, "logprobs": null,
            "finish_reason": finish}]})
    };
    let mut out = String::new();
    let mut push = |v: Value| out.push_str(&format!("data: {v}\n\n"));
    push(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    for p in parts {
        push(chunk(json!({"content": p}), Value::Null));
    }
    let mut last = chunk(json!({"content": ""}), json!("length"));
    last["choices"][0]["stop_reason"] = Value::Null;
    push(last);
    push(
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7,
        "model": "m", "choices": [],
        "usage": {"prompt_tokens": 2, "completion_tokens": parts.len(),
            "total_tokens": 2 + parts.len()}}),
    );
    out.push_str("data: [DONE]\n\n");
    out
}

#[test]
fn the_events_make_one_completion_whatever_the_chunk_borders() {
    let stream = vllm_stream(&["tok0 ", "tok1 ", "tok2 "]);
    let want = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok0 tok1 tok2 "},
            "logprobs": null, "finish_reason": "length", "stop_reason": null}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    });
    for step in [1, 2, 7, stream.len()] {
        let mut a = Assembler::default();
        for piece in stream.as_bytes().chunks(step) {
            a.push(piece);
        }
        assert_eq!(parse(&a.finish().unwrap()), want, "step {step}");
    }
}

#[test]
fn reasoning_is_kept_under_the_workers_name() {
    let stream = concat!(
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"think \"}}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"more\"}}]}\n\n",
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"answer\"},\"finish_reason\":\"stop\"}]}\n\n",
    );
    let mut a = Assembler::default();
    a.push(stream.as_bytes());
    let out = parse(&a.finish().unwrap());
    let message = &out["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], "think more");
    assert_eq!(message["content"], "answer");
    assert_eq!(out["choices"][0]["finish_reason"], "stop");
    assert!(out.get("usage").is_none(), "no usage was sent");
}

#[test]
fn an_unfinished_or_garbled_stream_is_an_error() {
    let mut a = Assembler::default();
    a.push(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half\"}}]}\n\n");
    assert!(a.finish().unwrap_err().contains("finish reason"));
    let mut a = Assembler::default();
    a.push(b"data: not json\n\n");
    a.push(vllm_stream(&["x"]).as_bytes());
    assert!(a.finish().unwrap_err().contains("not a JSON object"));
}

#[test]
fn an_answer_past_the_bound_is_refused_not_kept() {
    let mut a = Assembler::default();
    let big = "x".repeat(1 << 20);
    let event = format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"content": big}}]})
    );
    for _ in 0..(MAX_ANSWER >> 20) + 2 {
        a.push(event.as_bytes());
    }
    assert!(a.content.len() <= MAX_ANSWER + (1 << 20), "stops growing");
    assert!(a.finish().unwrap_err().contains("longer than"));
}

/// Worker bytes and client bodies in the fuzz harness (`FUZZ_CASES`, `FUZZ_SEED`): no panic,
/// the answer does not depend on where the chunks were cut, and whatever is built is one
/// `chat.completion` (or a conversion that still parses, with `stream: true`).
#[test]
fn hostile_bytes_never_panic() {
    crate::fuzz::run("assemble", |g| {
        let bytes = g.mutate(vllm_stream(&["a", "b"]).as_bytes());
        let through = |pieces: &[&[u8]]| {
            let mut a = Assembler::default();
            for piece in pieces {
                a.push(piece);
            }
            a.finish()
        };
        let whole = through(&[&bytes]);
        assert_eq!(whole, through(&g.split(&bytes)), "depends on chunk borders");
        if let Ok(out) = whole {
            assert_eq!(parse(&out)["object"], "chat.completion");
        }
        let keys = ["model", "messages", "stream", "n", "tools", "logprobs"];
        let request = serde_json::to_vec(&g.json(3, &keys)).unwrap();
        for candidate in [request, g.mutate(&body(json!({"messages": []})))] {
            if let Some(out) = streamed_body(&candidate) {
                assert_eq!(parse(&out)["stream"], true);
            }
        }
    });
}
