use serde_json::{json, Value};

use super::*;

fn chunk(id: &str, delta: Value, finish: Value) -> String {
    let c = json!({"id": id, "object": "chat.completion.chunk", "created": 7, "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

fn role(id: &str) -> String {
    chunk(id, json!({"role": "assistant", "content": ""}), Value::Null)
}

fn tok(id: &str, i: u32) -> String {
    chunk(id, json!({"content": format!("tok{i} ")}), Value::Null)
}

fn usage(id: &str, prompt: u64, completion: u64) -> String {
    let c = json!({"id": id, "object": "chat.completion.chunk", "created": 9, "model": "m",
        "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion}});
    format!("data: {c}\n\n")
}

/// The payloads of an SSE byte string.
fn payloads(bytes: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut events = Events::default();
    events.push(bytes, |p| {
        out.push(if p == b"[DONE]" {
            Value::String("[DONE]".into())
        } else {
            serde_json::from_slice(p).expect("JSON event")
        })
    });
    out
}

fn body() -> Vec<u8> {
    json!({"model": "m", "stream": true, "max_tokens": 10,
        "messages": [{"role": "user", "content": "q"}]})
    .to_string()
    .into_bytes()
}

fn splice() -> Splice {
    Splice::for_request(&FailoverConfig::default(), true, true, &body()).expect("applies")
}

#[test]
fn applies_only_to_streamed_chat_with_one_choice_when_on() {
    let cfg = FailoverConfig::default();
    assert!(Splice::for_request(&cfg, false, true, &body()).is_none());
    assert!(Splice::for_request(&cfg, true, false, &body()).is_none());
    let off = FailoverConfig {
        enabled: false,
        ..cfg.clone()
    };
    assert!(Splice::for_request(&off, true, true, &body()).is_none());
    let n2 = br#"{"model":"m","stream":true,"n":2,"messages":[]}"#;
    assert!(Splice::for_request(&cfg, true, true, n2).is_none());
    let n1 = br#"{"model":"m","stream":true,"n":1,"messages":[]}"#;
    assert!(Splice::for_request(&cfg, true, true, n1).is_some());
    assert!(Splice::for_request(&cfg, true, true, b"not json").is_none());
}

#[test]
fn passes_whole_events_through_and_holds_a_partial_one() {
    let mut s = splice();
    s.begin_attempt();
    let stream = format!("{}{}{}", role("a"), tok("a", 0), tok("a", 1));
    let (first, rest) = stream.split_at(stream.len() - 10);
    let out = s.push(first.as_bytes());
    assert_eq!(payloads(&out).len(), 2, "the cut event is held");
    assert_eq!(s.tokens, 1);
    let out = s.push(rest.as_bytes());
    assert_eq!(payloads(&out)[0]["choices"][0]["delta"]["content"], "tok1 ");
    assert_eq!(s.tokens, 2);
}

#[test]
fn a_broken_stream_continues_as_one_stream() {
    let mut s = splice();
    s.begin_attempt();
    let mut client = Vec::new();
    let first = format!("{}{}{}{}", role("a"), tok("a", 0), tok("a", 1), tok("a", 2));
    client.extend_from_slice(&s.push(first.as_bytes()));
    assert!(s.complete_on_break().is_none(), "no finish yet");
    s.resumable(&FailoverConfig::default()).expect("resumable");

    let Next::Continue(next) = s.next(&body()).expect("continues") else {
        panic!("tokens are left")
    };
    let next: Value = serde_json::from_slice(&next).unwrap();
    assert_eq!(next["continue_final_message"], true);
    assert_eq!(next["add_generation_prompt"], false);
    assert_eq!(next["max_tokens"], 7);
    let messages = next["messages"].as_array().unwrap();
    assert_eq!(
        messages.last().unwrap(),
        &json!({"role": "assistant", "content": "tok0 tok1 tok2 "})
    );

    s.begin_attempt();
    let second = format!(
        "{}{}{}{}{}data: [DONE]\n\n",
        role("b"),
        tok("b", 3),
        tok("b", 4),
        chunk("b", json!({}), json!("stop")),
        usage("b", 4, 2)
    );
    client.extend_from_slice(&s.push(second.as_bytes()));
    let (tail, complete) = s.end_of_body();
    assert!(tail.is_empty() && complete);

    let events = payloads(&client);
    let ids: Vec<&Value> = events.iter().filter_map(|e| e.get("id")).collect();
    assert!(ids.iter().all(|id| *id == "a"), "one id: {ids:?}");
    let roles = events
        .iter()
        .filter(|e| e["choices"][0]["delta"].get("role").is_some())
        .count();
    assert_eq!(roles, 1, "one role announcement");
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 ");
    let u = &events[events.len() - 2]["usage"];
    assert_eq!(
        u,
        &json!({"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6})
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(
        events.iter().filter(|e| *e == "[DONE]").count(),
        1,
        "one [DONE]"
    );
}

#[test]
fn a_client_continuation_is_extended_not_doubled() {
    let mut s = splice();
    s.begin_attempt();
    s.push(format!("{}{}", role("a"), tok("a", 5)).as_bytes());
    let original = json!({"model": "m", "stream": true, "continue_final_message": true,
        "add_generation_prompt": false, "messages": [{"role": "user", "content": "q"},
        {"role": "assistant", "content": "Once "}]});
    let Next::Continue(next) = s.next(original.to_string().as_bytes()).unwrap() else {
        panic!()
    };
    let next: Value = serde_json::from_slice(&next).unwrap();
    let messages = next["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["content"], "Once tok5 ");
}

#[test]
fn a_used_up_budget_ends_the_stream_with_length() {
    let mut s = splice();
    s.begin_attempt();
    let original = json!({"model": "m", "stream": true, "max_completion_tokens": 2,
        "messages": [{"role": "user", "content": "q"}]});
    s.push(format!("{}{}{}", role("a"), tok("a", 0), tok("a", 1)).as_bytes());
    let Next::Complete(tail) = s.next(original.to_string().as_bytes()).unwrap() else {
        panic!("nothing is left to generate")
    };
    let events = payloads(&tail);
    assert_eq!(events[0]["id"], "a");
    assert_eq!(events[0]["choices"][0]["finish_reason"], "length");
    assert_eq!(events[1], "[DONE]");
}

#[test]
fn nothing_sent_yet_means_the_whole_request_again() {
    let mut s = splice();
    s.begin_attempt();
    s.push(role("a").as_bytes());
    let Next::Continue(next) = s.next(&body()).unwrap() else {
        panic!()
    };
    assert_eq!(&next[..], &body()[..]);
}

#[test]
fn a_finished_stream_that_breaks_only_misses_done() {
    let mut s = splice();
    s.begin_attempt();
    s.push(format!("{}{}", tok("a", 0), chunk("a", json!({}), json!("stop"))).as_bytes());
    let tail = s.complete_on_break().expect("complete");
    assert_eq!(&tail[..], b"data: [DONE]\n\n");
    assert!(s.is_done());
}

#[test]
fn tool_calls_reasoning_and_bounds_stop_a_continuation() {
    let cfg = FailoverConfig::default();
    let mut s = splice();
    s.begin_attempt();
    let call = json!({"tool_calls": [{"index": 0, "function": {"name": "f"}}]});
    s.push(chunk("a", call, Value::Null).as_bytes());
    assert!(s.resumable(&cfg).unwrap_err().contains("tool"));

    let mut s = splice();
    s.begin_attempt();
    s.push(chunk("a", json!({"reasoning_content": "hmm"}), Value::Null).as_bytes());
    assert!(s.resumable(&cfg).unwrap_err().contains("reasoning"));

    let mut s = splice();
    for _ in 0..cfg.max_resumes {
        s.begin_attempt();
        s.push(tok("a", 0).as_bytes());
        s.resumable(&cfg).expect("within the bound");
        s.next(&body()).expect("continues");
    }
    assert!(s.resumable(&cfg).unwrap_err().contains("max_resumes"));
}

#[test]
fn an_error_event_is_held_back_and_reported() {
    let mut s = splice();
    s.begin_attempt();
    let out = s.push(
        format!(
            "{}data: {{\"error\":{{\"message\":\"engine dead\"}}}}\n\n",
            tok("a", 0)
        )
        .as_bytes(),
    );
    assert_eq!(payloads(&out).len(), 1, "only the token reaches the client");
    assert!(s.take_worker_error().unwrap().contains("engine dead"));
    s.resumable(&FailoverConfig::default()).expect("resumable");
}

/// Worker bytes through the splice, in the fuzz harness (`FUZZ_CASES`, `FUZZ_SEED`): no
/// panic, what reaches the client does not depend on where the worker's chunks were cut, it
/// is bounded by what came in, and a continuation body is built or refused with a reason.
#[test]
fn hostile_bytes_never_panic() {
    crate::fuzz::run("splice", |g| {
        let mut bytes = g.bytes(300);
        if g.bool() {
            bytes.splice(0..0, tok("a", 1).bytes());
        }
        if g.bool() {
            let text = g.text(40);
            bytes.extend(format!("data: {text}\n\n").bytes());
        }
        let through = |cuts: &[usize]| {
            let mut s = splice();
            s.begin_attempt();
            let mut out = Vec::new();
            let mut from = 0;
            for &cut in cuts.iter().chain([&bytes.len()]) {
                out.extend_from_slice(&s.push(&bytes[from..cut]));
                from = cut;
            }
            out.extend_from_slice(&s.end_of_body().0);
            (out, s)
        };
        let (whole, mut s) = through(&[]);
        let mut cuts: Vec<usize> = (0..g.rng.usize(1..4))
            .map(|_| g.rng.usize(0..=bytes.len()))
            .collect();
        cuts.sort_unstable();
        let (split, _) = through(&cuts);
        assert_eq!(whole, split, "the output depends on the chunk borders");
        // Events pass as they are, or rewritten with the first stream's id/model/created
        // (bounded), plus at most a finish and `[DONE]` of the splice's own.
        assert!(
            whole.len() <= 2 * bytes.len() + 512,
            "{} -> {}",
            bytes.len(),
            whole.len()
        );
        match s.next(&bytes) {
            Ok(_) => {}
            Err(why) => assert!(!why.is_empty()),
        }
        let _ = s.next(&body());
    });
}
