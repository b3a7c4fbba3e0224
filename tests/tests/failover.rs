//! Mid-stream failover end to end: real sims that break off or stall in the middle of a
//! streamed chat completion, the real gateway, loopback. The client must see one unbroken
//! stream (one id, the text in order, one `[DONE]`, usage for the whole completion); a
//! stream that cannot move ends with today's SSE error event. Non-streamed chat completions
//! are asked of the workers as streams and must arrive as one whole JSON answer, or a JSON
//! error — never half an answer.

mod common;

use std::time::Duration;

use common::{served_by, sim, Fleet};
use futures_util::StreamExt;
use sagellm_gateway::config::Strategy;
use sagellm_sim::{MetricsFlavor, SimConfig};
use serde_json::{json, Value};

/// The expected text of an unbroken sim stream of `n` tokens.
fn sim_text(n: u32) -> String {
    (0..n).map(|i| format!("tok{i} ")).collect()
}

fn stream_body(content: &str) -> Value {
    stream_body_max(content, 100)
}

fn stream_body_max(content: &str, max_tokens: u32) -> Value {
    json!({"model": "m", "stream": true, "max_tokens": max_tokens,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": content}]})
}

/// The `data` payloads of an SSE body (`[DONE]` as a string).
fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|p| serde_json::from_str(p).unwrap_or_else(|_| Value::String(p.to_string())))
        .collect()
}

/// One client stream as seen end to end.
struct Seen {
    first_worker: String,
    events: Vec<Value>,
    raw: String,
}

impl Seen {
    fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect()
    }

    /// Panics unless this is one whole stream of `tokens` tokens for a 2-word prompt.
    fn assert_whole(&self, tokens: u32) {
        let raw = &self.raw;
        let ids: Vec<&Value> = self.events.iter().filter_map(|e| e.get("id")).collect();
        assert!(!ids.is_empty(), "{raw}");
        assert!(ids.iter().all(|id| *id == ids[0]), "one id: {raw}");
        assert_eq!(self.text(), sim_text(tokens), "{raw}");
        let roles = self
            .events
            .iter()
            .filter(|e| e["choices"][0]["delta"].get("role").is_some())
            .count();
        assert_eq!(roles, 1, "one role chunk: {raw}");
        let done = self.events.iter().filter(|e| *e == "[DONE]").count();
        assert_eq!(done, 1, "{raw}");
        assert_eq!(self.events.last().unwrap(), "[DONE]", "{raw}");
        assert!(!raw.contains("\"error\""), "{raw}");
        let usage = &self.events[self.events.len() - 2]["usage"];
        assert_eq!(usage["completion_tokens"], tokens, "{raw}");
        assert_eq!(usage["prompt_tokens"], 2, "{raw}");
        assert_eq!(usage["total_tokens"], tokens + 2, "{raw}");
    }

    /// Panics unless the stream ended with the SSE error event instead of `[DONE]`.
    fn assert_ends_with_error(&self) {
        assert!(self.raw.contains("data: {\"error\""), "{}", self.raw);
        assert!(!self.raw.contains("[DONE]"), "{}", self.raw);
    }
}

async fn stream(fleet: &Fleet, content: impl AsRef<str>) -> Seen {
    stream_max(fleet, content, 100).await
}

async fn stream_max(fleet: &Fleet, content: impl AsRef<str>, max_tokens: u32) -> Seen {
    let resp = fleet
        .chat(&stream_body_max(content.as_ref(), max_tokens))
        .await;
    assert_eq!(resp.status(), 200);
    let first_worker = served_by(&resp);
    let raw = resp.text().await.expect("the stream ends");
    Seen {
        first_worker,
        events: events(&raw),
        raw,
    }
}

/// A sim generating `tokens` tokens, 3 ms apart, with room for every test stream at once
/// (its fault knobs are set once it runs).
fn generating(name: &str, tokens: u32) -> SimConfig {
    SimConfig {
        tpot: Duration::from_millis(3),
        output_tokens: tokens,
        max_running: 32,
        ..sim(name, "m")
    }
}

