//! Unit tests of `anthropic/stream.rs`.

use super::*;

/// The worker stream `sagellm-sim` sends (tests/src/generation.rs, sse.rs) for `n` tokens
/// with `include_usage`.
fn sim_stream(n: u32, finish: &str, usage: bool) -> String {
    let chunk = |choices: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                   "model": "w", "choices": choices})
    };
    let mut s = String::new();
    let mut push = |v: Value| s.push_str(&format!("data: {v}\n\n"));
    push(chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                            "logprobs": null, "finish_reason": null}]),
    ));
    for i in 0..n {
        push(chunk(
            json!([{"index": 0, "delta": {"content": format!("tok{i} ")},
                                "logprobs": null, "finish_reason": null}]),
        ));
    }
    push(chunk(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}]),
    ));
    if usage {
        let mut u = chunk(json!([]));
        u["usage"] = json!({"prompt_tokens": 9, "total_tokens": 9 + n, "completion_tokens": n,
                                "prompt_tokens_details": null});
        push(u);
    }
    s.push_str("data: [DONE]\n\n");
    s
}

fn run(pieces: &[&[u8]]) -> String {
    let mut t = StreamTranslator::new("req-model".into());
    let mut out = Vec::new();
    for p in pieces {
        out.extend_from_slice(&t.chunk(p));
    }
    out.extend_from_slice(&t.finish());
    String::from_utf8(out).unwrap()
}

/// Parses the output into `(event, data)` and checks the sequence the SDKs expect.
fn events(out: &str) -> Vec<(String, Value)> {
    assert!(out.ends_with("\n\n"), "{out}");
    let evs: Vec<(String, Value)> = out
        .trim_end()
        .split("\n\n")
        .map(|e| {
            let (ev, data) = e.split_once('\n').unwrap();
            let ev = ev.strip_prefix("event: ").unwrap().to_string();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], ev.as_str());
            (ev, data)
        })
        .collect();
    let names: Vec<&str> = evs.iter().map(|(e, _)| e.as_str()).collect();
    if names.last() != Some(&"error") {
        let n = names.len();
        assert!(n >= 5, "{names:?}");
        assert_eq!(names[..2], ["message_start", "content_block_start"]);
        assert!(
            names[2..n - 3].iter().all(|e| *e == "content_block_delta"),
            "{names:?}"
        );
        assert_eq!(
            names[n - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
    }
    evs
}

/// `out` with each `data:` JSON re-serialised: key order depends on whether serde_json's
/// `preserve_order` is on in the build (the workspace's engine turns it on).
fn same_keys_order(out: &str) -> String {
    out.split_inclusive('\n')
        .map(|line| match line.strip_prefix("data: ") {
            Some(d) => {
                let v: Value = serde_json::from_str(d.trim_end()).unwrap();
                format!("data: {v}\n")
            }
            None => line.to_string(),
        })
        .collect()
}

fn text_of(evs: &[(String, Value)]) -> String {
    evs.iter()
        .filter(|(e, _)| e == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect()
}

fn final_delta(evs: &[(String, Value)]) -> Value {
    evs.iter()
        .find(|(e, _)| e == "message_delta")
        .unwrap()
        .1
        .clone()
}

#[test]
fn sim_stream_exact_output() {
    let out = run(&[sim_stream(2, "stop", true).as_bytes()]);
    let want = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"req-model","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok0 "}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok1 "}}"#,
        "\n\n",
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":0}"#,
        "\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2,"input_tokens":9}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );
    assert_eq!(same_keys_order(&out), same_keys_order(want));
    events(&out);
}

#[test]
fn every_split_gives_the_same_output() {
    let input = sim_stream(3, "length", true);
    let input = input.as_bytes();
    let whole = run(&[input]);
    for cut in 0..=input.len() {
        assert_eq!(run(&[&input[..cut], &input[cut..]]), whole, "cut at {cut}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole, "byte by byte");
    // Three pieces around every `\n`.
    for (i, _) in input.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        assert_eq!(
            run(&[&input[..i], &input[i..i + 1], &input[i + 1..]]),
            whole
        );
    }
    let evs = events(&whole);
    assert_eq!(text_of(&evs), "tok0 tok1 tok2 ");
    let d = final_delta(&evs);
    assert_eq!(d["delta"]["stop_reason"], "max_tokens");
    assert_eq!(d["usage"], json!({"output_tokens": 3, "input_tokens": 9}));
}

#[test]
fn crlf_and_multibyte_text_split_anywhere() {
    let input = sim_stream(2, "stop", true)
        .replace("tok1", "é✓😀")
        .replace('\n', "\r\n");
    let input = input.as_bytes();
    let whole = run(&[input]);
    assert_eq!(text_of(&events(&whole)), "tok0 é✓😀 ");
    for cut in 0..=input.len() {
        assert_eq!(run(&[&input[..cut], &input[cut..]]), whole, "cut at {cut}");
    }
}

#[test]
fn done_missing_closes_the_same_way() {
    let full = sim_stream(4, "stop", true);
    let want = run(&[full.as_bytes()]);
    let cut = full.strip_suffix("data: [DONE]\n\n").unwrap();
    assert_eq!(run(&[cut.as_bytes()]), want);
    // … also without the blank line, or the newline, after the last event.
    assert_eq!(run(&[cut.trim_end_matches('\n').as_bytes()]), want);
    assert_eq!(run(&[cut.strip_suffix('\n').unwrap().as_bytes()]), want);
}

#[test]
fn garbage_is_skipped() {
    let clean = sim_stream(2, "stop", true);
    let want = run(&[clean.as_bytes()]);
    let noisy = clean.replacen(
        "data: ",
        concat!(
            ": keep-alive comment\n\n",
            "event: whatever\nid: 7\nretry: 100\n\n",
            "data: {not json\n\n",
            "data: [1, 2]\n\n",
            "data: {\"choices\": 5}\n\n",
            "data: \"str\"\n\n",
            "no colon at all\n\n",
            "\n\n\n",
            "data: ",
        ),
        1,
    );
    assert_ne!(noisy, clean);
    assert_eq!(run(&[noisy.as_bytes()]), want);
    // Random bytes never panic and still give a well-formed stream.
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200 {
        let len = rng.usize(0..300);
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                *rng.choice(b"data: {}[]\"\r\n:xDONE\xff\xc3".iter())
                    .unwrap()
            })
            .collect();
        let out = run(&[&junk]);
        let evs = if out.contains("event: error") {
            continue;
        } else {
            events(&out)
        };
        assert_eq!(evs.len(), 5, "{}", String::from_utf8_lossy(&junk));
    }
}

