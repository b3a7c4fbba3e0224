//! The control plane end to end: a gateway with no workers launches the real `sagellm-engine`
//! with the real default model (SmolLM2-135M-Instruct Q4_1, `./scripts/fetch-model.sh`),
//! routes to it, notices its death, restarts it, drains and stops it, keeps it across config
//! reloads, and stops it when the gateway stops — through the API and the `sagellm` CLI.
//! Loopback only; every wait is a bounded poll.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    chat_body, eventually, expect_error, ok_stdout, post, sagellm, send, stderr, workspace_bin,
    Fleet,
};
use futures_util::StreamExt;
use reqwest::Method;
use sagellm_gateway::config::Config;
use sagellm_gateway::views::{
    Backend, ControlStatus, EngineInfo, GpuReport, Lifecycle, WorkerInfo,
};
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
    p.canonicalize().unwrap()
}

/// The test's model folders: the workspace's `models/` and the temp dir (for bad files).
fn model_dirs() -> Vec<String> {
    let models = model_path().parent().unwrap().display().to_string();
    vec![models, std::env::temp_dir().display().to_string()]
}

/// A gateway without workers, with an admin key; engines found beside the test binary.
async fn gateway(tweak: impl FnOnce(&mut Config)) -> Fleet {
    Fleet::start(vec![], |c| {
        c.auth.admin_key = Some(ADMIN.into());
        c.control.stop_grace_seconds = 5;
        c.control.model_dirs = model_dirs();
        tweak(c);
    })
    .await
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

/// `PUT /api/config` with the admin key.
async fn put_config(fleet: &Fleet, patch: Value) -> reqwest::Response {
    send(fleet, Method::PUT, "/api/config", Some(ADMIN), Some(patch)).await
}

// --- One engine's life, step by step (each step starts where the previous one left it) ------

/// The first engine of the lifecycle test as the steps know it.
struct Started {
    /// The id of the start answer (`engine-1`).
    id: String,
    /// The pid of its first process.
    pid: u32,
    /// Its view once READY.
    ready: EngineInfo,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_from_start_to_stop() {
    let model = model_path();
    let fleet = gateway(|_| {}).await;
    step_the_gateway_finds_the_engine_binary(&fleet).await;
    step_writes_need_the_admin_key(&fleet, &model).await;
    let started = step_starts_the_engine(&fleet, &model).await;
    step_it_serves_like_any_worker(&fleet, &started).await;
    step_a_config_reload_keeps_the_engine(&fleet, &started).await;
    step_killed_from_outside_it_is_error_and_gets_no_traffic(&fleet, &started).await;
    let pid2 = step_restarts_on_the_same_port(&fleet, &started).await;
    step_stop_drains_the_stream_in_flight(&fleet, &started, pid2).await;
    step_a_stopped_engine_stays_listed(&fleet, &started).await;
    step_the_cli_starts_lists_and_stops_a_second_engine(&fleet, &model).await;
    step_the_cli_restarts_it_and_it_stops_with_the_gateway(fleet).await;
}

/// The gateway finds the engine beside the test binary's folder (target/release/).
async fn step_the_gateway_finds_the_engine_binary(fleet: &Fleet) {
    let engine_bin = workspace_bin("sagellm-engine");
    let s: ControlStatus = fleet.get_json("/v1/management/status").await;
    assert_eq!(
        s.engine_binary.map(|p| p.canonicalize().unwrap()),
        Some(engine_bin.canonicalize().unwrap())
    );
    assert_eq!(s.engines.total, 0);
}

/// Writes need the admin key.
async fn step_writes_need_the_admin_key(fleet: &Fleet, model: &Path) {
    let resp = post(
        fleet,
        "/v1/management/engines/start",
        None,
        Some(json!({"model": model})),
    )
    .await;
    expect_error(resp, 401).await;
    assert!(fleet
        .get_json::<Vec<EngineInfo>>("/v1/management/engines")
        .await
        .is_empty());
}

/// Start: STARTING (the model loads after the engine listens), then READY.
async fn step_starts_the_engine(fleet: &Fleet, model: &Path) -> Started {
    let resp = post(
        fleet,
        "/v1/management/engines/start",
        Some(ADMIN),
        Some(json!({"model": model})),
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
    let ready = wait_for(fleet, &id, Lifecycle::Ready, 120).await;
    assert!(ready.uptime_seconds.unwrap() > 0.0);
    Started { id, pid, ready }
}

/// It serves through the gateway like any worker.
async fn step_it_serves_like_any_worker(fleet: &Fleet, started: &Started) {
    let Started { pid, ready: e, .. } = started;
    chat_ok(fleet).await;
    let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].id, e.worker_id);
    assert_eq!(workers[0].kind.as_str(), "sagellm-engine");
    let list: Vec<EngineInfo> = fleet.get_json("/v1/management/engines").await;
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].pid, list[0].port), (Some(*pid), e.port));
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
}

