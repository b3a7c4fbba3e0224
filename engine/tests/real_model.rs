//! The engine with the real default model (SmolLM2-135M-Instruct Q4_1, fetched by
//! `./scripts/fetch-model.sh`), over real HTTP on loopback, plus the gateway in front of it.
//!
//! One engine per test binary (loading takes a second or two). Tests take the `SERIAL` lock:
//! on two cores they would only slow each other down, batch composition changes greedy
//! outputs in the last bits, and the gauge checks must not see other tests' requests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sagellm_engine::args::{Dtype, EngineArgs, Requantize};
use serde_json::{json, Value};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn model_path() -> PathBuf {
    let p = std::env::var_os("SAGELLM_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/fetch-model.sh first",
        p.display()
    );
    p
}

fn args(max_seqs: usize) -> EngineArgs {
    EngineArgs {
        model: model_path(),
        host: "127.0.0.1".into(),
        port: 0,
        max_seqs,
        threads: None,
        served_model_name: Some("smollm2".into()),
        dtype: Dtype::F32,
        requantize: Requantize::Auto,
        prefix_cache: 0,
        pin_engine_thread: true,
        log_format: "human".into(),
    }
}

/// Start an engine on its own thread and runtime (it outlives every test's runtime) and
/// wait until `/health` says it is ready.
fn start_engine(max_seqs: usize) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let args = args(max_seqs);
            let listener = sagellm_engine::server::bind(&args).await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            sagellm_engine::server::run(args, listener, std::future::pending())
                .await
                .unwrap();
        });
    });
    let url = rx.recv().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = get_status(&format!("{url}/health"));
        if ok == Some(200) {
            return url;
        }
        assert!(Instant::now() < deadline, "the engine did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Status of a blocking `GET` (the engine thread's readiness; no runtime needed here).
fn get_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

fn engine() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| start_engine(4))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn post(path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", engine()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn gauge(url: &str, name: &str) -> f64 {
    let text = client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

fn chat(content: &str, max_tokens: u32) -> Value {
    json!({"model":"smollm2","messages":[{"role":"user","content":content}],"max_tokens":max_tokens,"temperature":0})
}

/// Read an SSE response; returns (data payloads, number of network reads that carried them).
async fn read_sse(resp: reqwest::Response) -> (Vec<String>, usize) {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let mut reads = 0;
    while let Some(chunk) = stream.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        reads += 1;
        while let Some(end) = buf.find("\n\n") {
            let ev: String = buf.drain(..end + 2).collect();
            if let Some(data) = ev.trim().strip_prefix("data: ") {
                events.push(data.to_string());
            }
        }
    }
    (events, reads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_answers_with_usage() {
    let _serial = SERIAL.lock().await;
    let resp = post(
        "/v1/chat/completions",
        chat("What is the capital of France?", 24),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "smollm2");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.trim().is_empty(), "{v}");
    let u = &v["usage"];
    assert!(u["completion_tokens"].as_u64().unwrap() > 0);
    assert!(u["prompt_tokens"].as_u64().unwrap() > 5);
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_is_deterministic_and_max_tokens_is_exact() {
    let _serial = SERIAL.lock().await;
    let body = chat(
        "Write a long story about a dragon who lives in a mountain.",
        7,
    );
    let a: Value = post("/v1/chat/completions", body.clone())
        .await
        .json()
        .await
        .unwrap();
    let b: Value = post("/v1/chat/completions", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["usage"]["completion_tokens"], 7, "{a}");
    assert_eq!(a["choices"][0]["finish_reason"], "length");
    assert_eq!(
        a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"],
        "temperature 0 repeats"
    );

    // The same seed gives the same sample; sampling still varies across seeds.
    let seeded = |seed: u64| {
        json!({"model":"smollm2","messages":[{"role":"user","content":"Name a colour."}],
                                    "max_tokens":12,"temperature":1.0,"seed":seed})
    };
    let s1: Value = post("/v1/chat/completions", seeded(11))
        .await
        .json()
        .await
        .unwrap();
    let s2: Value = post("/v1/chat/completions", seeded(11))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        s1["choices"][0]["message"]["content"],
        s2["choices"][0]["message"]["content"]
    );
    let mut differs = false;
    for seed in 12..16 {
        let s: Value = post("/v1/chat/completions", seeded(seed))
            .await
            .json()
            .await
            .unwrap();
        differs |= s["choices"][0]["message"]["content"] != s1["choices"][0]["message"]["content"];
    }
    assert!(differs, "five seeds all gave the same sample");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_and_stop() {
    let _serial = SERIAL.lock().await;
    let resp = post("/v1/completions", json!({"model":"smollm2","prompt":"The capital of France is","max_tokens":6,"temperature":0})).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["usage"]["completion_tokens"], 6, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(!text.is_empty());
    // `stop` cuts the text before the stop string.
    let first_word = text.split_whitespace().nth(1).unwrap_or("the").to_string();
    let stopped: Value = post(
        "/v1/completions",
        json!({"prompt":"The capital of France is","max_tokens":6,"temperature":0,"stop":[first_word.clone()]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let cut = stopped["choices"][0]["text"].as_str().unwrap();
    assert!(
        !cut.contains(&first_word),
        "stop `{first_word}` not applied: {cut:?} (full: {text:?})"
    );
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_arrive_incrementally_and_end_with_done() {
    let _serial = SERIAL.lock().await;
    let mut body = chat("Tell me about the sea.", 16);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post("/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (events, reads) = read_sse(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["content"].is_string())
        .collect();
    assert!(content.len() >= 10, "one chunk per token: {events:?}");
    assert!(
        reads >= 8,
        "chunks arrived incrementally, not in one piece ({reads} reads)"
    );
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"]["completion_tokens"], 16);

    // Without include_usage there is no usage chunk; completions stream too.
    let resp = post(
        "/v1/completions",
        json!({"prompt":"Once upon a time","max_tokens":5,"stream":true,"temperature":0}),
    )
    .await;
    let (events, _) = read_sse(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events.iter().all(|e| !e.contains("\"usage\"")));
    let tokens = events
        .iter()
        .filter(|e| e.contains("\"finish_reason\":null"))
        .count();
    assert_eq!(tokens, 5, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_requests_complete() {
    let _serial = SERIAL.lock().await;
    let bodies: Vec<Value> = (0..4)
        .map(|i| chat(&format!("Give me fact number {i} about cats."), 10))
        .collect();
    let resps =
        futures_util::future::join_all(bodies.into_iter().map(|b| post("/v1/chat/completions", b)))
            .await;
    for r in resps {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["usage"]["completion_tokens"], 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_streams_and_disconnects() {
    let _serial = SERIAL.lock().await;
    let url = engine();
    let mut body = chat("Describe a forest in detail.", 40);
    body["stream"] = json!(true);
    let resp = post("/v1/chat/completions", body.clone()).await;
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    assert!(
        gauge(url, "vllm:num_requests_running").await >= 1.0,
        "running during a stream"
    );
    assert!(gauge(url, "vllm:kv_cache_usage_perc").await > 0.0);
    while stream.next().await.is_some() {}
    assert_eq!(
        gauge(url, "vllm:num_requests_running").await,
        0.0,
        "released at stream end"
    );
    assert_eq!(gauge(url, "vllm:num_requests_waiting").await, 0.0);
    assert!(gauge(url, "vllm:time_to_first_token_seconds_count").await >= 1.0);
    assert!(gauge(url, "vllm:generation_tokens_total").await >= 40.0);

    // A client that disconnects mid-stream: released and counted as cancelled.
    let cancelled = gauge(url, "sagellm:requests_cancelled_total").await;
    body["max_tokens"] = json!(400);
    let resp = post("/v1/chat/completions", body).await;
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(url, "vllm:num_requests_running").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "running stayed up after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gauge(url, "sagellm:requests_cancelled_total").await,
        cancelled + 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_client_frees_the_engine() {
    let _serial = SERIAL.lock().await;
    // A one-sequence engine: a request can only start when the previous one left the batch.
    let url = start_engine(1);
    let long = json!({"messages":[{"role":"user","content":"Write a long story about a dragon."}],
                      "max_tokens":96,"temperature":0,"stream":true});
    // Precondition: uncancelled, this request really generates 96 tokens.
    let started = Instant::now();
    let full = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(&long)
        .send()
        .await
        .unwrap();
    let (events, _) = read_sse(full).await;
    let full_time = started.elapsed();
    assert!(
        events
            .iter()
            .any(|e| e.contains("\"finish_reason\":\"length\"")),
        "{events:?}"
    );

    let resp = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(&long)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    let started = Instant::now();
    let next = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"temperature":0}))
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
    // Had the abandoned generation run on, this request would have waited for its ~94 remaining
    // tokens (about as long as the full run); cancelled, it starts at once.
    assert!(
        started.elapsed() < full_time / 3,
        "waited {:?}; a full generation takes {full_time:?}",
        started.elapsed()
    );
}

/// `continue_final_message`: greedy, the continuation of the first part of an answer is the
/// rest of that answer (what the gateway's mid-stream failover relies on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_answer_is_continued() {
    let _serial = SERIAL.lock().await;
    let question = "Name three colours of the rainbow.";
    let full: Value = post("/v1/chat/completions", chat(question, 16))
        .await
        .json()
        .await
        .unwrap();
    let full = full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // Cut before a space (byte-level BPE re-tokenises such a prefix the same way).
    let cut = full[..full.len() / 2]
        .rfind(' ')
        .expect("a space in the answer");
    let (head, tail) = full.split_at(cut);
    assert!(!head.is_empty());
    let body = json!({"model": "smollm2", "temperature": 0, "max_tokens": 16,
        "stream": true, "stream_options": {"include_usage": true},
        "continue_final_message": true, "add_generation_prompt": false,
        "messages": [{"role": "user", "content": question},
            {"role": "assistant", "content": head}]});
    let resp = post("/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    let (events, _) = read_sse(resp).await;
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert!(
        text.starts_with(tail) || tail.starts_with(&text),
        "continued {head:?} with {text:?}; the whole answer was {full:?}"
    );
    assert!(!text.is_empty());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let both = json!({"model": "smollm2", "continue_final_message": true,
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]});
    let resp = post("/v1/chat/completions", both).await;
    assert_eq!(resp.status(), 400);
}

/// The speed work (the patched quantized matmul in third_party/candle-core, the pinned engine
/// thread) must not change what the model says: greedy outputs on fixed prompts, short and
/// long (one ~1,000-token prompt), are those recorded before it. With AVX2 the default model's
/// Q4_1 layers run on the patched AVX2 Q4_1 kernel: `tests/golden/greedy-q4_1.json` was
/// recorded with upstream's scalar Q4_1 kernel (`--requantize off` before that kernel existed).
/// Without AVX2 they are re-encoded as Q8_0: `tests/golden/greedy-q8_0.json` was recorded with
/// upstream's quantized matmul.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_outputs_match_the_recorded_ones() {
    let _serial = SERIAL.lock().await;
    let recorded = if cfg!(target_feature = "avx2") {
        include_str!("golden/greedy-q4_1.json")
    } else {
        include_str!("golden/greedy-q8_0.json")
    };
    let golden: Value = serde_json::from_str(recorded).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let times = case["times"].as_u64().unwrap() as usize;
        let prompt = vec![case["repeat"].as_str().unwrap(); times].join(" ")
            + case["then"].as_str().unwrap();
        let max_tokens = case["max_tokens"].as_u64().unwrap();
        let (path, body) = match case["endpoint"].as_str().unwrap() {
            "chat" => ("/v1/chat/completions", chat(&prompt, max_tokens as u32)),
            _ => (
                "/v1/completions",
                json!({"model":"smollm2","prompt":prompt,"max_tokens":max_tokens,"temperature":0}),
            ),
        };
        let v: Value = post(path, body).await.json().await.unwrap();
        let choice = &v["choices"][0];
        let text = choice["message"]["content"]
            .as_str()
            .or(choice["text"].as_str())
            .unwrap_or_else(|| panic!("no text in {v}"));
        assert_eq!(v["usage"]["prompt_tokens"], case["prompt_tokens"], "{v}");
        assert_eq!(v["usage"]["completion_tokens"], max_tokens, "{v}");
        assert_eq!(
            text,
            case["text"].as_str().unwrap(),
            "greedy output changed for {:?}",
            case["repeat"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors() {
    let _serial = SERIAL.lock().await;
    let cases = [
        ("/v1/chat/completions", "{not json", "invalid JSON"),
        (
            "/v1/chat/completions",
            "{\"messages\":[]}",
            "at least one message",
        ),
        (
            "/v1/chat/completions",
            "{\"model\":\"smollm2\"}",
            "missing field `messages`",
        ),
        (
            "/v1/chat/completions",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}",
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":100000}",
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":9}",
            "temperature",
        ),
        (
            "/v1/chat/completions",
            "{\"messages\":[{\"role\":\"pirate\",\"content\":\"x\"}]}",
            "not a valid role",
        ),
        (
            "/v1/chat/completions",
            "{\"messages\":\"hello\"}",
            "invalid JSON",
        ),
        (
            "/v1/completions",
            "{\"max_tokens\":3}",
            "missing field `prompt`",
        ),
        ("/v1/completions", "{\"prompt\":5}", "prompt"),
        ("/v1/completions", "", "empty"),
    ];
    for (path, body, want) in cases {
        let resp = client()
            .post(format!("{}{path}", engine()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{body}: {msg}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let v: Value = post(
        "/v1/chat/completions",
        json!({"model":"gpt-9","messages":[{"role":"user","content":"x"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    let nf = client()
        .get(format!("{}/v2/nothing", engine()))
        .send()
        .await
        .unwrap();
    assert_eq!(nf.status(), 404);
    // A prompt longer than the context is a 400 too.
    let huge = "word ".repeat(9000);
    let resp = post("/v1/completions", json!({"prompt": huge, "max_tokens": 1})).await;
    assert_eq!(resp.status(), 400);
    let models: Value = client()
        .get(format!("{}/v1/models", engine()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "smollm2");
    assert_eq!(models["data"][0]["owned_by"], "sagellm-engine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_fronts_the_engine() {
    use sagellm_gateway::config::{Config, WorkerConfig};
    let _serial = SERIAL.lock().await;
    let mut c = Config::default();
    c.server.host = "127.0.0.1".into();
    c.server.port = 0;
    c.server.threads = 1;
    c.server.grace_period_seconds = 0;
    c.health.check_interval_ms = 100;
    c.workers = vec![WorkerConfig {
        url: engine().to_string(),
        ..Default::default()
    }];
    let gw = tokio::task::spawn_blocking(move || sagellm_gateway::server::spawn(c).unwrap())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), gw.state.wait_routable(1))
        .await
        .unwrap();
    let url = gw.url();
    let workers: Vec<sagellm_gateway::views::WorkerInfo> = client()
        .get(format!("{url}/api/workers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let info = &workers[0];
    assert_eq!(info.kind, sagellm_gateway::views::WorkerKind::SagellmEngine);
    assert_eq!(info.models, vec!["smollm2"]);

    let v: Value = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat("Say hello.", 8))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 8, "{v}");
    let mut body = chat("Say hello.", 8);
    body["stream"] = json!(true);
    let resp = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-sagellm-worker"],
        engine().trim_start_matches("http://")
    );
    let (events, _) = read_sse(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events.len() >= 9);

    // Anthropic's Messages API through the gateway to the real model, with the official SDK.
    let venv = std::env::var("SAGELLM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sagellm-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} not found: run ./scripts/test.sh (it installs the anthropic SDK)",
        python.display()
    );
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/anthropic_sdk_test.py");
    let sdk = tokio::process::Command::new(python)
        .arg(script)
        .arg("--engine")
        .env("GATEWAY_URL", &url)
        .env("MODEL", "smollm2")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), sdk)
        .await
        .expect("the SDK run finishes within 300 s")
        .expect("python runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(
        out.status.success(),
        "anthropic SDK against the engine failed:\n{log}"
    );
    tokio::task::spawn_blocking(move || gw.stop())
        .await
        .unwrap();
}