async fn failover_total(fleet: &Fleet, reason: &str, result: &str) -> u64 {
    let text = fleet.get("/metrics").await.text().await.unwrap();
    let line = format!("llm_stream_failovers_total{{reason=\"{reason}\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Round robin over a, b and c, generating `tokens` tokens each: a breaks off after 5 token
/// chunks, b after 11, so a request that starts on either moves once or twice before c
/// finishes it.
async fn breaking_fleet(tokens: u32) -> Fleet {
    let fleet = Fleet::start(
        vec![
            generating("a", tokens),
            generating("b", tokens),
            generating("c", tokens),
        ],
        |c| c.routing.strategy = Strategy::RoundRobin,
    )
    .await;
    fleet.sims[0].control().set_break_after_tokens(Some(5));
    fleet.sims[1].control().set_break_after_tokens(Some(11));
    fleet
}

/// Round robin over a (continues messages) and b, an LMDeploy worker (does not), 10 tokens.
async fn with_an_lmdeploy_worker() -> Fleet {
    let lmdeploy = SimConfig {
        owned_by: "lmdeploy".into(),
        flavor: MetricsFlavor::Lmdeploy,
        ..generating("b", 10)
    };
    Fleet::start(vec![generating("a", 10), lmdeploy], |c| {
        c.routing.strategy = Strategy::RoundRobin;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_streams_survive_workers_dying_mid_stream() {
    const TOKENS: u32 = 24;
    let fleet = breaking_fleet(TOKENS).await;
    let seen =
        futures_util::future::join_all((0..20).map(|i| stream(&fleet, format!("stream {i}"))))
            .await;
    for s in &seen {
        s.assert_whole(TOKENS);
    }
    let moved = seen.iter().filter(|s| s.first_worker != "c").count();
    assert!(moved > 0, "some streams started on a breaking worker");
    assert!(failover_total(&fleet, "broken", "resumed").await >= moved as u64);
    assert_eq!(failover_total(&fleet, "broken", "failed").await, 0);
    assert_eq!(
        fleet.sims[2].control().completed_total(),
        20,
        "c finished every stream"
    );
    fleet.stop().await;
}

/// The continuation asks for what is left of the client's `max_tokens`: 20 streams of a
/// 16-token budget on sims that would say 24 end after exactly 16 tokens with `length`, however
/// many times they moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_stream_keeps_the_clients_token_budget() {
    const BUDGET: u32 = 16;
    let fleet = breaking_fleet(24).await;
    let seen = futures_util::future::join_all(
        (0..20).map(|i| stream_max(&fleet, format!("budget {i}"), BUDGET)),
    )
    .await;
    for s in &seen {
        s.assert_whole(BUDGET);
        let finishes: Vec<&Value> = s
            .events
            .iter()
            .filter_map(|e| e["choices"][0].get("finish_reason"))
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, [&json!("length")], "{}", s.raw);
    }
    assert!(seen.iter().any(|s| s.first_worker != "c"));
    assert!(failover_total(&fleet, "broken", "resumed").await > 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_mid_stream_is_continued_elsewhere() {
    let slow = SimConfig {
        tpot: Duration::from_millis(50),
        output_tokens: 30,
        ..sim("a", "m")
    };
    let mut fleet = Fleet::start(vec![slow, sim("b", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
    })
    .await;
    fleet.sims[1].control().set_output_tokens(30);
    let resp = loop {
        let resp = fleet.chat(&stream_body("kill me")).await;
        if served_by(&resp) == "a" {
            break resp;
        }
        resp.text().await.unwrap();
    };
    let b_before = fleet.sims[1].control().completed_total();
    let mut body = resp.bytes_stream();
    let mut raw = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    fleet.sims[0].kill(); // the process dies: its connections are reset
    while let Some(chunk) = body.next().await {
        raw.push_str(
            std::str::from_utf8(&chunk.expect("the client's stream is not broken")).unwrap(),
        );
    }
    let seen = Seen {
        first_worker: "a".into(),
        events: events(&raw),
        raw,
    };
    seen.assert_whole(30);
    assert_eq!(
        fleet.sims[1].control().completed_total(),
        b_before + 1,
        "b finished it"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_moves_after_the_stall_timeout() {
    let fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.failover.stall_timeout_ms = 300;
        // Without stall detection the stream would wait this long, past the client's 30 s.
        c.upstream.read_timeout_ms = 120_000;
    })
    .await;
    for s in &fleet.sims {
        s.control().set_output_tokens(12);
    }
    fleet.sims[0].control().set_stall_after_tokens(Some(4));
    // A stream left waiting for the 120 s read timeout would fail at the client's 30 s limit
    // instead of ending whole.
    let seen =
        futures_util::future::join_all((0..20).map(|i| stream(&fleet, format!("stall {i}")))).await;
    for s in &seen {
        s.assert_whole(12);
    }
    let stalled = seen.iter().filter(|s| s.first_worker == "a").count() as u64;
    assert!(stalled > 0, "some streams started on the stalling worker");
    assert_eq!(failover_total(&fleet, "stalled", "resumed").await, stalled);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_worker_with_no_alternative_is_not_abandoned() {
    let slow = SimConfig {
        tpot: Duration::from_millis(700),
        output_tokens: 3,
        ..sim("a", "m")
    };
    let fleet = Fleet::start(vec![slow], |c| c.failover.stall_timeout_ms = 200).await;
    let s = stream(&fleet, "slow one").await;
    s.assert_whole(3);
    assert_eq!(failover_total(&fleet, "stalled", "resumed").await, 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_worker_that_can_continue_the_stream_ends_with_an_error_event() {
    let fleet = with_an_lmdeploy_worker().await;
    fleet.sims[0].control().set_break_after_tokens(Some(3));
    let mut on_a = 0;
    for i in 0..4 {
        let s = stream(&fleet, format!("plain {i}")).await;
        if s.first_worker == "a" {
            on_a += 1;
            // What a had flushed before it died (the last chunk may die with it).
            let text = s.text();
            assert!(
                !text.is_empty() && sim_text(3).starts_with(&text),
                "{}",
                s.raw
            );
            s.assert_ends_with_error();
        } else {
            s.assert_whole(10);
        }
    }
    assert!(on_a > 0);
    assert!(failover_total(&fleet, "broken", "failed").await >= on_a);
    // b (LMDeploy) was never asked to continue a message.
    assert_eq!(fleet.sims[1].control().requests_total(), 4 - on_a);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_stream_survives_too() {
    let fleet = Fleet::start(vec![generating("a", 10), generating("b", 10)], |c| {
        c.routing.strategy = Strategy::RoundRobin
    })
    .await;
    fleet.sims[0].control().set_break_after_tokens(Some(4));
    for i in 0..4 {
        let resp = fleet
            .http
            .post(fleet.url("/v1/messages"))
            .json(&json!({"model": "m", "max_tokens": 100, "stream": true,
                "messages": [{"role": "user", "content": format!("hello {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let raw = resp.text().await.unwrap();
        let text: String = events(&raw)
            .iter()
            .filter(|e| e["type"] == "content_block_delta")
            .filter_map(|e| e["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, sim_text(10), "{raw}");
        assert_eq!(raw.matches("event: message_start").count(), 1, "{raw}");
        assert_eq!(raw.matches("event: message_stop").count(), 1, "{raw}");
        assert!(!raw.contains("event: error"), "{raw}");
    }
    assert!(failover_total(&fleet, "broken", "resumed").await >= 1);
    fleet.stop().await;
}

// Non-streamed chat completions: asked of the worker as streams, answered whole.

fn plain_body_max(content: &str, max_tokens: u32) -> Value {
    json!({"model": "m", "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}]})
}

/// One non-streamed answer as the client got it: the worker that started it, the JSON.
async fn plain(fleet: &Fleet, content: impl AsRef<str>, max_tokens: u32) -> (String, Value) {
    let resp = fleet
        .chat(&plain_body_max(content.as_ref(), max_tokens))
        .await;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    let first = served_by(&resp);
    let raw = resp.bytes().await.expect("the answer arrives");
    if let Some(len) = headers.get("content-length") {
        assert_eq!(len, raw.len().to_string().as_str());
    }
    (
        first,
        serde_json::from_slice(&raw).expect("one JSON object"),
    )
}

/// Panics unless `v` is one whole completion of `tokens` tokens for a 2-word prompt.
fn assert_whole_answer(v: &Value, tokens: u32, finish: &str) {
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert!(
        v["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-")),
        "{v}"
    );
    assert_eq!(v["model"], "m", "{v}");
    let choice = &v["choices"][0];
    assert_eq!(v["choices"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(choice["message"]["role"], "assistant", "{v}");
    assert_eq!(choice["message"]["content"], sim_text(tokens), "{v}");
    assert_eq!(choice["finish_reason"], finish, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], tokens, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 2, "{v}");
    assert_eq!(v["usage"]["total_tokens"], tokens + 2, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_plain_answers_survive_workers_dying_mid_answer() {
    const TOKENS: u32 = 24;
    // 20 whole answers of a 100-token budget, then (on a fresh fleet: the breaks opened a's
    // and b's breakers) 20 of a 16-token one, moved or not.
    for (budget, tokens, finish) in [(100, TOKENS, "stop"), (16, 16, "length")] {
        let fleet = breaking_fleet(TOKENS).await;
        let seen = futures_util::future::join_all(
            (0..20).map(|i| plain(&fleet, format!("plain {budget}-{i}"), budget)),
        )
        .await;
        for (_, v) in &seen {
            assert_whole_answer(v, tokens, finish);
        }
        let moved = seen.iter().filter(|(first, _)| first != "c").count() as u64;
        assert!(moved > 0, "some started on a breaking worker");
        assert!(failover_total(&fleet, "broken", "resumed").await >= moved);
        assert_eq!(failover_total(&fleet, "broken", "failed").await, 0);
        // Every worker was asked for a stream, and c finished every answer.
        for s in &fleet.sims {
            assert!(s.control().stream_events_total() > 0);
        }
        assert_eq!(fleet.sims[2].control().completed_total(), 20);
        fleet.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_answer_moves_off_a_stalled_or_killed_worker() {
    let slow = SimConfig {
        tpot: Duration::from_millis(50),
        output_tokens: 30,
        ..sim("a", "m")
    };
    let mut fleet = Fleet::start(vec![slow, sim("b", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.failover.stall_timeout_ms = 300;
        c.upstream.read_timeout_ms = 120_000;
    })
    .await;
    fleet.sims[1].control().set_output_tokens(30);
    // Stalled: a goes silent after 4 tokens; every answer is whole well before the 120 s.
    fleet.sims[0].control().set_stall_after_tokens(Some(4));
    let seen =
        futures_util::future::join_all((0..6).map(|i| plain(&fleet, format!("stall {i}"), 100)))
            .await;
    for (_, v) in &seen {
        assert_whole_answer(v, 30, "stop");
    }
    let stalled = seen.iter().filter(|(first, _)| first == "a").count() as u64;
    assert!(stalled > 0);
    assert_eq!(failover_total(&fleet, "stalled", "resumed").await, stalled);

    // Killed: an answer under way on a when its server dies is finished by b.
    fleet.sims[0].control().set_stall_after_tokens(None);
    let mut on_a = None;
    for i in 0..10 {
        let a_events = fleet.sims[0].control().stream_events_total();
        let request = {
            let http = fleet.http.clone();
            let url = fleet.url("/v1/chat/completions");
            let body = plain_body_max(&format!("kill {i}"), 100);
            tokio::spawn(async move { http.post(url).json(&body).send().await })
        };
        common::eventually("a is answering, or b answered", 10, || {
            fleet.sims[0].control().stream_events_total() >= a_events + 3 || request.is_finished()
        })
        .await;
        if !request.is_finished() {
            on_a = Some(request);
            break;
        }
        request.await.unwrap().unwrap().bytes().await.unwrap(); // b's: round robin goes on
    }
    let request = on_a.expect("a request went to a within 10");
    fleet.sims[0].kill();
    let resp = request.await.unwrap().expect("answered");
    assert_eq!(resp.status(), 200);
    assert_eq!(served_by(&resp), "a");
    assert_whole_answer(&resp.json().await.unwrap(), 30, "stop");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_answer_that_cannot_be_finished_is_a_json_error_not_half_an_answer() {
    let fleet = Fleet::start(vec![generating("a", 10)], |_| {}).await;
    fleet.sims[0].control().set_break_after_tokens(Some(3));
    let resp = fleet.chat(&plain_body_max("only one", 100)).await;
    let e = common::expect_error(resp, 502).await;
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("broke off") || message.contains("closed"),
        "{e}"
    );
    assert!(failover_total(&fleet, "broken", "failed").await >= 1);
    // With failover off it is the worker's own non-streamed answer, whole (the sim's breaks
    // cut streams only).
    let fleet_off = Fleet::start(vec![generating("a", 10)], |c| {
        c.failover.non_streamed = false
    })
    .await;
    fleet_off.sims[0].control().set_break_after_tokens(Some(3));
    let (_, v) = plain(&fleet_off, "off now", 100).await;
    assert_whole_answer(&v, 10, "stop");
    assert_eq!(fleet_off.sims[0].control().stream_events_total(), 0);
    fleet_off.stop().await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_a_stream_cannot_carry_or_a_worker_cannot_continue_go_as_they_came() {
    let fleet = with_an_lmdeploy_worker().await;
    for _ in 0..4 {
        let (_, v) = plain(&fleet, "either one", 100).await;
        assert_whole_answer(&v, 10, "stop");
    }
    // b (LMDeploy) got them as they came; a got streams.
    assert_eq!(fleet.sims[1].control().stream_events_total(), 0);
    assert!(fleet.sims[0].control().stream_events_total() > 0);
    let a_events = fleet.sims[0].control().stream_events_total();
    for extra in [json!({"n": 2}), json!({"logprobs": true})] {
        let mut body = plain_body_max("as is", 100);
        for (k, x) in extra.as_object().unwrap() {
            body[k] = x.clone();
        }
        for _ in 0..2 {
            let resp = fleet.chat(&body).await;
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["object"], "chat.completion", "{v}");
        }
    }
    assert_eq!(fleet.sims[0].control().stream_events_total(), a_events);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_anthropic_message_survives_too() {
    let fleet = Fleet::start(vec![generating("a", 10), generating("b", 10)], |c| {
        c.routing.strategy = Strategy::RoundRobin
    })
    .await;
    fleet.sims[0].control().set_break_after_tokens(Some(4));
    for i in 0..4 {
        let resp = fleet
            .http
            .post(fleet.url("/v1/messages"))
            .json(&json!({"model": "m", "max_tokens": 100,
                "messages": [{"role": "user", "content": format!("hello {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "message", "{v}");
        assert_eq!(v["content"][0]["text"], sim_text(10), "{v}");
        assert_eq!(v["stop_reason"], "end_turn", "{v}");
        assert_eq!(v["usage"]["output_tokens"], 10, "{v}");
    }
    assert!(failover_total(&fleet, "broken", "resumed").await >= 1);
    fleet.stop().await;
}

/// `failover.max_resumes` bounds the moves: with every worker breaking after 3 tokens and one
/// move allowed, the stream moves once, then ends with the SSE error event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_moves_at_most_max_resumes_times() {
    let fleet = Fleet::start(
        vec![
            generating("a", 10),
            generating("b", 10),
            generating("c", 10),
        ],
        |c| {
            c.routing.strategy = Strategy::RoundRobin;
            c.failover.max_resumes = 1;
        },
    )
    .await;
    for s in &fleet.sims {
        s.control().set_break_after_tokens(Some(3));
    }
    let s = stream(&fleet, "bounded moves").await;
    let text = s.text();
    assert!(
        text.len() > sim_text(3).len() && sim_text(10).starts_with(&text),
        "moved once, in order: {}",
        s.raw
    );
    s.assert_ends_with_error();
    assert_eq!(failover_total(&fleet, "broken", "resumed").await, 1);
    assert_eq!(failover_total(&fleet, "broken", "failed").await, 1);
    fleet.stop().await;
}

/// `failover.total_timeout_ms` bounds a move by the request's age: a stream that breaks after
/// its budget is spent is not moved (even with a healthy worker to move to) and ends with the
/// SSE error event; one that starts on the healthy worker is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_older_than_total_timeout_is_not_moved() {
    let fleet = Fleet::start(vec![generating("a", 10), generating("b", 10)], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        // a breaks after 3 token chunks, 3 ms apart: the request is older than this by then.
        c.failover.total_timeout_ms = 1;
    })
    .await;
    fleet.sims[0].control().set_break_after_tokens(Some(3));
    let mut on_a = 0;
    for i in 0..4 {
        let s = stream(&fleet, format!("aged {i}")).await;
        if s.first_worker == "a" {
            on_a += 1;
            s.assert_ends_with_error();
            assert!(sim_text(3).starts_with(&s.text()), "{}", s.raw);
        } else {
            s.assert_whole(10);
        }
    }
    assert!(on_a > 0);
    assert_eq!(failover_total(&fleet, "broken", "resumed").await, 0);
    assert_eq!(failover_total(&fleet, "broken", "failed").await, on_a);
    // b served only the requests that started there: nothing was moved to it.
    assert_eq!(fleet.sims[1].control().requests_total(), 4 - on_a);
    fleet.stop().await;
}
