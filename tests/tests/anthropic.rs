//! Anthropic's Messages API end to end: `/v1/messages` through the real gateway to
//! OpenAI-only `sagellm-sim` workers — the raw shapes checked here, then the official
//! `anthropic` Python SDK driving the same gateway (`tests/python/anthropic_sdk_test.py`).

mod common;

use std::path::PathBuf;

use common::{sim, venv_python, Fleet};
use futures_util::StreamExt;
use serde_json::{json, Value};

const KEY: &str = "anthropic-test-key";

async fn messages(fleet: &Fleet, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = fleet
        .http
        .post(fleet.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&body);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.unwrap()
}

/// Anthropic's error shape, with this status and error type.
async fn expect_anthropic_error(resp: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(resp.status().as_u16(), status);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    v["error"]["message"].as_str().unwrap().to_string()
}

fn ask(max_tokens: u32) -> Value {
    json!({
        "model": "m",
        "max_tokens": max_tokens,
        "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "one two"}]}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_translated_both_ways() {
    let fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m")], |c| {
        c.auth.api_keys = vec![KEY.into()];
    })
    .await;

    // Plain: Anthropic's message, usage from the worker's (system 2 words + 2 words).
    let resp = messages(&fleet, Some(KEY), ask(5)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "m");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(
        v["content"][0]["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        5
    );
    assert_eq!(
        v["stop_reason"], "max_tokens",
        "the sim stops at max_tokens: {v}"
    );
    assert_eq!(v["usage"]["input_tokens"], 4);
    assert_eq!(v["usage"]["output_tokens"], 5);

    // Streamed: the event sequence of Anthropic's API, text in deltas.
    let mut body = ask(4);
    body["stream"] = json!(true);
    let resp = messages(&fleet, Some(KEY), body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut raw = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(c) = chunks.next().await {
        raw.extend_from_slice(&c.unwrap());
    }
    let raw = String::from_utf8(raw).unwrap();
    let events: Vec<&str> = raw
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .filter(|e| *e != "ping")
        .collect();
    let deltas = events
        .iter()
        .filter(|e| **e == "content_block_delta")
        .count();
    assert_eq!(deltas, 4, "{raw}");
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(events, expected, "{raw}");
    let message_delta: Value = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|v| v["type"] == "message_delta")
        .unwrap();
    assert_eq!(message_delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(message_delta["usage"]["output_tokens"], 4);

    // Client mistakes, in Anthropic's shape.
    let msg = expect_anthropic_error(
        messages(&fleet, Some(KEY), json!({"model": "m", "messages": []})).await,
        400,
        "invalid_request_error",
    )
    .await;
    assert!(msg.contains("max_tokens"), "{msg}");
    let image = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]});
    expect_anthropic_error(
        messages(&fleet, Some(KEY), image).await,
        400,
        "invalid_request_error",
    )
    .await;
    let resp = fleet
        .http
        .post(fleet.url("/v1/messages"))
        .header("x-api-key", KEY)
        .body("{oops")
        .send()
        .await
        .unwrap();
    expect_anthropic_error(resp, 400, "invalid_request_error").await;
    expect_anthropic_error(
        messages(&fleet, None, ask(5)).await,
        401,
        "authentication_error",
    )
    .await;
    expect_anthropic_error(
        messages(&fleet, Some("wrong-key-123"), ask(5)).await,
        401,
        "authentication_error",
    )
    .await;
    let mut unknown = ask(5);
    unknown["model"] = json!("nope");
    expect_anthropic_error(
        messages(&fleet, Some(KEY), unknown).await,
        404,
        "not_found_error",
    )
    .await;
    let resp = fleet
        .http
        .get(fleet.url("/v1/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);

    // A worker error comes back translated; with every worker failing, the gateway's own.
    for s in &fleet.sims {
        s.control().set_status(Some(400));
    }
    expect_anthropic_error(
        messages(&fleet, Some(KEY), ask(5)).await,
        400,
        "invalid_request_error",
    )
    .await;
    for s in &fleet.sims {
        s.control().set_status(Some(503));
    }
    let resp = messages(&fleet, Some(KEY), ask(5)).await;
    assert!(resp.status().is_server_error());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    for s in &fleet.sims {
        s.control().set_status(None);
    }
    assert_eq!(messages(&fleet, Some(KEY), ask(5)).await.status(), 200);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_anthropic_sdk_works_against_the_gateway() {
    let python = venv_python();
    let fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m")], |c| {
        c.auth.api_keys = vec![KEY.into()];
    })
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/anthropic_sdk_test.py");
    let mut run = tokio::process::Command::new(python);
    run.arg(script)
        .env("GATEWAY_URL", fleet.gw.url())
        .env("API_KEY", KEY)
        .env("MODEL", "m");
    common::run_script(run, 120, "the anthropic SDK test").await;
    fleet.stop().await;
}
