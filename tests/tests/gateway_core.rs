//! End-to-end tests of the gateway core: real Pingora gateway, real HTTP over loopback,
//! in-process `sagellm-sim` workers.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{chat_body, expect_error, served_by, sim, Fleet};
use futures_util::StreamExt;
use sagellm_gateway::config::{RoutingConfig, Strategy};
use serde_json::{json, Value};

async fn distribution(
    fleet: &Fleet,
    n: usize,
    body: impl Fn(usize) -> Value,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let resp = fleet.chat(&body(i)).await;
        assert_eq!(resp.status(), 200, "request {i}");
        *counts.entry(served_by(&resp)).or_insert(0) += 1;
    }
    counts
}

fn counts_of(counts: &HashMap<String, usize>, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| counts.get(*n).copied().unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_routes_and_distributes() {
    let fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m"), sim("c", "m")], |_| {}).await;
    let names = ["a", "b", "c"];
    let set = |s: Strategy| {
        fleet.gw.state.set_policy(&RoutingConfig {
            strategy: s,
            seed: Some(3),
            ..Default::default()
        })
    };
    let plain = |i: usize| chat_body("m", &format!("hello {i}"));

    set(Strategy::RoundRobin);
    assert_eq!(
        counts_of(&distribution(&fleet, 30, plain).await, &names),
        vec![10, 10, 10]
    );

    set(Strategy::LeastConnections);
    assert_eq!(
        counts_of(&distribution(&fleet, 30, plain).await, &names),
        vec![10, 10, 10],
        "idle ties rotate"
    );

    let pool = fleet.gw.state.pool.load_full();
    for (w, weight) in pool.workers.iter().zip([3, 1, 1]) {
        w.set_weight(weight);
    }
    set(Strategy::WeightedRoundRobin);
    assert_eq!(
        counts_of(&distribution(&fleet, 30, plain).await, &names),
        vec![18, 6, 6]
    );
    pool.workers.iter().for_each(|w| w.set_weight(1));

    for s in [Strategy::LeastQueue, Strategy::P2cKv, Strategy::Adaptive] {
        set(s);
        let c = counts_of(&distribution(&fleet, 30, plain).await, &names);
        assert_eq!(c.iter().sum::<usize>(), 30);
        assert!(
            c.iter().all(|&n| n >= 1),
            "{s}: every worker used at least once: {c:?}"
        );
    }

    set(Strategy::ConsistentHash);
    let mut homes = HashMap::new();
    for session in 0..12 {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let resp = fleet
                .http
                .post(fleet.url("/v1/chat/completions"))
                .header("x-session-id", format!("session-{session}"))
                .json(&plain(session))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            seen.push(served_by(&resp));
        }
        assert!(
            seen.iter().all(|s| *s == seen[0]),
            "session {session} stayed on one worker: {seen:?}"
        );
        homes.insert(session, seen[0].clone());
    }
    let distinct: std::collections::HashSet<_> = homes.values().collect();
    assert!(
        distinct.len() >= 2,
        "sessions spread over workers: {homes:?}"
    );
    // The session id in the body counts like the header.
    let body = json!({"model":"m","messages":[{"role":"user","content":"x"}],"session_id":"session-4","max_tokens":1});
    assert_eq!(served_by(&fleet.chat(&body).await), homes[&4]);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_spreads_concurrent_requests() {
    let slow = |n: &str| sagellm_sim::SimConfig {
        ttft: Duration::from_millis(300),
        ..sim(n, "m")
    };
    let fleet = Fleet::start(vec![slow("a"), slow("b"), slow("c")], |c| {
        c.routing.strategy = Strategy::LeastConnections;
    })
    .await;
    let bodies: Vec<Value> = (0..9).map(|i| chat_body("m", &format!("q{i}"))).collect();
    let resps = futures_util::future::join_all(bodies.iter().map(|b| fleet.chat(b))).await;
    let mut counts = HashMap::new();
    for r in &resps {
        assert_eq!(r.status(), 200);
        *counts.entry(served_by(r)).or_insert(0) += 1;
    }
    assert_eq!(
        counts_of(&counts, &["a", "b", "c"]),
        vec![3, 3, 3],
        "in-flight counts steer concurrent requests"
    );
    // Every in-flight token was released when the responses ended.
    for w in fleet.gw.state.pool.load().workers.iter() {
        assert_eq!(w.load.inflight(), 0);
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_aware_routing_and_model_list() {
    let both = sagellm_sim::SimConfig {
        models: vec!["m1".into(), "m2".into()],
        ..sim("c", "m1")
    };
    let fleet = Fleet::start(vec![sim("a", "m1"), sim("b", "m2"), both], |c| {
        c.routing.strategy = Strategy::RoundRobin;
    })
    .await;
    let counts = distribution(&fleet, 20, |i| chat_body("m2", &format!("{i}"))).await;
    assert_eq!(
        counts_of(&counts, &["a", "b", "c"]),
        vec![0, 10, 10],
        "only workers serving m2"
    );
    let counts = distribution(&fleet, 10, |i| chat_body("m1", &format!("{i}"))).await;
    assert_eq!(counts_of(&counts, &["a", "b", "c"]), vec![5, 0, 5]);

    let v = expect_error(fleet.chat(&chat_body("nope", "x")).await, 404).await;
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["param"], "model");

    let list: Value = fleet.get("/v1/models").await.json().await.unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["m1", "m2"], "aggregated and de-duplicated");
    assert_eq!(list["data"][0]["owned_by"], "vllm");
    assert_eq!(list["data"][0]["object"], "model");
    let one = fleet.get("/v1/models/m2").await;
    assert_eq!(one.status(), 200);
    expect_error(fleet.get("/v1/models/zzz").await, 404).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pass_through_unbuffered() {
    let slow = sagellm_sim::SimConfig {
        ttft: Duration::from_millis(50),
        tpot: Duration::from_millis(200),
        output_tokens: 5,
        ..sim("a", "m")
    };
    let fleet = Fleet::start(vec![slow], |_| {}).await;
    let body = json!({"model":"m","messages":[{"role":"user","content":"count"}],"stream":true,
                      "stream_options":{"include_usage":true}});
    let start = Instant::now();
    let resp = fleet.chat(&body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut arrivals: Vec<(Duration, String)> = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            arrivals.push((start.elapsed(), event.trim().to_string()));
        }
    }
    let token_times: Vec<Duration> = arrivals
        .iter()
        .filter(|(_, e)| e.contains("\"content\":\"tok"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(token_times.len(), 5, "five token events: {arrivals:?}");
    for pair in token_times.windows(2) {
        // Sent 200 ms apart; a buffering proxy would deliver them together at the end.
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(120),
            "events arrived together: {token_times:?}"
        );
    }
    assert!(
        arrivals.iter().any(|(_, e)| e.contains("\"usage\"")),
        "usage chunk forwarded"
    );
    assert_eq!(arrivals.last().unwrap().1, "data: [DONE]");
    fleet.stop().await;
}

/// A chat body of about `size` bytes whose `model` field comes last.
fn big_body(size: usize, model: &str) -> Vec<u8> {
    let head = r#"{"messages":[{"role":"user","content":""#;
    let tail = format!(r#""}}],"max_tokens":2,"model":"{model}"}}"#);
    let fill = size.saturating_sub(head.len() + tail.len());
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(head.as_bytes());
    b.extend(std::iter::repeat_n(b'x', fill));
    b.extend_from_slice(tail.as_bytes());
    b
}

/// What a worker that can continue a message gets for `body`: with `failover.non_streamed`
/// the same JSON asking for a stream with usage (serialized by the same `serde_json`), else
/// the client's bytes.
fn as_sent(body: &[u8], non_streamed: bool) -> Vec<u8> {
    if !non_streamed {
        return body.to_vec();
    }
    let mut v: Value = serde_json::from_slice(body).unwrap();
    v["stream"] = json!(true);
    v["stream_options"] = json!({"include_usage": true});
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_any_size_arrive_intact_and_are_routed_by_model() {
    // As they came (failover.non_streamed off), and asked for as streams (the default).
    for non_streamed in [false, true] {
        bodies_arrive_intact(non_streamed).await;
    }
}

async fn bodies_arrive_intact(non_streamed: bool) {
    let fleet = Fleet::start(vec![sim("a", "m1"), sim("b", "m2")], |c| {
        c.limits.max_body_bytes = 4 * 1024 * 1024;
        c.failover.non_streamed = non_streamed;
    })
    .await;
    for (size, model, sim_index) in [
        (1 << 20, "m1", 0),
        (1 << 20, "m2", 1),
        (65_536, "m2", 1),
        (65_537, "m1", 0),
        (200 * 1024, "m1", 0),
        (300, "m2", 1),
    ] {
        let body = big_body(size, model);
        assert_eq!(body.len(), size.max(body.len()));
        let resp = fleet
            .http
            .post(fleet.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{size} bytes for {model}");
        assert_eq!(
            served_by(&resp),
            ["a", "b"][sim_index],
            "{size} bytes routed by the trailing model field"
        );
        let ctl = fleet.sims[sim_index].control();
        let sent = as_sent(&body, non_streamed);
        assert_eq!(
            ctl.last_body_len(),
            sent.len() as u64,
            "{size} bytes: length"
        );
        assert_eq!(
            ctl.last_body_hash(),
            sagellm_sim::fnv1a64(&sent),
            "{size} bytes: content"
        );
        let v: Value = resp.json().await.unwrap();
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    }

    // A chunked body (no Content-Length) of 100 KiB.
    let body = big_body(100 * 1024, "m2");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(8 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        fleet.sims[1].control().last_body_hash(),
        sagellm_sim::fnv1a64(&as_sent(&body, non_streamed))
    );

    // Over the limit: 413, declared or discovered while reading a chunked body.
    let over = big_body(4 * 1024 * 1024 + 1, "m1");
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .body(over.clone())
        .send()
        .await
        .unwrap();
    let v = expect_error(resp, 413).await;
    assert_eq!(v["error"]["code"], "payload_too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        over.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("the 413 is readable: the gateway drains the body before closing");
    expect_error(resp, 413).await;

    // Large streamed responses work on the gateway's own path too.
    let mut streamed: Value = serde_json::from_slice(&big_body(100 * 1024, "m1")).unwrap();
    streamed["stream"] = json!(true);
    let text = fleet.chat(&streamed).await.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_get_openai_errors_and_change_nothing() {
    let fleet = Fleet::start(vec![sim("a", "m")], |_| {}).await;
    let post = |body: &'static str| {
        fleet
            .http
            .post(fleet.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: &[(&str, u16, &str)] = &[
        ("{\"model\":\"m\",\"messages\":[", 400, "invalid_json"),
        ("not json at all", 400, "invalid_json"),
        (
            "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            400,
            "invalid_request",
        ),
        ("{\"model\":\"m\"}", 400, "invalid_request"),
        ("{\"model\":[1],\"messages\":[]}", 400, "invalid_json"),
        ("", 400, "invalid_request"),
        (
            "{\"model\":\"../../etc/passwd\",\"messages\":[]}",
            404,
            "model_not_found",
        ),
    ];
    for (body, status, code) in cases {
        let v = expect_error(post(body).await.unwrap(), *status).await;
        assert_eq!(v["error"]["code"], *code, "{body}");
    }
    let v = expect_error(fleet.get("/v1/chat/completions").await, 405).await;
    assert_eq!(v["error"]["code"], "method_not_allowed");
    expect_error(fleet.get("/nope").await, 404).await;
    expect_error(
        fleet
            .http
            .post(fleet.url("/v1/completions"))
            .body("{\"model\":\"m\"}")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(
        fleet.sims[0].control().requests_total(),
        0,
        "no client mistake reached a worker"
    );
    // The gateway still serves.
    assert_eq!(fleet.chat(&chat_body("m", "ok")).await.status(), 200);
    let completion = fleet
        .http
        .post(fleet.url("/v1/completions"))
        .json(&json!({"model":"m","prompt":"once upon","max_tokens":3}))
        .send()
        .await
        .unwrap();
    assert_eq!(completion.status(), 200);
    let v: Value = completion.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let emb = fleet
        .http
        .post(fleet.url("/v1/embeddings"))
        .json(&json!({"model":"m","input":"hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(emb.status(), 200);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_fleet_and_no_worker_is_503() {
    let fleet = Fleet::start(vec![sim("a", "m")], |_| {}).await;
    let health = fleet.get("/health").await;
    assert_eq!(health.status(), 200);
    let h: Value = health.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["ready_workers"], 1);
    assert_eq!(h["workers"][0]["state"], "READY");

    fleet.sims[0].control().set_health_status(503);
    tokio::time::timeout(
        Duration::from_secs(10),
        fleet.gw.state.wait_routable_where(|n| n == 0),
    )
    .await
    .unwrap();
    assert_eq!(fleet.get("/health").await.status(), 503);
    let v = expect_error(fleet.chat(&chat_body("m", "x")).await, 503).await;
    assert_eq!(v["error"]["code"], "no_worker_available");

    fleet.sims[0].control().set_health_status(200);
    tokio::time::timeout(Duration::from_secs(10), fleet.gw.state.wait_routable(1))
        .await
        .unwrap();
    assert_eq!(
        fleet.chat(&chat_body("m", "x")).await.status(),
        200,
        "recovers by itself"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_failed_over_before_health_notices() {
    let mut fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.health.check_interval_ms = 60_000; // only passive signals during this test
    })
    .await;
    fleet.sims[0].kill_and_wait().await;
    for i in 0..10 {
        let resp = fleet.chat(&chat_body("m", &format!("{i}"))).await;
        assert_eq!(resp.status(), 200, "request {i} failed over");
        assert_eq!(served_by(&resp), "b");
    }
    // A large body (gateway's own path) fails over too.
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .body(big_body(128 * 1024, "m"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    fleet.stop().await;
}
