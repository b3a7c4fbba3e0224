//! Several gateway replicas acting as one through a real `redis-server` on loopback: the
//! per-user and global limits are shared exactly (and without Redis each replica admits its
//! own), and Redis faults — SIGKILL, SIGSTOP — degrade the limits to local buckets without
//! failing or holding any request, and recover without a restart.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{client, sim, stop_gateway, test_config};
use sagellm_gateway::config::{Config, RedisFailure};
use sagellm_gateway::server::{spawn as spawn_gateway, RunningGateway};
use sagellm_gateway::views::StatusInfo;
use sagellm_sim::SimHandle;
use serde_json::{json, Value};

/// One sim, and `n` gateway replicas in front of it (sharing `redis` when given).
async fn replicas(
    n: usize,
    redis: Option<&RedisServer>,
    tweak: impl Fn(&mut Config),
) -> (SimHandle, Vec<RunningGateway>) {
    let sim = sagellm_sim::spawn(sim("a", "m")).await.unwrap();
    let mut gws = Vec::new();
    for _ in 0..n {
        let mut c = test_config(&[(sim.url(), 1)]);
        c.rate_limit.enabled = true;
        c.redis.url = redis.map(RedisServer::url);
        tweak(&mut c);
        let gw = tokio::task::spawn_blocking(move || spawn_gateway(c).unwrap())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), gw.state.wait_routable(1))
            .await
            .expect("the worker becomes routable");
        gws.push(gw);
    }
    (sim, gws)
}

