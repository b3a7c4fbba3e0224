//! Per-API-key quotas end to end: requests and tokens per minute, requests in flight, allowed
//! models, `/api/usage` and the per-key metrics agreeing with what the workers counted, live
//! reloads — in one gateway, and shared by three replicas through a real `redis-server`.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{client, eventually, sim, stop_gateway, test_config, Fleet};
use sagellm_gateway::config::{Config, KeyQuota};
use sagellm_gateway::server::{spawn as spawn_gateway, RunningGateway};
use serde_json::{json, Value};

fn quota(name: &str, tweak: impl FnOnce(&mut KeyQuota)) -> KeyQuota {
    let mut q = KeyQuota {
        name: name.into(),
        api_key: format!("sk-{name}"),
        ..Default::default()
    };
    tweak(&mut q);
    q
}

fn body(model: &str, max_tokens: u32) -> Value {
    json!({"model": model, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "count to ten"}]})
}

async fn send(url: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

/// A refusal's status, `Retry-After` and message.
async fn refused(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status(), status);
    if status == 429 {
        assert!(resp.headers().contains_key("retry-after"));
    }
    let v: Value = resp.json().await.unwrap();
    v["error"]["message"].as_str().unwrap().to_string()
}

async fn usage(url: &str) -> Value {
    client()
        .get(format!("{url}/api/usage"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn key_usage<'a>(u: &'a Value, name: &str) -> &'a Value {
    u["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {u}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_by_name_and_usage_matches_the_workers() {
    let fleet = Fleet::start(vec![sim("a", "m")], |c| {
        c.quotas = vec![
            quota("rpm", |q| q.requests_per_minute = 3),
            quota("tpm", |q| q.tokens_per_minute = 60),
            quota("models", |q| q.models = vec!["m".into()]),
            quota("conc", |q| q.max_concurrent = 1),
        ];
    })
    .await;
    let url = fleet.gw.url();

    // Keys are required once quotas exist; an unknown key is refused as any bad key.
    refused(send(&url, None, &body("m", 2)).await, 401).await;
    refused(send(&url, Some("sk-nobody"), &body("m", 2)).await, 401).await;

    for i in 0..3 {
        assert_eq!(
            send(&url, Some("sk-rpm"), &body("m", 2)).await.status(),
            200,
            "{i}"
        );
    }
    let msg = refused(send(&url, Some("sk-rpm"), &body("m", 2)).await, 429).await;
    assert!(
        msg.contains("`rpm`") && msg.contains("requests_per_minute = 3"),
        "{msg}"
    );
    assert!(!msg.contains("sk-rpm"), "the secret is never shown");

    // 60 tokens a minute: admitted while tokens are left, refused once they are spent.
    let mut spent = Vec::new();
    let msg = loop {
        let resp = send(&url, Some("sk-tpm"), &body("m", 50)).await;
        if resp.status() == 429 {
            break refused(resp, 429).await;
        }
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        spent.push(v["usage"]["total_tokens"].as_u64().unwrap());
        if spent.len() > 20 {
            panic!("the tokens quota never refused: {}", usage(&url).await);
        }
    };
    assert!(msg.contains("tokens_per_minute = 60"), "{msg}");
    let total: u64 = spent.iter().sum();
    let before_last = total - spent.last().unwrap();
    assert!(total >= 60 && before_last < 60, "{spent:?}");
    let admitted = spent.len();

    let msg = refused(send(&url, Some("sk-models"), &body("other", 2)).await, 403).await;
    assert!(msg.contains("may not use the model `other`"), "{msg}");
    assert_eq!(
        send(&url, Some("sk-models"), &body("m", 2)).await.status(),
        200
    );

    // One request in flight at a time: a long stream holds the slot.
    let mut long = body("m", 3000);
    long["stream"] = json!(true);
    // With its usage chunk, the stream is counted exactly (without, its prompt is estimated).
    long["stream_options"] = json!({"include_usage": true});
    let held = send(&url, Some("sk-conc"), &long).await;
    assert_eq!(held.status(), 200);
    let msg = refused(send(&url, Some("sk-conc"), &body("m", 2)).await, 429).await;
    assert!(msg.contains("max_concurrent = 1"), "{msg}");
    let _ = held.bytes().await;
    eventually("the slot is free again", 5, || {
        fleet.gw.state.active_requests() == 0
    })
    .await;
    assert_eq!(
        send(&url, Some("sk-conc"), &body("m", 2)).await.status(),
        200
    );

    // /api/usage agrees with what the worker counted (every admitted request reached it).
    let sim = fleet.sims[0].control();
    let want_tokens = sim.prompt_tokens_total() + sim.generation_tokens_total();
    let mut last = Value::Null;
    for _ in 0..200 {
        last = usage(&url).await;
        let keys = last["keys"].as_array().unwrap();
        let total: u64 = keys
            .iter()
            .map(|k| k["total_tokens"].as_u64().unwrap())
            .sum();
        let requests: u64 = keys.iter().map(|k| k["requests"].as_u64().unwrap()).sum();
        if total == want_tokens && requests == sim.requests_total() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last["source"], "local");
    let keys = last["keys"].as_array().unwrap();
    let total: u64 = keys
        .iter()
        .map(|k| k["total_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(total, want_tokens, "{last}");
    assert_eq!(key_usage(&last, "rpm")["requests"], 3);
    assert_eq!(key_usage(&last, "rpm")["refused"], 1);
    assert_eq!(key_usage(&last, "tpm")["requests"], admitted);
    assert_eq!(key_usage(&last, "models")["refused"], 1);
    let metrics = fleet.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("llm_key_requests_total{key=\"rpm\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("llm_key_refused_total{key=\"conc\"} 1"));
    assert!(!metrics.contains("sk-"), "no secret in the metrics");

    // A live change (PUT /api/config) raises the quota; the key's buckets carry over.
    let mut raised = serde_json::to_value(&fleet.gw.state.config.load().quotas).unwrap();
    raised[0]["requests_per_minute"] = json!(1000);
    let resp = client()
        .put(format!("{url}/api/config"))
        .json(&json!({"quotas": raised}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(
        send(&url, Some("sk-rpm"), &body("m", 2)).await.status(),
        200
    );
    assert_eq!(
        key_usage(&usage(&url).await, "rpm")["requests_per_minute"],
        1000
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_a_key_quota_through_redis() {
    let redis = RedisServer::start();
    let sim = sagellm_sim::spawn(sim("a", "m")).await.unwrap();
    let mut gws: Vec<RunningGateway> = Vec::new();
    for _ in 0..3 {
        let mut c: Config = test_config(&[(sim.url(), 1)]);
        c.redis.url = Some(redis.url());
        c.quotas = vec![
            quota("team", |q| q.tokens_per_minute = 400),
            quota("rpm", |q| q.requests_per_minute = 6),
        ];
        let gw = tokio::task::spawn_blocking(move || spawn_gateway(c).unwrap())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), gw.state.wait_routable(1))
            .await
            .unwrap();
        gws.push(gw);
    }
    let urls: Vec<String> = gws.iter().map(RunningGateway::url).collect();
    for url in &urls {
        for _ in 0..500 {
            let s: Value = client()
                .get(format!("{url}/api/status"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if s["shared"]["backend"] == "redis" && s["shared"]["replicas"] == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // 6 requests a minute for the key, whichever replica takes them.
    let mut ok = 0;
    for i in 0..12 {
        let status = send(&urls[i % 3], Some("sk-rpm"), &body("m", 2))
            .await
            .status();
        ok += usize::from(status == 200);
    }
    assert_eq!(ok, 6, "the minute's 6, shared");

    // 400 tokens a minute for the key across the replicas.
    let mut admitted = 0u64;
    let mut per_request = 0;
    loop {
        let resp = send(
            &urls[admitted as usize % 3],
            Some("sk-team"),
            &body("m", 50),
        )
        .await;
        if resp.status() == 429 {
            let msg = refused(resp, 429).await;
            assert!(msg.contains("tokens_per_minute = 400"), "{msg}");
            break;
        }
        let v: Value = resp.json().await.unwrap();
        per_request = v["usage"]["total_tokens"].as_u64().unwrap();
        admitted += 1;
        assert!(admitted <= 30, "the shared quota never refused");
    }
    // Without sharing, each replica would admit its own 400 tokens (3×).
    assert!(
        admitted * per_request <= 400 + 3 * per_request,
        "{admitted} × {per_request} tokens"
    );

    // Every replica reports the fleet's usage, as the worker counted it.
    let ctl = sim.control();
    let want = ctl.prompt_tokens_total() + ctl.generation_tokens_total();
    for url in &urls {
        let mut u = Value::Null;
        for _ in 0..300 {
            u = usage(url).await;
            let total: u64 = u["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["total_tokens"].as_u64().unwrap())
                .sum();
            if total == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(u["source"], "redis", "{u}");
        assert_eq!(key_usage(&u, "team")["requests"], admitted, "{u}");
        assert_eq!(key_usage(&u, "rpm")["requests"], 6, "{u}");
        let total: u64 = u["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["total_tokens"].as_u64().unwrap())
            .sum();
        assert_eq!(total, want, "{u}");
    }
    for gw in gws {
        stop_gateway(gw).await;
    }
}
