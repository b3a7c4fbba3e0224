//! The control plane end to end: a gateway with no workers launches the real `sagellm-engine`
//! with the real default model (SmolLM2-135M-Instruct Q4_1, `./scripts/fetch-model.sh`),
//! routes to it, notices its death, restarts it, drains and stops it, keeps it across config
//! reloads, and stops it when the gateway stops — through the API and the `sagellm` CLI.
//! Loopback only; every wait is a bounded poll.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{chat_body, eventually, expect_error, workspace_bin, Fleet};
use futures_util::StreamExt;
use sagellm_gateway::control::types::{Backend, ControlStatus, EngineInfo, GpuReport};
use sagellm_gateway::worker::state::Lifecycle;
use sagellm_gateway::worker::WorkerInfo;
use serde_json::{json, Value};

const ADMIN: &str = "admin-secret-key";
/// The id the engine serves: the file name without `.gguf`.
const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1";

fn model_path() -> PathBuf {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/fetch-model.sh first",
        p.display()
    );
    std::path::absolute(p).unwrap()
}

/// A gateway without workers, with an admin key; engines found beside the test binary.
async fn gateway(tweak: impl FnOnce(&mut sagellm_gateway::config::Config)) -> Fleet {
    Fleet::start(vec![], |c| {
        c.auth.admin_key = Some(ADMIN.into());
        c.control.stop_grace_seconds = 5;
        tweak(c);
    })
    .await
}

