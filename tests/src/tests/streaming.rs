//! SSE streams: event order and shapes, pacing by tpot, usage chunk, disconnects.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{count, request_bytes, send_timed};
use super::{eventually, fast};
use crate::{spawn, SimConfig};

fn parse(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).expect("event JSON"))
        .collect()
}

#[tokio::test]
async fn chat_stream_is_paced_by_tpot_and_ends_with_done() {
    let tpot = Duration::from_millis(25);
    let sim = spawn(SimConfig {
        ttft: Duration::from_millis(10),
        tpot,
        output_tokens: 6,
        ..SimConfig::default()
    })
    .await
    .expect("spawn");
    let body = json!({"model": "sim-model", "stream": true,
                      "messages": [{"role": "user", "content": "count please"}]})
    .to_string();
    let (res, arrivals) = send_timed(sim.addr(), "POST", "/v1/chat/completions", &body).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-sim-name"), Some("sim"));
    assert!(res
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let events = res.events();
    // role + 6 tokens + finish + [DONE]; no usage chunk unless asked.
    assert_eq!(events.len(), 9, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = parse(&events);
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "tok0 ");
    assert_eq!(chunks[6]["choices"][0]["delta"]["content"], "tok5 ");
    assert_eq!(chunks[7]["choices"][0]["finish_reason"], "stop");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));

    // Events are flushed as produced: the stream spans (n − 1) × tpot, generously checked.
    assert_eq!(arrivals.len(), 9);
    let span = arrivals[8] - arrivals[0];
    assert!(span >= tpot * 3, "events not spread out: {arrivals:?}");
    assert!(arrivals[0] >= Duration::from_millis(10), "{arrivals:?}");
    assert_eq!(sim.control().completed_total(), 1);
    assert_eq!(sim.control().generation_tokens_total(), 6);
    assert_eq!(sim.control().running(), 0);
}

#[tokio::test]
async fn usage_chunk_only_when_asked() {
    let sim = spawn(fast()).await.expect("spawn");
    let body = json!({"model": "sim-model", "prompt": "a b c", "max_tokens": 4, "stream": true,
                      "stream_options": {"include_usage": true}})
    .to_string();
    let (res, _) = send_timed(sim.addr(), "POST", "/v1/completions", &body).await;
    let events = res.events();
    // 4 tokens + finish + usage + [DONE]; completions have no role chunk.
    assert_eq!(events.len(), 7, "{events:?}");
    let chunks = parse(&events);
    assert_eq!(chunks[0]["object"], "text_completion");
    assert_eq!(chunks[0]["choices"][0]["text"], "tok0 ");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(
        chunks[5]["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
               "prompt_tokens_details": null})
    );
    assert_eq!(events[6], "[DONE]");

    let body = json!({"model": "sim-model", "prompt": "a", "max_tokens": 2, "stream": true,
                      "stream_options": {"include_usage": false}})
    .to_string();
    let (res, _) = send_timed(sim.addr(), "POST", "/v1/completions", &body).await;
    assert!(!res.text().contains("\"usage\""));
}

#[tokio::test]
async fn client_disconnect_frees_the_slot_and_is_counted() {
    let sim = spawn(SimConfig {
        ttft: Duration::ZERO,
        tpot: Duration::from_millis(20),
        output_tokens: 1000,
        ..SimConfig::default()
    })
    .await
    .expect("spawn");
    let body = r#"{"model":"sim-model","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let mut stream = TcpStream::connect(sim.addr()).await.expect("connect");
    stream
        .write_all(&request_bytes(
            sim.addr(),
            "POST",
            "/v1/chat/completions",
            body.as_bytes(),
        ))
        .await
        .expect("write");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while count(&raw, b"data: ") < 2 {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "stream ended early");
        raw.extend_from_slice(&buf[..n]);
    }
    assert_eq!(sim.control().running(), 1);
    drop(stream);
    let control = sim.control();
    eventually("the disconnect", || {
        control.disconnects_total() == 1 && control.running() == 0
    })
    .await;
    assert_eq!(control.completed_total(), 0);
}
