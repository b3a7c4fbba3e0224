//! End-to-end tests of `cache_aware` routing: a real gateway in front of `sagellm-sim` workers
//! with vLLM-like prefix caches, over loopback.

mod common;

use std::collections::{HashMap, HashSet};

use common::{admin_post, served_by, sim, Fleet};
use sagellm_gateway::config::Strategy;
use sagellm_sim::SimConfig;
use serde_json::{json, Value};

/// A chat request: one of the long shared contexts, then a fresh question.
fn ask(context: usize, question: usize, max_tokens: u32) -> Value {
    let words: Vec<String> = (0..300).map(|i| format!("c{context}w{i}")).collect();
    json!({
        "model": "m",
        "max_tokens": max_tokens,
        "messages": [
            {"role": "system", "content": words.join(" ")},
            {"role": "user", "content": format!("question number {question}")},
        ],
    })
}

fn index_of(name: &str) -> usize {
    ["a", "b", "c"].iter().position(|n| *n == name).unwrap()
}

/// Three workers; a request generates its `max_tokens` (1 ms each), so long ones overlap.
async fn cache_aware_fleet() -> Fleet {
    let worker = |name: &str| SimConfig {
        output_tokens: 1_000,
        ..sim(name, "m")
    };
    Fleet::start(vec![worker("a"), worker("b"), worker("c")], |c| {
        c.routing.strategy = Strategy::CacheAware;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_context_stays_on_one_worker_and_its_cache_hits() {
    let fleet = cache_aware_fleet().await;
    let mut homes: HashMap<usize, HashSet<String>> = HashMap::new();
    for q in 0..6 {
        for ctx in 0..3 {
            let resp = fleet.chat(&ask(ctx, q, 2)).await;
            assert_eq!(resp.status(), 200);
            homes.entry(ctx).or_default().insert(served_by(&resp));
        }
    }
    for (ctx, workers) in &homes {
        assert_eq!(workers.len(), 1, "context {ctx} went to {workers:?}");
    }
    // Each worker that holds a context found it in its prefix cache from the second time on.
    for workers in homes.values() {
        let name = workers.iter().next().unwrap();
        let sim = &fleet.sims[index_of(name)];
        assert!(
            sim.control().prefix_cache_hits_total() > 0,
            "{name} never hit its cache"
        );
    }
    // The gateway shows it: the matched-prefix counters and each worker's scraped hit rate.
    common::eventually("a scraped hit rate", 5, || {
        let pool = fleet.gw.state.pool.load();
        pool.workers
            .iter()
            .any(|w| w.load.view().prefix_cache_hit_rate.unwrap_or(0.0) > 0.0)
    })
    .await;
    let text = fleet.get("/metrics").await.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let matched = value("llm_gateway_prefix_matched_tokens_total ");
    let prompt = value("llm_gateway_prefix_prompt_tokens_total ");
    assert!(matched > 0.5 * prompt, "matched {matched} of {prompt}");
    assert!(value("llm_gateway_prefix_index_entries ") > 0.0);
    assert!(text.contains("llm_worker_prefix_cache_hit_rate{url="));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_or_killed_home_moves_the_context_without_failures() {
    let mut fleet = cache_aware_fleet().await;
    let home = served_by(&fleet.chat(&ask(0, 0, 2)).await);
    let h = index_of(&home);
    let resp = admin_post(&fleet, &format!("/api/workers/{h}/drain"), None).await;
    assert_eq!(resp.status(), 200);
    let mut second = HashSet::new();
    for q in 1..6 {
        let resp = fleet.chat(&ask(0, q, 2)).await;
        assert_eq!(resp.status(), 200, "question {q}");
        second.insert(served_by(&resp));
    }
    assert!(!second.contains(&home), "a draining worker got the context");
    assert_eq!(
        second.len(),
        1,
        "the context settles on one new home: {second:?}"
    );
    let next = second.into_iter().next().unwrap();
    // Kill the new home: the context moves again and no request fails.
    fleet.sims[index_of(&next)].kill_and_wait().await;
    for q in 6..12 {
        let resp = fleet.chat(&ask(0, q, 2)).await;
        assert_eq!(resp.status(), 200, "question {q}");
        let by = served_by(&resp);
        assert!(by != next && by != home, "question {q} went to {by}");
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_one_context_spreads_once_the_bound_is_passed() {
    let fleet = cache_aware_fleet().await;
    // Warm one home for the context.
    let home = served_by(&fleet.chat(&ask(0, 0, 2)).await);
    // 16 concurrent requests of ~950 tokens each (prompt + 400 decode): about five fit in
    // the default slack of 4096 tokens on the home worker, the rest spill over.
    let requests = (1..=16).map(|q| {
        let fleet = &fleet;
        async move {
            let resp = fleet.chat(&ask(0, q, 400)).await;
            assert_eq!(resp.status(), 200);
            served_by(&resp)
        }
    });
    let served = futures_util::future::join_all(requests).await;
    let on_home = served.iter().filter(|s| **s == home).count();
    let workers: HashSet<&String> = served.iter().collect();
    assert!(workers.len() > 1, "all on {home}");
    assert!(on_home >= 4, "the home kept its share: {served:?}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_slow_at_prefill_gets_the_fresh_long_prompts_less() {
    // Same decode speed; "a" prefills 10x slower than "b".
    let worker = |name: &str, prefill_ms| SimConfig {
        prefill_per_1k_tokens: std::time::Duration::from_millis(prefill_ms),
        ..sim(name, "m")
    };
    let fleet = Fleet::start(vec![worker("a", 300), worker("b", 30)], |c| {
        c.routing.strategy = Strategy::CacheAware;
    })
    .await;
    let streamed = |ctx: usize| {
        let mut body = ask(ctx, 0, 2);
        body["stream"] = json!(true);
        body
    };
    let mut first = HashSet::new();
    for ctx in 0..2 {
        let resp = fleet.chat(&streamed(ctx)).await;
        assert_eq!(resp.status(), 200);
        first.insert(served_by(&resp));
        assert!(resp.text().await.unwrap().contains("[DONE]"));
    }
    assert_eq!(first.len(), 2, "with nothing measured, both get a turn");
    // Each learnt its prefill rate from a time to first token.
    common::eventually("both prefill rates", 5, || {
        let pool = fleet.gw.state.pool.load();
        pool.workers
            .iter()
            .all(|w| w.stats.view().prefill_ms_per_1k.is_some())
    })
    .await;
    let workers: Value = fleet.get_json("/api/workers").await;
    let rate = |i: usize| workers[i]["stats"]["prefill_ms_per_1k"].as_f64().unwrap();
    assert!(rate(0) > 3.0 * rate(1), "a {} b {}", rate(0), rate(1));
    for ctx in 2..10 {
        let resp = fleet.chat(&streamed(ctx)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(served_by(&resp), "b", "fresh context {ctx}");
        resp.text().await.unwrap();
    }
    fleet.stop().await;
}