async fn post(
    fleet: &Fleet,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = fleet.http.post(fleet.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request sent")
}

async fn engine(fleet: &Fleet, id: &str) -> EngineInfo {
    let resp = fleet.get(&format!("/v1/management/engines/{id}")).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Poll the engine until it is in `want` (bounded); panics with its last output otherwise.
async fn wait_for(fleet: &Fleet, id: &str, want: Lifecycle, secs: u64) -> EngineInfo {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let e = engine(fleet, id).await;
        if e.state == want {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} is not {} after {secs} s: {e:#?}",
            want.as_str()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a process with this pid exists (reaped children disappear from /proc).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn chat_status(fleet: &Fleet) -> u16 {
    fleet
        .chat(&chat_body(MODEL, "Say hi."))
        .await
        .status()
        .as_u16()
}

async fn chat_ok(fleet: &Fleet) {
    let resp = fleet.chat(&chat_body(MODEL, "Say hi.")).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["choices"][0]["message"]["content"].is_string(),
        "a chat completion: {v}"
    );
}

fn sagellm(fleet: &Fleet, args: &[&str]) -> Output {
    std::process::Command::new(workspace_bin("sagellm"))
        .arg("--url")
        .arg(fleet.gw.url())
        .args(args)
        .env_remove("SAGELLM_ADMIN_KEY")
        .output()
        .expect("sagellm runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "sagellm failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_from_start_to_stop() {
    let model = model_path();
    let engine_bin = workspace_bin("sagellm-engine");
    let fleet = gateway(|_| {}).await;
    let start_body = json!({"model": model});

    // The gateway finds the engine beside the test binary's folder (target/release/).
    let s: ControlStatus = fleet.get_json("/v1/management/status").await;
    assert_eq!(
        s.engine_binary.map(|p| p.canonicalize().unwrap()),
        Some(engine_bin.canonicalize().unwrap())
    );
    assert_eq!(s.engines.total, 0);

    // Writes need the admin key.
    let resp = post(
        &fleet,
        "/v1/management/engines/start",
        None,
        Some(start_body.clone()),
    )
    .await;
    expect_error(resp, 401).await;
    assert!(fleet
        .get_json::<Vec<EngineInfo>>("/v1/management/engines")
        .await
        .is_empty());

    // Start: STARTING (the model loads after the engine listens), then READY.
    let resp = post(
        &fleet,
        "/v1/management/engines/start",
        Some(ADMIN),
        Some(start_body),
    )
    .await;
    assert_eq!(resp.status(), 202);
    let e: EngineInfo = resp.json().await.unwrap();
    assert_eq!(e.state, Lifecycle::Starting, "{e:#?}");
    assert_eq!(e.id, "engine-1");
    assert!(e.port > 0);
    assert_eq!(e.url, format!("http://127.0.0.1:{}", e.port));
    assert_eq!(e.model, model);
    assert_eq!(e.model_name, MODEL);
    assert_eq!(e.max_seqs, 8, "control.default_max_seqs");
    let pid = e.pid.expect("a pid");
    assert!(alive(pid));
    let id = e.id.clone();
    let e = wait_for(&fleet, &id, Lifecycle::Ready, 120).await;
    assert!(e.uptime_seconds.unwrap() > 0.0);

    // It serves through the gateway like any worker.
    chat_ok(&fleet).await;
    let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].id, e.worker_id);
    assert_eq!(workers[0].kind.as_str(), "sagellm-engine");
    let list: Vec<EngineInfo> = fleet.get_json("/v1/management/engines").await;
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].pid, list[0].port), (Some(pid), e.port));
    assert!(list[0].uptime_seconds.is_some_and(|u| u > 0.0));
    assert!(
        list[0].log_tail.iter().any(|l| l.contains("listening on")),
        "{:?}",
        list[0].log_tail
    );
    let backends: Vec<Backend> = fleet.get_json("/v1/management/backends").await;
    assert_eq!(backends.len(), 1);
    assert_eq!(backends[0].engine_id.as_deref(), Some("engine-1"));
    assert_eq!(backends[0].models, vec![MODEL.to_string()]);
    assert!(backends[0].routable);
    let s: ControlStatus = fleet.get_json("/v1/management/status").await;
    assert_eq!((s.engines.total, s.engines.ready), (1, 1));
    assert_eq!((s.workers_total, s.workers_healthy), (1, 1));
    assert_eq!(s.models, vec![MODEL.to_string()]);

    // A config reload that rebuilds the worker list keeps the engine (and its worker).
    let sim = sagellm_sim::spawn(common::sim("sim-a", "other"))
        .await
        .unwrap();
    let put = |workers: Value| {
        fleet
            .http
            .put(fleet.url("/api/config"))
            .bearer_auth(ADMIN)
            .json(&json!({ "workers": workers }))
            .send()
    };
    assert_eq!(
        put(json!([{ "url": sim.url() }])).await.unwrap().status(),
        200
    );
    let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
    assert_eq!(workers.len(), 2, "{workers:#?}");
    assert!(workers
        .iter()
        .any(|w| w.id == e.worker_id && w.state == Lifecycle::Ready));
    assert_eq!(put(json!([])).await.unwrap().status(), 200);
    let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].id, e.worker_id);
    assert!(workers[0].served >= 1, "the same worker, its counts kept");
    drop(sim);

    // Killed from outside: ERROR, out of the pool, no traffic.
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let dead = wait_for(&fleet, &id, Lifecycle::Error, 30).await;
    assert_eq!(
        dead.exit.as_ref().and_then(|x| x.signal),
        Some(9),
        "{dead:#?}"
    );
    assert_eq!(dead.pid, None);
    assert!(
        dead.error
            .as_deref()
            .unwrap()
            .contains("ended unexpectedly"),
        "{dead:#?}"
    );
    assert!(!alive(pid), "the dead engine was reaped");
    assert!(fleet
        .get_json::<Vec<Backend>>("/v1/management/backends")
        .await
        .is_empty());
    assert_ne!(chat_status(&fleet).await, 200);

    // Restart: the same settings and port, READY again.
    let resp = post(
        &fleet,
        &format!("/v1/management/engines/{id}/restart"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(resp.status(), 202);
    let e2: EngineInfo = resp.json().await.unwrap();
    assert_eq!(e2.state, Lifecycle::Starting);
    assert_eq!(
        e2.port, e.port,
        "a restart keeps the port (and the worker id)"
    );
    assert_eq!(e2.restarts, 1);
    let pid2 = e2.pid.unwrap();
    assert_ne!(pid2, pid);
    // A running engine is not restarted.
    let resp = post(
        &fleet,
        &format!("/v1/management/engines/{id}/restart"),
        Some(ADMIN),
        None,
    )
    .await;
    expect_error(resp, 409).await;
    wait_for(&fleet, &id, Lifecycle::Ready, 120).await;
    chat_ok(&fleet).await;

    // Stop while a stream is in flight: DRAINING takes no new request, the stream finishes,
    // then the process stops.
    let mut stream_body = chat_body(
        MODEL,
        "Write a long story about a dragon who lives in a mountain.",
    );
    stream_body["max_tokens"] = json!(48);
    stream_body["stream"] = json!(true);
    let resp = fleet.chat(&stream_body).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("a first chunk").unwrap();
    let by_worker_id = format!("/v1/management/engines/127.0.0.1:{}/stop", e.port);
    let resp = post(&fleet, &by_worker_id, Some(ADMIN), None).await;
    assert_eq!(resp.status(), 202, "stop by worker id");
    let stopping: EngineInfo = resp.json().await.unwrap();
    assert_eq!(stopping.state, Lifecycle::Draining);
    assert_ne!(
        chat_status(&fleet).await,
        200,
        "a draining engine takes no new request"
    );
    let mut text = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(
            &chunk.expect("the stream is not cut"),
        ));
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the stream finished: {text}"
    );
    let stopped = wait_for(&fleet, &id, Lifecycle::Stopped, 30).await;
    assert!(!alive(pid2), "the process is gone");
    assert_eq!(
        stopped.exit.as_ref().and_then(|x| x.code),
        Some(0),
        "SIGTERM ends the engine cleanly: {stopped:#?}"
    );
    assert!(stopped.error.is_none(), "{stopped:#?}");
    assert!(fleet
        .get_json::<Vec<Backend>>("/v1/management/backends")
        .await
        .is_empty());
    assert!(fleet
        .get_json::<Vec<WorkerInfo>>("/api/workers")
        .await
        .is_empty());
    assert_ne!(
        chat_status(&fleet).await,
        200,
        "a stopped engine gets no traffic"
    );
    // Still listed; stopping again changes nothing.
    let resp = post(
        &fleet,
        &format!("/v1/management/engines/{id}/stop"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.json::<EngineInfo>().await.unwrap().state,
        Lifecycle::Stopped
    );
    let s: ControlStatus = fleet.get_json("/v1/management/status").await;
    assert_eq!((s.engines.total, s.engines.stopped), (1, 1));

    // The CLI: a second engine, listed, stopped; writes need the key.
    let path = model.to_string_lossy().into_owned();
    let o = sagellm(&fleet, &["engines", "start", "--model", &path]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--admin-key"),
        "{o:?}"
    );
    let out = stdout(&sagellm(
        &fleet,
        &[
            "--admin-key",
            ADMIN,
            "--json",
            "engines",
            "start",
            "--model",
            &path,
            "--max-seqs",
            "2",
            "--wait",
        ],
    ));
    let cli_engine: EngineInfo = serde_json::from_str(&out).unwrap();
    assert_eq!(cli_engine.state, Lifecycle::Ready);
    assert_eq!(
        (cli_engine.id.as_str(), cli_engine.max_seqs),
        ("engine-2", 2)
    );
    let table = stdout(&sagellm(&fleet, &["engines", "list"]));
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("engine-1") && l.contains("STOPPED")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("engine-2") && l.contains("READY")),
        "{table}"
    );
    let listed: Vec<EngineInfo> =
        serde_json::from_str(&stdout(&sagellm(&fleet, &["--json", "engines", "list"]))).unwrap();
    assert_eq!(listed.len(), 2);
    chat_ok(&fleet).await;
    let out = stdout(&sagellm(
        &fleet,
        &[
            "--admin-key",
            ADMIN,
            "engines",
            "stop",
            "engine-2",
            "--wait",
            "--timeout",
            "60",
        ],
    ));
    assert!(
        out.contains("engine engine-2 stopping") && out.contains("state STOPPED"),
        "{out}"
    );
    let o = sagellm(
        &fleet,
        &["--admin-key", ADMIN, "engines", "stop", "engine-9"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("404"), "{o:?}");

    // Restarted from STOPPED (through the CLI), then the gateway stops: so does the engine.
    let out = stdout(&sagellm(
        &fleet,
        &[
            "--admin-key",
            ADMIN,
            "engines",
            "restart",
            "engine-1",
            "--wait",
        ],
    ));
    assert!(out.contains("state READY"), "{out}");
    let last = engine(&fleet, "engine-1").await;
    let pid3 = last.pid.unwrap();
    assert!(alive(pid3));
    let state = fleet.gw.state.clone();
    fleet.stop().await;
    eventually("the engine stops with the gateway", 10, || !alive(pid3)).await;
    // Stopped by the graceful shutdown (SIGTERM, exit code 0), not killed with the runtime.
    let last = state.engines.find("engine-1").unwrap().info();
    assert_eq!(last.state, Lifecycle::Stopped, "{last:#?}");
    assert_eq!(last.exit.and_then(|x| x.code), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_read_endpoints() {
    let fleet = gateway(|_| {}).await;
    let start = |body: &'static str| {
        fleet
            .http
            .post(fleet.url("/v1/management/engines/start"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let param = |v: &Value| v["error"]["param"].as_str().map(str::to_string);

    expect_error(start("{not json").await.unwrap(), 400).await;
    expect_error(start("").await.unwrap(), 400).await;
    expect_error(
        start(r#"{"model":"/x.gguf","colour":"red"}"#)
            .await
            .unwrap(),
        400,
    )
    .await;
    let v = expect_error(start(r#"{"port":1}"#).await.unwrap(), 400).await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("model"),
        "{v}"
    );
    let v = expect_error(
        start(r#"{"model":"/nonexistent/model.gguf"}"#)
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(param(&v).as_deref(), Some("model"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{v}"
    );
    let v = expect_error(start(r#"{"model":"/tmp"}"#).await.unwrap(), 400).await;
    assert_eq!(param(&v).as_deref(), Some("model"), "a directory: {v}");
    let text =
        std::env::temp_dir().join(format!("sagellm-not-a-model-{}.gguf", std::process::id()));
    std::fs::write(&text, "hello").unwrap();
    let resp = post(
        &fleet,
        "/v1/management/engines/start",
        Some(ADMIN),
        Some(json!({"model": text})),
    )
    .await;
    let v = expect_error(resp, 400).await;
    assert_eq!(param(&v).as_deref(), Some("model"), "not a GGUF file: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a GGUF file"),
        "{v}"
    );
    std::fs::remove_file(&text).unwrap();
    let v = expect_error(
        start(r#"{"model":"/x.gguf","port":"eighty"}"#)
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(param(&v).as_deref(), Some("port"), "{v}");
    let v = expect_error(
        start(r#"{"model":"/x.gguf","max_seqs":0}"#).await.unwrap(),
        400,
    )
    .await;
    assert_eq!(param(&v).as_deref(), Some("max_seqs"), "{v}");

    for (method, path) in [
        ("GET", "/v1/management/engines/engine-99"),
        ("POST", "/v1/management/engines/engine-99/stop"),
        ("POST", "/v1/management/engines/engine-99/restart"),
    ] {
        let req = match method {
            "GET" => fleet.http.get(fleet.url(path)),
            _ => fleet.http.post(fleet.url(path)).bearer_auth(ADMIN),
        };
        let v = expect_error(req.send().await.unwrap(), 404).await;
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("engine-99"),
            "{v}"
        );
    }
    expect_error(
        post(&fleet, "/v1/management/engines/engine-99/stop", None, None).await,
        401,
    )
    .await;

    // No GPU here: an empty list and why (a host with one lists them).
    let resp = fleet.get("/v1/management/gpu").await;
    assert_eq!(resp.status(), 200);
    let gpu: GpuReport = resp.json().await.unwrap();
    if gpu.gpus.is_empty() {
        assert!(
            gpu.reason.as_deref().is_some_and(|r| !r.is_empty()),
            "{gpu:?}"
        );
    } else {
        assert!(gpu.gpus.iter().all(|g| !g.name.is_empty()), "{gpu:?}");
    }

    let raw: Value = fleet.get_json("/v1/management/status").await;
    for key in [
        "version",
        "uptime_seconds",
        "engines",
        "workers_total",
        "workers_healthy",
        "models",
        "engine_binary",
    ] {
        assert!(raw.get(key).is_some(), "status has {key}: {raw}");
    }
    assert_eq!(raw["engines"]["total"], 0);
    let backends: Vec<Backend> = fleet.get_json("/v1/management/backends").await;
    assert!(backends.is_empty());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_is_reported_and_listed() {
    // A "binary" that exits at once: the start fails with its exit status, the engine is
    // listed as ERROR (and can be restarted once fixed).
    let dir = std::env::temp_dir().join(format!("sagellm-control-plane-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.gguf");
    std::fs::write(&model, b"GGUF\x03\0\0\0").unwrap();
    let fleet = gateway(|c| c.control.engine_binary = "/bin/false".into()).await;
    let resp = post(
        &fleet,
        "/v1/management/engines/start",
        Some(ADMIN),
        Some(json!({"model": model})),
    )
    .await;
    let v = expect_error(resp, 502).await;
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exited before listening (exit code 1)"),
        "{v}"
    );
    let list: Vec<EngineInfo> = fleet.get_json("/v1/management/engines").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, Lifecycle::Error);
    assert_eq!(list[0].exit.as_ref().and_then(|x| x.code), Some(1));
    assert!(fleet
        .get_json::<Vec<WorkerInfo>>("/api/workers")
        .await
        .is_empty());
    let resp = post(
        &fleet,
        "/v1/management/engines/engine-1/restart",
        Some(ADMIN),
        None,
    )
    .await;
    expect_error(resp, 502).await;
    assert_eq!(engine(&fleet, "engine-1").await.restarts, 1);

    // A configured binary that does not exist is named.
    let resp = fleet
        .http
        .put(fleet.url("/api/config"))
        .bearer_auth(ADMIN)
        .json(&json!({"control": {"engine_binary": "/nonexistent/sagellm-engine"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = post(
        &fleet,
        "/v1/management/engines/start",
        Some(ADMIN),
        Some(json!({"model": model})),
    )
    .await;
    let v = expect_error(resp, 500).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("control.engine_binary"),
        "{v}"
    );
    fleet.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