/// A config reload that rebuilds the worker list keeps the engine (and its worker).
async fn step_a_config_reload_keeps_the_engine(fleet: &Fleet, started: &Started) {
    let e = &started.ready;
    let sim = sagellm_sim::spawn(common::sim("sim-a", "other"))
        .await
        .unwrap();
    let put = |workers: Value| put_config(fleet, json!({ "workers": workers }));
    assert_eq!(put(json!([{ "url": sim.url() }])).await.status(), 200);
    let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
    assert_eq!(workers.len(), 2, "{workers:#?}");
    assert!(workers
        .iter()
        .any(|w| w.id == e.worker_id && w.state == Lifecycle::Ready));
    assert_eq!(put(json!([])).await.status(), 200);
    let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].id, e.worker_id);
    assert!(workers[0].served >= 1, "the same worker, its counts kept");
    drop(sim);
}

/// Killed from outside: ERROR, out of the pool, no traffic.
async fn step_killed_from_outside_it_is_error_and_gets_no_traffic(
    fleet: &Fleet,
    started: &Started,
) {
    let Started { id, pid, .. } = started;
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let dead = wait_for(fleet, id, Lifecycle::Error, 30).await;
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
    assert!(!alive(*pid), "the dead engine was reaped");
    assert!(fleet
        .get_json::<Vec<Backend>>("/v1/management/backends")
        .await
        .is_empty());
    assert_ne!(chat_status(fleet).await, 200);
}

/// Restart: the same settings and port, READY again. Returns the new pid.
async fn step_restarts_on_the_same_port(fleet: &Fleet, started: &Started) -> u32 {
    let Started { id, pid, ready: e } = started;
    let restart = format!("/v1/management/engines/{id}/restart");
    let resp = post(fleet, &restart, Some(ADMIN), None).await;
    assert_eq!(resp.status(), 202);
    let e2: EngineInfo = resp.json().await.unwrap();
    assert_eq!(e2.state, Lifecycle::Starting);
    assert_eq!(
        e2.port, e.port,
        "a restart keeps the port (and the worker id)"
    );
    assert_eq!(e2.restarts, 1);
    let pid2 = e2.pid.unwrap();
    assert_ne!(pid2, *pid);
    // A running engine is not restarted.
    let resp = post(fleet, &restart, Some(ADMIN), None).await;
    expect_error(resp, 409).await;
    wait_for(fleet, id, Lifecycle::Ready, 120).await;
    chat_ok(fleet).await;
    pid2
}

/// Stop while a stream is in flight: DRAINING takes no new request, the stream finishes,
/// then the process stops.
async fn step_stop_drains_the_stream_in_flight(fleet: &Fleet, started: &Started, pid2: u32) {
    let Started { id, ready: e, .. } = started;
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
    let resp = post(fleet, &by_worker_id, Some(ADMIN), None).await;
    assert_eq!(resp.status(), 202, "stop by worker id");
    let stopping: EngineInfo = resp.json().await.unwrap();
    assert_eq!(stopping.state, Lifecycle::Draining);
    assert_ne!(
        chat_status(fleet).await,
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
    let stopped = wait_for(fleet, id, Lifecycle::Stopped, 30).await;
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
        chat_status(fleet).await,
        200,
        "a stopped engine gets no traffic"
    );
}

/// Still listed; stopping again changes nothing.
async fn step_a_stopped_engine_stays_listed(fleet: &Fleet, started: &Started) {
    let id = &started.id;
    let stop = format!("/v1/management/engines/{id}/stop");
    let resp = post(fleet, &stop, Some(ADMIN), None).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.json::<EngineInfo>().await.unwrap().state,
        Lifecycle::Stopped
    );
    let s: ControlStatus = fleet.get_json("/v1/management/status").await;
    assert_eq!((s.engines.total, s.engines.stopped), (1, 1));
}