#[test]
fn without_usage_counts_content_events() {
    let out = run(&[sim_stream(5, "stop", false).as_bytes()]);
    let evs = events(&out);
    assert_eq!(final_delta(&evs)["usage"], json!({"output_tokens": 5}));
    assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], 0);
}

#[test]
fn usage_chunk_with_empty_choices_and_stop_string() {
    let input = concat!(
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\",\"stop_reason\":\"###\"}]}\n\n",
            "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":7,\"total_tokens\":10}}\n\n",
            "data: [DONE]\n\n",
        );
    let evs = events(&run(&[input.as_bytes()]));
    assert_eq!(evs.len(), 6);
    assert_eq!(text_of(&evs), "Hi");
    let d = final_delta(&evs);
    assert_eq!(
        d["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "###"})
    );
    assert_eq!(d["usage"], json!({"output_tokens": 7, "input_tokens": 3}));
    assert_eq!(evs[0].1["message"]["id"], "msg_x");
}

#[test]
fn continuous_usage_fills_message_start() {
    let input = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}}\n\n";
    let evs = events(&run(&[input.as_bytes()]));
    assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], 4);
    assert!(evs[0].1["message"]["id"].as_str().unwrap().len() > 4);
    assert_eq!(final_delta(&evs)["usage"]["output_tokens"], 1);
}

#[test]
fn multi_line_data_is_one_event() {
    let input = "data: {\"choices\":[{\"delta\":\ndata: {\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n";
    assert_eq!(text_of(&events(&run(&[input.as_bytes()]))), "a");
}

#[test]
fn after_done_nothing_more() {
    let mut input = sim_stream(1, "stop", true);
    let want = run(&[input.as_bytes()]);
    input.push_str("data: {\"choices\":[{\"delta\":{\"content\":\"late\"}}]}\n\ndata: [DONE]\n\n");
    assert_eq!(run(&[input.as_bytes()]), want);
    let mut t = StreamTranslator::new("m".into());
    t.chunk(b"data: [DONE]\n\n");
    assert!(t.finish().is_empty());
    assert!(t.abort("late").is_empty());
}

#[test]
fn empty_body_is_an_empty_message() {
    let evs = events(&run(&[]));
    assert_eq!(evs.len(), 5);
    assert_eq!(final_delta(&evs)["delta"]["stop_reason"], "end_turn");
    assert_eq!(final_delta(&evs)["usage"]["output_tokens"], 0);
}

#[test]
fn abort_ends_with_an_error_event() {
    let input = sim_stream(3, "stop", true);
    let mut t = StreamTranslator::new("m".into());
    assert_eq!(t.content_type(), "text/event-stream");
    let mut out = t.chunk(&input.as_bytes()[..input.len() / 2]).to_vec();
    out.extend_from_slice(&t.abort("worker went away"));
    assert!(t.finish().is_empty());
    assert!(t.chunk(b"data: {}\n\n").is_empty());
    let out = String::from_utf8(out).unwrap();
    let evs = events(&out);
    assert_eq!(evs[0].0, "message_start");
    assert!(same_keys_order(&out).ends_with(&same_keys_order(
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"worker went away\"}}\n\n"
        )));
}

#[test]
fn worker_error_event() {
    let input = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"error\":{\"object\":\"error\",\"message\":\"engine died\",\"type\":\"InternalServerError\",\"code\":500}}\n\n",
            "data: [DONE]\n\n",
        );
    let out = run(&[input.as_bytes()]);
    let evs = events(&out);
    let (name, last) = evs.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(
        last["error"],
        json!({"type": "api_error", "message": "engine died"})
    );
    assert_eq!(evs.len(), 4, "start, block start, one delta, error");
}

#[test]
fn overlong_lines_are_dropped() {
    let mut t = StreamTranslator::new("m".into());
    let big = vec![b'x'; crate::sse::MAX_EVENT / 2 + 1];
    t.chunk(b"data: {\"choices\":[{\"delta\":{\"content\":\"");
    t.chunk(&big);
    t.chunk(&big);
    assert_eq!(t.events.buffered(), 0, "the buffer is dropped past the cap");
    let mut out = t
        .chunk(b"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n")
        .to_vec();
    out.extend_from_slice(&t.finish());
    assert_eq!(text_of(&events(&String::from_utf8(out).unwrap())), "ok");
}
