//! Request/response shapes of the OpenAI surface, errors, and the informational endpoints.

use serde_json::{json, Value};

use super::client::{get, post};
use super::fast;
use crate::{fnv1a64, spawn, MetricsFlavor, SimConfig};

#[tokio::test]
async fn non_streaming_chat_has_vllm_shape_and_usage() {
    let sim = spawn(SimConfig {
        name: "w7".into(),
        ..fast()
    })
    .await
    .expect("spawn");
    let body = json!({
        "model": "sim-model",
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "hello there simulated world"}],
        "max_tokens": 5,
    })
    .to_string();
    let res = post(sim.addr(), "/v1/chat/completions", &body).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("x-sim-name"), Some("w7"));
    let v = res.json();
    assert!(v["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "sim-model");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ");
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 11);
    assert_eq!(sim.control().last_body_len(), body.len() as u64);
    assert_eq!(sim.control().last_body_hash(), fnv1a64(body.as_bytes()));

    // Without max_tokens: output_tokens (16) tokens and a natural stop.
    let res = post(
        sim.addr(),
        "/v1/chat/completions",
        r#"{"model":"sim-model","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    let v = res.json();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    assert_eq!(content.split_whitespace().count(), 16);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(sim.control().requests_total(), 2);
    assert_eq!(sim.control().completed_total(), 2);
}