async fn status(gw: &RunningGateway) -> StatusInfo {
    client()
        .get(format!("{}/api/status", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Poll every replica's `/api/status` until `cond` holds for all (bounded by `within`);
/// returns how long it took.
async fn all_reach(
    gws: &[RunningGateway],
    within: Duration,
    what: &str,
    cond: impl Fn(&StatusInfo) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let mut ok = true;
        for gw in gws {
            ok &= cond(&status(gw).await);
        }
        if ok {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn body(user: &str) -> Value {
    json!({"model": "m", "user": user, "max_tokens": 2,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// Send `total` requests round-robin over the replicas, 6 at a time; the user of request
/// `i` is `user(i)`. Returns (admitted, refused with 429, elapsed).
async fn burst(
    gws: &[RunningGateway],
    total: usize,
    user: impl Fn(usize) -> String,
) -> (usize, usize, Duration) {
    let http = client();
    let urls: Vec<String> = gws
        .iter()
        .map(|g| format!("{}/v1/chat/completions", g.url()))
        .collect();
    let start = Instant::now();
    let mut admitted = 0;
    let mut refused = 0;
    for wave in (0..total).collect::<Vec<_>>().chunks(6) {
        let sends = wave.iter().map(|&i| {
            let req = http.post(&urls[i % urls.len()]).json(&body(&user(i)));
            async move { req.send().await.unwrap() }
        });
        for resp in futures_util::future::join_all(sends).await {
            match resp.status().as_u16() {
                200 => admitted += 1,
                429 => {
                    assert!(resp.headers().contains_key("retry-after"));
                    refused += 1;
                }
                s => panic!("unexpected {s}: {}", resp.text().await.unwrap()),
            }
        }
    }
    (admitted, refused, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_per_user_and_global_limits() {
    let redis = RedisServer::start();
    let (_sim, gws) = replicas(3, Some(&redis), |c| {
        c.rate_limit.per_user_rpm = 60;
        c.rate_limit.global_rps = 0;
        c.rate_limit.per_worker_qps = 0;
    })
    .await;
    let first = status(&gws[0]).await.shared;
    assert_eq!(first.backend, "redis");
    all_reach(&gws, Duration::from_secs(5), "3 live replicas", |s| {
        s.shared.backend == "redis" && s.shared.replicas == 3
    })
    .await;

    // One user, 90 requests over three replicas: the minute's 60, plus one per second spent.
    let (admitted, refused, took) = burst(&gws, 90, |_| "alice".into()).await;
    let refill = took.as_secs() as usize;
    println!("per user: {admitted} admitted, {refused} refused in {took:?}");
    assert!(
        (60..=60 + refill).contains(&admitted),
        "{admitted} admitted in {took:?}"
    );
    assert_eq!(admitted + refused, 90);
    // Another user is not affected.
    assert_eq!(burst(&gws, 3, |_| "bob".into()).await.0, 3);
    for gw in gws {
        stop_gateway(gw).await;
    }

    // The global bucket (burst 30, 5/s), many users: shared, then per replica without Redis.
    let global = |c: &mut Config| {
        c.rate_limit.per_user_rpm = 0;
        c.rate_limit.global_rps = 5;
        c.rate_limit.global_burst = 30;
        c.rate_limit.per_worker_qps = 0;
    };
    let (_sim, gws) = replicas(3, Some(&redis), global).await;
    all_reach(&gws, Duration::from_secs(5), "3 live replicas", |s| {
        s.shared.backend == "redis" && s.shared.replicas == 3
    })
    .await;
    let (shared, _, took) = burst(&gws, 90, |i| format!("user-{i}")).await;
    let allowance = 30 + 5 * (took.as_secs() as usize + 1);
    println!("global, shared: {shared} admitted in {took:?}");
    assert!((30..=allowance).contains(&shared), "{shared} in {took:?}");
    for gw in gws {
        stop_gateway(gw).await;
    }
    let (_sim, gws) = replicas(3, None, global).await;
    assert_eq!(status(&gws[0]).await.shared.backend, "local");
    let (alone, _, took) = burst(&gws, 90, |i| format!("user-{i}")).await;
    println!("global, without Redis: {alone} admitted in {took:?}");
    assert_eq!(alone, 90, "each replica admits its own burst of 30");
    for gw in gws {
        stop_gateway(gw).await;
    }
}

/// Requests through the replicas until `stop`; every one must be a 200, none slow.
async fn steady_load(
    gws: &[RunningGateway],
    stop: tokio::sync::watch::Receiver<bool>,
) -> (usize, Duration) {
    let http = client();
    let urls: Vec<String> = gws
        .iter()
        .map(|g| format!("{}/v1/chat/completions", g.url()))
        .collect();
    let mut sent = 0;
    let mut slowest = Duration::ZERO;
    while !*stop.borrow() && sent < 20_000 {
        let t = Instant::now();
        let resp = http
            .post(&urls[sent % urls.len()])
            .json(&body(&format!("u{}", sent % 7)))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            status,
            200,
            "request {sent}: {}",
            resp.text().await.unwrap()
        );
        let _ = resp.bytes().await;
        slowest = slowest.max(t.elapsed());
        sent += 1;
    }
    (sent, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_or_paused_degrades_to_local_limits_and_recovers() {
    let mut redis = RedisServer::start();
    let (_sim, gws) = replicas(2, Some(&redis), |c| {
        // Limits far above this load: only a fault could refuse a request.
        c.rate_limit.per_user_rpm = 1_000_000;
        c.rate_limit.global_rps = 100_000;
        c.rate_limit.global_burst = 100_000;
        c.redis.on_failure = RedisFailure::Local;
    })
    .await;
    all_reach(&gws, Duration::from_secs(5), "2 live replicas", |s| {
        s.shared.backend == "redis" && s.shared.replicas == 2
    })
    .await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = steady_load(&gws, stop_rx);
    let faults = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.kill();
        let down = all_reach(
            &gws,
            Duration::from_secs(1),
            "degraded after SIGKILL",
            |s| s.shared.backend == "degraded",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        redis.restart();
        let back = all_reach(
            &gws,
            Duration::from_secs(2),
            "redis again after restart",
            |s| s.shared.backend == "redis",
        )
        .await;
        redis.pause();
        let paused_at = Instant::now();
        let stalled = all_reach(&gws, Duration::from_secs(1), "degraded while paused", |s| {
            s.shared.backend == "degraded"
        })
        .await;
        tokio::time::sleep(Duration::from_secs(5).saturating_sub(paused_at.elapsed())).await;
        redis.resume();
        let resumed = all_reach(
            &gws,
            Duration::from_secs(2),
            "redis again after SIGCONT",
            |s| s.shared.backend == "redis",
        )
        .await;
        println!("degraded {down:?} after SIGKILL, back {back:?} after restart; degraded {stalled:?} after SIGSTOP, back {resumed:?} after SIGCONT");
        stop_tx.send(true).unwrap();
    };
    let ((sent, slowest), ()) = tokio::join!(load, faults);
    println!("{sent} requests, all 200, slowest {slowest:?}");
    assert!(sent > 50, "the load ran through the faults ({sent})");
    // redis.timeout_ms is 50: no request waited for the paused Redis (5 s).
    assert!(
        slowest < Duration::from_millis(1500),
        "slowest request {slowest:?}"
    );
    // Heartbeats may have expired during the 5 s pause: the count returns on the next beat.
    all_reach(&gws, Duration::from_secs(5), "2 live replicas again", |s| {
        s.shared.backend == "redis" && s.shared.replicas == 2
    })
    .await;
    let metrics = client()
        .get(format!("{}/metrics", gws[0].url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("llm_gateway_shared_backend{backend=\"redis\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("llm_gateway_replicas 2"), "{metrics}");
    assert!(metrics.contains("llm_gateway_redis_calls_total{result=\"timeout\"}"));
    for gw in gws {
        stop_gateway(gw).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_reject_and_allow() {
    let mut redis = RedisServer::start();
    let (_sim, mut gws) = replicas(1, Some(&redis), |c| {
        c.rate_limit.per_user_rpm = 2;
        c.redis.on_failure = RedisFailure::Reject;
    })
    .await;
    let (_sim2, allow) = replicas(1, Some(&redis), |c| {
        c.rate_limit.per_user_rpm = 2;
        c.redis.on_failure = RedisFailure::Allow;
    })
    .await;
    gws.extend(allow);
    all_reach(&gws, Duration::from_secs(5), "both on redis", |s| {
        s.shared.backend == "redis"
    })
    .await;
    redis.kill();
    all_reach(&gws, Duration::from_secs(2), "both degraded", |s| {
        s.shared.backend == "degraded"
    })
    .await;
    let http = client();
    let resp = http
        .post(format!("{}/v1/chat/completions", gws[0].url()))
        .json(&body("carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"].as_str().unwrap().contains("Redis"),
        "{err}"
    );
    // `allow`: no limit at all while Redis is down (2 per minute would stop the third).
    for i in 0..5 {
        let resp = http
            .post(format!("{}/v1/chat/completions", gws[1].url()))
            .json(&body("carol"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
    }
    // Health and the management API do not depend on Redis.
    assert_eq!(status(&gws[0]).await.shared.backend, "degraded");
    for gw in gws {
        stop_gateway(gw).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_on_the_worker_of_each_affinity_key() {
    let mut sims = Vec::new();
    for name in ["a", "b", "c"] {
        sims.push(sagellm_sim::spawn(sim(name, "m")).await.unwrap());
    }
    let workers: Vec<(String, u32)> = sims.iter().map(|s| (s.url(), 1)).collect();
    let mut gws = Vec::new();
    for _ in 0..3 {
        let mut c = test_config(&workers);
        c.routing.strategy = sagellm_gateway::config::Strategy::ConsistentHash;
        let gw = tokio::task::spawn_blocking(move || spawn_gateway(c).unwrap())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), gw.state.wait_routable(3))
            .await
            .unwrap();
        gws.push(gw);
    }
    let http = client();
    let mut disagreements = Vec::new();
    let mut spread = std::collections::HashMap::new();
    for chunk in (0..1000).collect::<Vec<usize>>().chunks(25) {
        let picks = chunk.iter().flat_map(|&k| {
            gws.iter()
                .map(move |gw| (k, format!("{}/v1/chat/completions", gw.url())))
        });
        let sends = picks.map(|(k, url)| {
            let req = http.post(url).json(&body(&format!("key-{k}")));
            async move { (k, common::served_by(&req.send().await.unwrap())) }
        });
        let mut by_key: std::collections::HashMap<usize, Vec<String>> = Default::default();
        for (k, w) in futures_util::future::join_all(sends).await {
            by_key.entry(k).or_default().push(w);
        }
        for (k, ws) in by_key {
            if ws.iter().any(|w| w != &ws[0]) {
                disagreements.push((k, ws));
            } else {
                *spread.entry(ws[0].clone()).or_insert(0) += 1;
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:?}");
    println!("1000 keys, the same worker on all 3 replicas; spread {spread:?}");
    assert_eq!(spread.len(), 3, "every worker takes keys: {spread:?}");
    for gw in gws {
        stop_gateway(gw).await;
    }
}

const ALICE: &str = "alice-key-0001";
const BOB: &str = "bob-key-00002";

async fn session_call(
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<Value>,
    session: Option<&str>,
) -> reqwest::Response {
    let mut req = client().request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(id) = session {
        req = req.header("x-session-id", id);
    }
    req.send().await.unwrap()
}

async fn history(gw: &RunningGateway, key: &str, id: &str) -> Vec<String> {
    let v: Value = session_call(
        reqwest::Method::GET,
        format!("{}/sessions/{id}", gw.url()),
        key,
        None,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    v["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_in_redis_continue_on_any_replica() {
    let mut redis = RedisServer::start();
    let sims = [
        sagellm_sim::spawn(sim("a", "m")).await.unwrap(),
        sagellm_sim::spawn(sim("b", "m")).await.unwrap(),
    ];
    let workers: Vec<(String, u32)> = sims.iter().map(|s| (s.url(), 1)).collect();
    let mut gws = Vec::new();
    for _ in 0..3 {
        let mut c = test_config(&workers);
        c.redis.url = Some(redis.url());
        c.auth.api_keys = vec![ALICE.into(), BOB.into()];
        c.routing.strategy = sagellm_gateway::config::Strategy::RoundRobin;
        c.sessions.max_messages = 12;
        let gw = tokio::task::spawn_blocking(move || spawn_gateway(c).unwrap())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), gw.state.wait_routable(2))
            .await
            .unwrap();
        gws.push(gw);
    }
    all_reach(&gws, Duration::from_secs(5), "on redis", |s| {
        s.shared.backend == "redis"
    })
    .await;
    let ask = |text: &str| json!({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": text}]});
    let post = reqwest::Method::POST;

    // Created on A, continued through B and C, in order, on one worker.
    let created: Value = session_call(
        post.clone(),
        format!("{}/sessions", gws[0].url()),
        ALICE,
        Some(json!({"system_prompt": "be brief", "ttl_seconds": 60})),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let mut workers_seen = std::collections::HashSet::new();
    for turn in 0..6 {
        let gw = &gws[turn % 3];
        let resp = session_call(
            post.clone(),
            format!("{}/v1/chat/completions", gw.url()),
            ALICE,
            Some(ask(&format!("turn {turn}"))),
            Some(&id),
        )
        .await;
        assert_eq!(resp.status(), 200, "turn {turn}");
        workers_seen.insert(common::served_by(&resp));
        let _ = resp.bytes().await;
    }
    assert_eq!(workers_seen.len(), 1, "one worker: {workers_seen:?}");
    let h = history(&gws[1], ALICE, &id).await;
    let asked: Vec<&String> = h.iter().filter(|m| m.starts_with("turn ")).collect();
    assert_eq!(
        asked,
        (0..6)
            .map(|t| format!("turn {t}"))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>(),
        "in order: {h:?}"
    );
    assert_eq!(h.len(), 12, "trimmed by whole turns to max_messages");

    // Owner isolation across replicas.
    for gw in &gws {
        let resp = session_call(
            reqwest::Method::GET,
            format!("{}/sessions/{id}", gw.url()),
            BOB,
            None,
            None,
        )
        .await;
        assert_eq!(resp.status(), 404);
    }
    let listed: Value = session_call(
        reqwest::Method::GET,
        format!("{}/sessions", gws[2].url()),
        ALICE,
        None,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(listed["total"], 1, "{listed}");

    // 2 replicas × 20 concurrent turns of one session: none lost.
    let created: Value = session_call(
        post.clone(),
        format!("{}/sessions", gws[0].url()),
        ALICE,
        Some(json!({})),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let busy = created["id"].as_str().unwrap().to_string();
    let cfg_max = 100;
    for gw in &gws {
        let mut c = (**gw.state.config.load()).clone();
        c.sessions.max_messages = cfg_max;
        let resp = client()
            .put(format!("{}/api/config", gw.url()))
            .json(&json!({"sessions": c.sessions}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let turns = (0..40).map(|i| {
        let url = format!("{}/v1/chat/completions", gws[i % 2].url());
        let body = ask(&format!("concurrent {i}"));
        let busy = busy.clone();
        async move {
            let r = session_call(reqwest::Method::POST, url, ALICE, Some(body), Some(&busy)).await;
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        }
    });
    let statuses = futures_util::future::join_all(turns).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let h = history(&gws[2], ALICE, &busy).await;
    for i in 0..40 {
        assert!(
            h.contains(&format!("concurrent {i}")),
            "turn {i} lost: {h:?}"
        );
    }
    assert_eq!(h.len(), 80, "40 questions and 40 answers");

    // A short TTL expires on every replica.
    let short: Value = session_call(
        post.clone(),
        format!("{}/sessions", gws[0].url()),
        BOB,
        Some(json!({"ttl_seconds": 1})),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let short = short["id"].as_str().unwrap().to_string();
    assert_eq!(history(&gws[1], BOB, &short).await.len(), 0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resp = session_call(
        reqwest::Method::GET,
        format!("{}/sessions/{short}", gws[2].url()),
        BOB,
        None,
        None,
    )
    .await;
    assert_eq!(resp.status(), 404, "expired");

    // Redis down: session requests get a fast 503 with Retry-After, plain ones are served.
    redis.kill();
    all_reach(&gws, Duration::from_secs(2), "degraded", |s| {
        s.shared.backend == "degraded"
    })
    .await;
    let t = Instant::now();
    let resp = session_call(
        post.clone(),
        format!("{}/v1/chat/completions", gws[0].url()),
        ALICE,
        Some(ask("while down")),
        Some(&id),
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let resp = session_call(
        post.clone(),
        format!("{}/v1/chat/completions", gws[0].url()),
        ALICE,
        Some(ask("plain")),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200, "plain requests do not need Redis");
    for gw in gws {
        stop_gateway(gw).await;
    }
}
