//! Protection end to end: failover, circuit breakers, timeouts, draining, rate limits, API
//! keys, hostile input and graceful shutdown — against in-process `sagellm-sim` workers and
//! the real gateway over loopback.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::{
    admin_post, breaker, chat_body, eventually, expect_error, served_by, sim, workspace_bin, Fleet,
};
use futures_util::StreamExt;
use sagellm_gateway::config::Strategy;
use sagellm_gateway::server::free_port;
use sagellm_gateway::views::BreakerState;
use sagellm_sim::SimConfig;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_under_load_loses_no_request() {
    let mut fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m"), sim("c", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.circuit_breaker.timeout_seconds = 1;
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let url = fleet.url("/v1/chat/completions");
    let mut clients = Vec::new();
    for c in 0..4 {
        let (stop, ok, failed, url, http) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            url.clone(),
            fleet.http.clone(),
        );
        clients.push(tokio::spawn(async move {
            // Bounded: stops by itself after 5000 requests even if the test forgot to.
            for i in 0..5000 {
                if stop.load(Relaxed) {
                    break;
                }
                let r = http
                    .post(&url)
                    .json(&chat_body("m", &format!("client {c} request {i}")))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Relaxed),
                    _ => failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    eventually("load is flowing", 10, || ok.load(Relaxed) >= 40).await;
    fleet.sims[1].kill_and_wait().await;
    let killed = std::time::Instant::now();
    eventually("the dead worker's breaker opens", 10, || {
        breaker(&fleet, 1) == BreakerState::Open
    })
    .await;
    let to_open = killed.elapsed();
    let before = fleet.sims[1].control().requests_total();
    fleet.sims[1].restart().await.unwrap();
    let sim_b = fleet.sims[1].control_arc();
    let restarted = std::time::Instant::now();
    eventually("the worker is READY and served again", 15, || {
        sim_b.requests_total() > before + 5
    })
    .await;
    let to_serve = restarted.elapsed();
    stop.store(true, Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    eprintln!(
        "kill test: {} ok, {} failed; breaker open {to_open:?} after the kill; \
         the restarted worker served again after {to_serve:?}",
        ok.load(Relaxed),
        failed.load(Relaxed)
    );
    assert_eq!(
        failed.load(Relaxed),
        0,
        "failed client requests ({} succeeded)",
        ok.load(Relaxed)
    );
    assert_eq!(
        breaker(&fleet, 1),
        BreakerState::Closed,
        "closed again after its trial requests"
    );
    let w = &fleet.gw.state.pool.load().workers[1];
    assert!(w.breaker.view(&Default::default()).opened_total >= 1);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answering_503_is_routed_around() {
    let bad = SimConfig {
        status: Some(503),
        ..sim("bad", "m")
    };
    let fleet = Fleet::start(vec![sim("a", "m"), bad, sim("c", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
    })
    .await;
    let mut served = HashMap::new();
    for i in 0..30 {
        let resp = fleet.chat(&chat_body("m", &format!("{i}"))).await;
        assert_eq!(resp.status(), 200, "request {i}");
        *served.entry(served_by(&resp)).or_insert(0) += 1;
    }
    assert!(!served.contains_key("bad"), "{served:?}");
    assert_eq!(
        breaker(&fleet, 1),
        BreakerState::Open,
        "5xx answers open the breaker"
    );
    // Large bodies take the gateway's own path: they fail over too.
    let big = json!({"model":"m","messages":[{"role":"user","content":"x".repeat(100_000)}],"max_tokens":2});
    fleet.gw.state.pool.load().workers[1].breaker.reset();
    for _ in 0..3 {
        assert_eq!(fleet.chat(&big).await.status(), 200);
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_worker_fails_over_after_the_timeout() {
    let hung = SimConfig {
        hang: true,
        ..sim("hung", "m")
    };
    let fleet = Fleet::start(vec![sim("a", "m"), hung], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.upstream.read_timeout_ms = 300;
    })
    .await;
    for i in 0..12 {
        let resp = fleet.chat(&chat_body("m", &format!("{i}"))).await;
        assert_eq!(resp.status(), 200, "request {i} failed over");
        assert_eq!(served_by(&resp), "a");
    }
    assert_eq!(
        breaker(&fleet, 1),
        BreakerState::Open,
        "timeouts open the breaker"
    );
    assert_eq!(
        fleet.sims[1].control().requests_total(),
        5,
        "no traffic once open"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_trip_the_breaker() {
    let slow = SimConfig {
        ttft: Duration::from_millis(300),
        ..sim("slow", "m")
    };
    let fleet = Fleet::start(vec![sim("a", "m"), slow], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.circuit_breaker.slow_call_threshold_ms = 100;
    })
    .await;
    let mut by_slow = 0;
    for i in 0..20 {
        let resp = fleet.chat(&chat_body("m", &format!("{i}"))).await;
        assert_eq!(resp.status(), 200, "slow calls still succeed");
        by_slow += usize::from(served_by(&resp) == "slow");
    }
    assert_eq!(by_slow, 5, "five slow calls, then the breaker opened");
    assert_eq!(breaker(&fleet, 1), BreakerState::Open);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_worker_finishes_its_stream_and_gets_nothing_new() {
    let streaming = |n: &str| SimConfig {
        tpot: Duration::from_millis(60),
        output_tokens: 12,
        ..sim(n, "m")
    };
    let fleet = Fleet::start(vec![streaming("a"), streaming("b")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
    })
    .await;
    let mut body = chat_body("m", "tell me");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(12);
    let resp = fleet.chat(&body).await;
    assert_eq!(served_by(&resp), "a");
    let mut stream = resp.bytes_stream();
    let mut text = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();

    let drained: Value = admin_post(&fleet, "/api/workers/0/drain", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(drained["state"], "DRAINING");
    for i in 0..6 {
        assert_eq!(
            served_by(&fleet.chat(&chat_body("m", &format!("{i}"))).await),
            "b",
            "no new request to a"
        );
    }
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the open stream completed: {text}"
    );
    assert_eq!(fleet.sims[0].control().requests_total(), 1);

    let workers: Value = fleet.get("/api/workers").await.json().await.unwrap();
    assert_eq!(workers[0]["state"], "DRAINING");
    admin_post(&fleet, "/api/workers/127.0.0.1:1/undrain", None)
        .await
        .status();
    let unknown = admin_post(&fleet, "/api/workers/9/drain", None).await;
    expect_error(unknown, 404).await;
    let id = workers[0]["id"].as_str().unwrap().to_string();
    let undrained: Value = admin_post(&fleet, &format!("/api/workers/{id}/undrain"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(undrained["state"], "READY");
    let counts: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(served_by(
                &fleet.chat(&chat_body("m", &format!("{i}"))).await,
            ));
        }
        v
    };
    assert!(
        counts.iter().any(|s| s == "a"),
        "undrained worker serves again: {counts:?}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limit_then_429_with_retry_after() {
    let fleet = Fleet::start(vec![sim("a", "m")], |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.global_rps = 0;
        c.rate_limit.per_user_rpm = 60;
        c.rate_limit.per_worker_qps = 0;
    })
    .await;
    let as_user = |u: &str, i: usize| {
        let mut b = chat_body("m", &format!("{i}"));
        b["user"] = json!(u);
        b
    };
    for i in 0..60 {
        assert_eq!(
            fleet.chat(&as_user("alice", i)).await.status(),
            200,
            "request {i} of alice"
        );
    }
    let resp = fleet.chat(&as_user("alice", 60)).await;
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=2).contains(&retry_after),
        "one cell refills each second: {retry_after}"
    );
    let v = expect_error(resp, 429).await;
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(
        fleet.chat(&as_user("bob", 0)).await.status(),
        200,
        "other users are unaffected"
    );
    assert_eq!(
        fleet.sims[0].control().requests_total(),
        61,
        "the rejected request never reached a worker"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_bucket_allows_its_burst_then_throttles() {
    let fleet = Fleet::start(vec![sim("a", "m")], |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.global_rps = 2;
        c.rate_limit.global_burst = 10;
        c.rate_limit.per_user_rpm = 0;
    })
    .await;
    let bodies: Vec<Value> = (0..16)
        .map(|i| {
            let mut b = chat_body("m", "x");
            b["user"] = json!(format!("user-{i}"));
            b
        })
        .collect();
    let resps = futures_util::future::join_all(bodies.iter().map(|b| fleet.chat(b))).await;
    let ok = resps.iter().filter(|r| r.status() == 200).count();
    let limited = resps.iter().filter(|r| r.status() == 429).count();
    assert_eq!(ok + limited, 16);
    assert!(
        (10..=11).contains(&ok),
        "the burst of 10 passes (plus at most one refill): {ok}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_the_admin_key() {
    let fleet = Fleet::start(vec![sim("a", "m")], |c| {
        c.auth.api_keys = vec!["test-key-123".into(), "other-key-456".into()];
        c.auth.admin_key = Some("admin-key-789".into());
    })
    .await;
    let chat = |key: Option<&str>, header: &str| {
        let mut r = fleet
            .http
            .post(fleet.url("/v1/chat/completions"))
            .json(&chat_body("m", "hi"));
        if let Some(k) = key {
            r = if header == "bearer" {
                r.bearer_auth(k)
            } else {
                r.header("x-api-key", k)
            };
        }
        r.send()
    };
    let v = expect_error(chat(None, "bearer").await.unwrap(), 401).await;
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert!(!v.to_string().contains("test-key"), "keys never echoed");
    expect_error(chat(Some("test-key-124"), "bearer").await.unwrap(), 401).await;
    expect_error(chat(Some("admin-key-789"), "bearer").await.unwrap(), 401).await;
    assert_eq!(
        chat(Some("test-key-123"), "bearer").await.unwrap().status(),
        200
    );
    assert_eq!(
        chat(Some("other-key-456"), "x-api-key")
            .await
            .unwrap()
            .status(),
        200
    );
    expect_error(fleet.get("/v1/models").await, 401).await;
    assert_eq!(
        fleet.get("/health").await.status(),
        200,
        "health stays open"
    );
    assert_eq!(
        fleet.get("/api/workers").await.status(),
        200,
        "reads stay open"
    );
    expect_error(admin_post(&fleet, "/api/workers/0/drain", None).await, 401).await;
    expect_error(
        admin_post(&fleet, "/api/workers/0/drain", Some("test-key-123")).await,
        401,
    )
    .await;
    assert_eq!(
        admin_post(&fleet, "/api/workers/0/drain", Some("admin-key-789"))
            .await
            .status(),
        200
    );
    assert_eq!(
        admin_post(&fleet, "/api/workers/0/undrain", Some("admin-key-789"))
            .await
            .status(),
        200
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_never_pins_to_a_dead_worker() {
    let mut fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m"), sim("c", "m")], |c| {
        c.routing.strategy = Strategy::ConsistentHash;
    })
    .await;
    let (http, url) = (fleet.http.clone(), fleet.url("/v1/chat/completions"));
    let with_session = |s: &str| {
        http.post(&url)
            .header("x-session-id", s)
            .json(&chat_body("m", "hi"))
            .send()
    };
    let home = served_by(&with_session("sticky").await.unwrap());
    let idx = ["a", "b", "c"].iter().position(|n| *n == home).unwrap();
    fleet.sims[idx].kill_and_wait().await;
    for _ in 0..5 {
        let resp = with_session("sticky").await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_ne!(served_by(&resp), home);
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_failover_off_a_broken_stream_ends_with_an_sse_error() {
    let slow = SimConfig {
        tpot: Duration::from_millis(100),
        output_tokens: 50,
        ..sim("a", "m")
    };
    let mut fleet = Fleet::start(vec![slow, sim("b", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.failover.enabled = false;
    })
    .await;
    let mut body = chat_body("m", "stream");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(50);
    let resp = fleet.chat(&body).await;
    assert_eq!(served_by(&resp), "a");
    let mut stream = resp.bytes_stream();
    let mut text = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    fleet.sims[0].kill();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.contains("data: {\"error\""),
        "an SSE error event ends the stream: {text}"
    );
    assert!(!text.contains("[DONE]"));
    assert_eq!(
        fleet.sims[1].control().requests_total(),
        0,
        "a started stream is never replayed"
    );
    fleet.stop().await;
}

/// Send raw bytes, return the status code of the answer (None: closed without one).
fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_and_the_gateway_keeps_serving() {
    let fleet = Fleet::start(vec![sim("a", "m")], |c| {
        c.limits.max_body_bytes = 1024 * 1024;
    })
    .await;
    let json_cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated",
            br#"{"model":"m","messages":[{"role":"user","#.to_vec(),
        ),
        ("wrong types", br#"{"model":{"a":1},"messages":7}"#.to_vec()),
        (
            "invalid utf-8",
            b"{\"model\":\"m\xc3\x28\",\"messages\":[]}".to_vec(),
        ),
        ("nul bytes", b"{\"model\":\"m\0\",\"messages\":[]}".to_vec()),
        (
            "path traversal model",
            br#"{"model":"../../../etc/passwd","messages":[]}"#.to_vec(),
        ),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        ),
        ("not an object", b"\"just a string\"".to_vec()),
        ("over max body", vec![b' '; 2 * 1024 * 1024]),
    ];
    for (name, body) in json_cases {
        let resp = fleet
            .http
            .post(fleet.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{name}: {status}");
        expect_error(resp, status).await;
    }
    let addr = fleet.gw.addr;
    let big_header = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(10 * 1024 * 1024)
    );
    let raw_cases: Vec<(&str, Vec<u8>)> = vec![
        ("10 MB header", big_header.into_bytes()),
        ("garbage request line", b"\x16\x03\x01\x02\x00GARBAGE\r\n\r\n".to_vec()),
        ("conflicting lengths", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello".to_vec()),
        ("negative length", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n".to_vec()),
        ("absurd length", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999\r\n\r\n".to_vec()),
        ("bad chunking", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnope\r\n".to_vec()),
        ("traversal path", b"GET /v1/../../etc/passwd HTTP/1.1\r\nhost: x\r\n\r\n".to_vec()),
        ("unknown method", b"BREW /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\r\n".to_vec()),
    ];
    for (name, req) in raw_cases {
        let status = tokio::task::spawn_blocking(move || raw_status(addr, &req))
            .await
            .unwrap();
        assert!(
            status.is_none_or(|s| (400..500).contains(&s)),
            "{name}: {status:?}"
        );
    }
    assert_eq!(
        fleet.sims[0].control().requests_total(),
        0,
        "nothing hostile reached a worker"
    );
    // Sampling parameters belong to the worker: a well-formed body with an absurd value is
    // forwarded, and the worker's own 400 comes back unchanged.
    let absurd = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1e400}"#;
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .body(absurd.to_vec())
        .send()
        .await
        .unwrap();
    expect_error(resp, 400).await;
    assert_eq!(
        fleet.chat(&chat_body("m", "still alive?")).await.status(),
        200
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_hold_the_gateway() {
    let fleet = Fleet::start(vec![sim("a", "m")], |_| {}).await;
    let addr = fleet.gw.addr;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-le")
            .unwrap();
        stalled.push(s);
    }
    let mut partial_body = std::net::TcpStream::connect(addr).unwrap();
    partial_body
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"mo",
        )
        .unwrap();
    for i in 0..5 {
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            fleet.chat(&chat_body("m", &format!("{i}"))),
        )
        .await
        .expect("served while 51 clients stall");
        assert_eq!(resp.status(), 200);
    }
    drop(stalled);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_streams_then_exits_zero() {
    let worker = sagellm_sim::spawn(SimConfig {
        tpot: Duration::from_millis(100),
        output_tokens: 15,
        ..sim("a", "m")
    })
    .await
    .unwrap();
    let port = free_port().unwrap();
    let dir = std::env::temp_dir().join(format!("sagellm-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        "[server]\ngrace_period_seconds = 20\nthreads = 1\n[health]\ncheck_interval_ms = 100\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(workspace_bin("sagellm-gateway"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .env("LLM_WORKER_URLS", worker.url())
        .env("LLM_LOG", "warn")
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = common::client();
    eventually("the gateway serves", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && std::process::Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &format!("{url}/health")])
                .status()
                .is_ok_and(|s| s.success())
    })
    .await;
    let mut body = chat_body("m", "long answer");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(15);
    let resp = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut text = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // New requests are refused while the stream drains.
    let refused = loop {
        match common::client()
            .post(format!("{url}/v1/chat/completions"))
            .json(&chat_body("m", "late"))
            .send()
            .await
        {
            Ok(r) if r.status() == 503 => break true,
            Ok(r) if r.status() == 200 => continue, // raced the signal
            Ok(r) => panic!("unexpected {}", r.status()),
            Err(_) => break true, // listener already closed
        }
    };
    assert!(refused);
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the in-flight stream finished: {text}"
    );
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");
    std::fs::remove_dir_all(&dir).ok();
}