#[tokio::test]
async fn completions_and_embeddings() {
    let sim = spawn(fast()).await.expect("spawn");
    let res = post(
        sim.addr(),
        "/v1/completions",
        r#"{"model":"sim-model","prompt":"one two three","max_tokens":100}"#,
    )
    .await;
    assert_eq!(res.status, 200);
    let v = res.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")));
    assert_eq!(
        v["choices"][0]["text"]
            .as_str()
            .map(|t| t.split_whitespace().count()),
        Some(16)
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 3);

    let res = post(
        sim.addr(),
        "/v1/embeddings",
        r#"{"model":"sim-model","input":["a b","c"]}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let v = res.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().map(Vec::len), Some(8));
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let again = post(
        sim.addr(),
        "/v1/embeddings",
        r#"{"model":"sim-model","input":"a b"}"#,
    )
    .await
    .json();
    assert_eq!(again["data"][0]["embedding"], v["data"][0]["embedding"]);
}

#[tokio::test]
async fn unknown_model_is_404_and_bad_bodies_are_400() {
    let sim = spawn(fast()).await.expect("spawn");
    let res = post(
        sim.addr(),
        "/v1/chat/completions",
        r#"{"model":"gpt-x","messages":[]}"#,
    )
    .await;
    assert_eq!(res.status, 404);
    assert_eq!(res.header("x-sim-name"), Some("sim"));
    assert_eq!(
        res.json(),
        json!({"error": {"message": "The model `gpt-x` does not exist.",
                         "type": "NotFoundError", "param": null, "code": 404}})
    );
    for (path, body) in [
        ("/v1/chat/completions", "{not json"),
        ("/v1/chat/completions", ""),
        ("/v1/chat/completions", "[1,2]"),
        ("/v1/chat/completions", r#"{"model":"sim-model"}"#),
        ("/v1/chat/completions", r#"{"messages":[]}"#),
        (
            "/v1/completions",
            r#"{"model":"sim-model","prompt":{"a":1}}"#,
        ),
        (
            "/v1/completions",
            r#"{"model":"sim-model","prompt":"x","max_tokens":0}"#,
        ),
        ("/v1/embeddings", r#"{"model":"sim-model"}"#),
    ] {
        let res = post(sim.addr(), path, body).await;
        assert_eq!(res.status, 400, "{path} {body}: {}", res.text());
        let v = res.json();
        assert_eq!(v["error"]["type"], "BadRequestError");
        assert_eq!(v["error"]["code"], 400);
    }
    assert_eq!(sim.control().completed_total(), 0);
    assert_eq!(sim.control().failed_total(), 9);
}

#[tokio::test]
async fn models_version_health_and_metrics() {
    let sim = spawn(SimConfig {
        models: vec!["a".into(), "b".into()],
        sleeping: true,
        ..fast()
    })
    .await
    .expect("spawn");
    let v = get(sim.addr(), "/v1/models").await.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(v["data"][0]["owned_by"], "vllm");
    assert_eq!(v["data"][0]["max_model_len"], 4096);
    assert_eq!(
        get(sim.addr(), "/version").await.json(),
        json!({"version": "0.11.0"})
    );
    let health = get(sim.addr(), "/health").await;
    assert_eq!((health.status, health.body.len()), (200, 0));
    sim.control().set_health_status(503);
    assert_eq!(get(sim.addr(), "/health").await.status, 503);

    let text = get(sim.addr(), "/metrics").await.text();
    for line in [
        "# TYPE vllm:num_requests_running gauge",
        "vllm:num_requests_running{model_name=\"a\"} 0.0",
        "vllm:num_requests_waiting{model_name=\"a\"} 0.0",
        "vllm:kv_cache_usage_perc{model_name=\"a\"} 0.0",
        "vllm:engine_sleep_state{model_name=\"a\",sleep_state=\"weights_offloaded\"} 1.0",
        "# TYPE vllm:request_success_total counter",
        "vllm:prompt_tokens_total{model_name=\"a\"} 0.0",
        "vllm:generation_tokens_total{model_name=\"a\"} 0.0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }

    let lm = spawn(SimConfig {
        flavor: MetricsFlavor::Lmdeploy,
        owned_by: "lmdeploy".into(),
        ..fast()
    })
    .await
    .expect("spawn");
    let text = get(lm.addr(), "/metrics").await.text();
    assert!(text.contains("lmdeploy:num_requests_running{"));
    assert!(text.contains("lmdeploy:gpu_cache_usage_perc{"));
    assert!(!text.contains("vllm:"));
    assert_eq!(get(lm.addr(), "/version").await.status, 404);

    let none = spawn(SimConfig {
        flavor: MetricsFlavor::None,
        ..fast()
    })
    .await
    .expect("spawn");
    assert_eq!(get(none.addr(), "/metrics").await.status, 404);
    assert_eq!(get(none.addr(), "/no/such/path").await.status, 404);
}

#[tokio::test]
async fn sim_config_and_stats_endpoints() {
    let sim = spawn(fast()).await.expect("spawn");
    let res = post(
        sim.addr(),
        "/sim/config",
        r#"{"status":429,"ttft_ms":7,"output_tokens":3,"sleeping":true}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let stats = res.json();
    assert_eq!(stats["status"], 429);
    assert_eq!(stats["ttft_ms"], 7);
    assert_eq!(stats["output_tokens"], 3);
    assert_eq!(stats["sleeping"], true);
    let chat = r#"{"model":"sim-model","messages":[{"role":"user","content":"x"}]}"#;
    assert_eq!(
        post(sim.addr(), "/v1/chat/completions", chat).await.status,
        429
    );

    let stats = post(sim.addr(), "/sim/config", r#"{"status":null}"#)
        .await
        .json();
    assert_eq!(stats["status"], Value::Null);
    let v = post(sim.addr(), "/v1/chat/completions", chat).await.json();
    assert_eq!(v["usage"]["completion_tokens"], 3);

    for bad in [
        r#"{"status":"x"}"#,
        r#"{"fail_rate":2}"#,
        r#"{"nope":1}"#,
        "[]",
        "{",
    ] {
        assert_eq!(
            post(sim.addr(), "/sim/config", bad).await.status,
            400,
            "{bad}"
        );
    }
    let stats = get(sim.addr(), "/sim/stats").await.json();
    assert_eq!(stats["requests_total"], 2);
    assert_eq!(stats["completed_total"], 1);
    assert_eq!(stats["failed_total"], 1);
    assert_eq!(stats["ttft_ms"], 7);
}
