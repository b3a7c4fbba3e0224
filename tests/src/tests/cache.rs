//! The prefix cache seen from outside: hits counted in tokens like vLLM (`/sim/stats`,
//! `vllm:prefix_cache_*_total`), a bounded cache that forgets, and the timing knobs of
//! `/sim/config`.

use serde_json::json;

use super::client::{get, post};
use super::fast;
use crate::{spawn, SimConfig, BLOCK_TOKENS};

/// A chat body: a system context of `words` words (`ctx` + index), then `question`.
fn chat(ctx: &str, words: usize, question: &str) -> String {
    let context: Vec<String> = (0..words).map(|i| format!("{ctx}{i}")).collect();
    json!({
        "model": "sim-model",
        "max_tokens": 2,
        "messages": [
            {"role": "system", "content": context.join(" ")},
            {"role": "user", "content": question},
        ],
    })
    .to_string()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}{{model_name=\"sim-model\"}} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn a_repeated_context_hits_the_cache_and_the_counters_say_so() {
    let sim = spawn(fast()).await.expect("spawn");
    let first = post(
        sim.addr(),
        "/v1/chat/completions",
        &chat("c", 100, "first question"),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let stats = get(sim.addr(), "/sim/stats").await.json();
    assert_eq!(stats["prefix_cache_queries_total"], 102);
    assert_eq!(stats["prefix_cache_hits_total"], 0);

    // Same context, another question, streamed: the 6 full blocks of the shared prefix
    // (role marker + 100 words + the next role marker = 102 tokens) are cached.
    let body = chat("c", 100, "a different question")
        .replace("\"max_tokens\":2", "\"max_tokens\":2,\"stream\":true");
    let res = post(sim.addr(), "/v1/chat/completions", &body).await;
    assert!(res.text().ends_with("data: [DONE]\n\n"), "{}", res.text());
    let stats = get(sim.addr(), "/sim/stats").await.json();
    assert_eq!(stats["prefix_cache_queries_total"], 102 + 103);
    assert_eq!(stats["prefix_cache_hits_total"], 6 * BLOCK_TOKENS);
    assert_eq!(stats["cache_blocks"], 4096);

    let text = get(sim.addr(), "/metrics").await.text();
    assert!(text.contains("# TYPE vllm:prefix_cache_hits_total counter"));
    assert_eq!(metric(&text, "vllm:prefix_cache_queries_total"), 205.0);
    assert_eq!(
        metric(&text, "vllm:prefix_cache_hits_total"),
        (6 * BLOCK_TOKENS) as f64
    );

    // Another context shares nothing.
    post(sim.addr(), "/v1/chat/completions", &chat("d", 100, "q")).await;
    let stats = get(sim.addr(), "/sim/stats").await.json();
    assert_eq!(stats["prefix_cache_hits_total"], 6 * BLOCK_TOKENS);
}

#[tokio::test]
async fn a_small_cache_forgets_and_no_cache_never_hits() {
    // Room for one context of ~6 blocks, not two.
    let sim = spawn(SimConfig {
        cache_blocks: 8,
        ..fast()
    })
    .await
    .expect("spawn");
    for ctx in ["a", "b", "a"] {
        post(sim.addr(), "/v1/chat/completions", &chat(ctx, 100, "q")).await;
    }
    let stats = get(sim.addr(), "/sim/stats").await.json();
    let hits = stats["prefix_cache_hits_total"].as_u64().unwrap();
    assert!(hits < 6 * BLOCK_TOKENS as u64, "{stats}");
    assert!(stats["cache_blocks_used"].as_u64().unwrap() <= 8, "{stats}");

    let off = spawn(SimConfig {
        cache_blocks: 0,
        ..fast()
    })
    .await
    .expect("spawn");
    for _ in 0..2 {
        post(off.addr(), "/v1/chat/completions", &chat("a", 100, "q")).await;
    }
    let stats = get(off.addr(), "/sim/stats").await.json();
    assert_eq!(stats["prefix_cache_hits_total"], 0);
    assert_eq!(stats["prefix_cache_queries_total"], 2 * 101);
}

#[tokio::test]
async fn timing_knobs_are_set_and_checked_through_sim_config() {
    let sim = spawn(fast()).await.expect("spawn");
    let res = post(
        sim.addr(),
        "/sim/config",
        r#"{"prefill_ms_per_1k_tokens":40,"batch_penalty":0.5,"speed":0.4}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let stats = res.json();
    assert_eq!(stats["prefill_ms_per_1k_tokens"], 40);
    assert_eq!(stats["batch_penalty"], 0.5);
    assert_eq!(stats["speed"], 0.4);
    for bad in [
        r#"{"speed":0}"#,
        r#"{"speed":"fast"}"#,
        r#"{"batch_penalty":-1}"#,
        r#"{"prefill_ms_per_1k_tokens":-5}"#,
    ] {
        let res = post(sim.addr(), "/sim/config", bad).await;
        assert_eq!(res.status, 400, "{bad}");
    }
    // A refused patch changed nothing.
    let stats = get(sim.addr(), "/sim/stats").await.json();
    assert_eq!(stats["speed"], 0.4);
    assert_eq!(stats["batch_penalty"], 0.5);
}