/// The CLI: a second engine, listed, stopped; writes need the key.
async fn step_the_cli_starts_lists_and_stops_a_second_engine(fleet: &Fleet, model: &Path) {
    let path = model.to_string_lossy().into_owned();
    let o = sagellm(fleet, &["engines", "start", "--model", &path]).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--admin-key"), "{o:?}");
    let out = ok_stdout(
        &sagellm(
            fleet,
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
        )
        .await,
    );
    let cli_engine: EngineInfo = serde_json::from_str(&out).unwrap();
    assert_eq!(cli_engine.state, Lifecycle::Ready);
    assert_eq!(
        (cli_engine.id.as_str(), cli_engine.max_seqs),
        ("engine-2", 2)
    );
    let table = ok_stdout(&sagellm(fleet, &["engines", "list"]).await);
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
    let listed: Vec<EngineInfo> = serde_json::from_str(&ok_stdout(
        &sagellm(fleet, &["--json", "engines", "list"]).await,
    ))
    .unwrap();
    assert_eq!(listed.len(), 2);
    chat_ok(fleet).await;
    let out = ok_stdout(
        &sagellm(
            fleet,
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
        )
        .await,
    );
    assert!(
        out.contains("engine engine-2 stopping") && out.contains("state STOPPED"),
        "{out}"
    );
    let o = sagellm(
        fleet,
        &["--admin-key", ADMIN, "engines", "stop", "engine-9"],
    )
    .await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("404"), "{o:?}");
}

/// Restarted from STOPPED (through the CLI), then the gateway stops: so does the engine.
async fn step_the_cli_restarts_it_and_it_stops_with_the_gateway(fleet: Fleet) {
    let out = ok_stdout(
        &sagellm(
            &fleet,
            &[
                "--admin-key",
                ADMIN,
                "engines",
                "restart",
                "engine-1",
                "--wait",
            ],
        )
        .await,
    );
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

// --- Bad requests and the read endpoints (no engine is started) ----------------------------

/// `POST /v1/management/engines/start` with the admin key and this raw body.
async fn start_raw(fleet: &Fleet, body: &'static str) -> reqwest::Response {
    fleet
        .http
        .post(fleet.url("/v1/management/engines/start"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn param(v: &Value) -> Option<String> {
    v["error"]["param"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_start_requests_are_400_naming_the_field() {
    let fleet = gateway(|_| {}).await;
    let start = |body: &'static str| start_raw(&fleet, body);

    expect_error(start("{not json").await, 400).await;
    expect_error(start("").await, 400).await;
    expect_error(start(r#"{"model":"/x.gguf","colour":"red"}"#).await, 400).await;
    let v = expect_error(start(r#"{"port":1}"#).await, 400).await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("model"),
        "{v}"
    );
    // Outside the model folders: 403 before the file system is consulted.
    for outside in [
        r#"{"model":"/nonexistent/model.gguf"}"#,
        r#"{"model":"/etc/passwd"}"#,
        r#"{"model":"/tmp/../etc/passwd"}"#,
    ] {
        let v = expect_error(start(outside).await, 403).await;
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("not under a model folder"), "{outside}: {v}");
    }
    let missing = std::env::temp_dir().join("sagellm-no-such-model.gguf");
    let resp = post(
        &fleet,
        "/v1/management/engines/start",
        Some(ADMIN),
        Some(json!({ "model": missing })),
    )
    .await;
    let v = expect_error(resp, 400).await;
    assert_eq!(param(&v).as_deref(), Some("model"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{v}"
    );
    let resp = post(
        &fleet,
        "/v1/management/engines/start",
        Some(ADMIN),
        Some(json!({ "model": std::env::temp_dir() })),
    )
    .await;
    let v = expect_error(resp, 400).await;
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
    let v = expect_error(start(r#"{"model":"/x.gguf","port":"eighty"}"#).await, 400).await;
    assert_eq!(param(&v).as_deref(), Some("port"), "{v}");
    let v = expect_error(start(r#"{"model":"/x.gguf","max_seqs":0}"#).await, 400).await;
    assert_eq!(param(&v).as_deref(), Some("max_seqs"), "{v}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_engines_are_404_and_writes_need_the_key() {
    let fleet = gateway(|_| {}).await;
    for (method, path) in [
        ("GET", "/v1/management/engines/engine-99"),
        ("POST", "/v1/management/engines/engine-99/stop"),
        ("POST", "/v1/management/engines/engine-99/restart"),
    ] {
        let resp = match method {
            "GET" => send(&fleet, Method::GET, path, None, None).await,
            _ => post(&fleet, path, Some(ADMIN), None).await,
        };
        let v = expect_error(resp, 404).await;
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
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_endpoints_of_an_empty_control_plane() {
    let fleet = gateway(|_| {}).await;

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
    let resp = put_config(
        &fleet,
        json!({"control": {"engine_binary": "/nonexistent/sagellm-engine"}}),
    )
    .await;
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
