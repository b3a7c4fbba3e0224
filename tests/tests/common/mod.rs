//! Shared harness for the end-to-end tests: a fleet of in-process `sagellm-sim` workers
//! behind a real gateway (Pingora on a loopback port), and small request helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub mod dnsmasq;
pub mod kube_api;
pub mod redis;

use sagellm_gateway::config::{Config, WorkerConfig};
use sagellm_gateway::server::{spawn as spawn_gateway, RunningGateway};
use sagellm_gateway::views::BreakerState;
use sagellm_sim::{SimConfig, SimHandle};
use serde_json::{json, Value};

pub struct Fleet {
    pub sims: Vec<SimHandle>,
    pub gw: RunningGateway,
    pub http: reqwest::Client,
}

/// The test defaults: loopback, one proxy thread, fast probes, seeded policies, short grace.
pub fn test_config(workers: &[(String, u32)]) -> Config {
    let mut c = Config::default();
    c.server.host = "127.0.0.1".into();
    c.server.port = 0;
    c.server.threads = 1;
    c.server.grace_period_seconds = 0;
    c.health.check_interval_ms = 100;
    c.health.scrape_interval_ms = 50;
    c.routing.seed = Some(7);
    // Limits have their own tests; elsewhere they would cut the request loops short.
    c.rate_limit.enabled = false;
    c.workers = workers
        .iter()
        .map(|(url, weight)| WorkerConfig {
            url: url.clone(),
            weight: *weight,
            ..Default::default()
        })
        .collect();
    c
}

/// A fast sim (2 ms to first token, 1 ms per token) named `name` serving `model`.
pub fn sim(name: &str, model: &str) -> SimConfig {
    SimConfig {
        name: name.into(),
        models: vec![model.into()],
        ttft: Duration::from_millis(2),
        tpot: Duration::from_millis(1),
        ..Default::default()
    }
}

impl Fleet {
    /// Start the sims, then a gateway in front of them (weights 1), and wait until every
    /// worker is routable.
    pub async fn start(sims: Vec<SimConfig>, tweak: impl FnOnce(&mut Config)) -> Fleet {
        let mut handles = Vec::new();
        for s in sims {
            handles.push(sagellm_sim::spawn(s).await.expect("sim starts"));
        }
        let workers: Vec<(String, u32)> = handles.iter().map(|h| (h.url(), 1)).collect();
        let mut config = test_config(&workers);
        tweak(&mut config);
        let expected = config.workers.len();
        let gw =
            tokio::task::spawn_blocking(move || spawn_gateway(config).expect("gateway starts"))
                .await
                .unwrap();
        tokio::time::timeout(Duration::from_secs(10), gw.state.wait_routable(expected))
            .await
            .expect("all workers become routable");
        Fleet {
            sims: handles,
            gw,
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gw.url(), path)
    }

    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// GET a gateway path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// GET a gateway path and parse its JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.get(path).await.json().await.expect("JSON answer")
    }

    /// Stop the gateway on a blocking thread (its shutdown joins Pingora's thread).
    pub async fn stop(self) {
        let Fleet { gw, sims, .. } = self;
        stop_gateway(gw).await;
        drop(sims);
    }
}

/// Stop a gateway on a blocking thread (its shutdown joins Pingora's thread).
pub async fn stop_gateway(gw: RunningGateway) {
    tokio::task::spawn_blocking(move || gw.stop())
        .await
        .unwrap();
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn chat_body(model: &str, content: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": content }], "max_tokens": 4 })
}

/// The `x-sim-name` of the worker that answered.
pub fn served_by(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-sim-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string()
}

/// Assert an OpenAI-shaped error body with this status and return it.
pub async fn expect_error(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "error content type"
    );
    let v: Value = resp.json().await.expect("error body is JSON");
    let e = &v["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error.message in {v}"
    );
    assert!(e["type"].is_string(), "error.type in {v}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "error.param/code in {v}"
    );
    v
}

/// A request to a gateway path, optionally with a key (bearer) and a JSON body.
pub async fn send(
    fleet: &Fleet,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = fleet.http.request(method, fleet.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request sent")
}

/// POST to a gateway path, optionally with a key (bearer) and a JSON body.
pub async fn post(
    fleet: &Fleet,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    send(fleet, reqwest::Method::POST, path, key, body).await
}

/// POST to an admin endpoint, optionally with the admin key.
pub async fn admin_post(fleet: &Fleet, path: &str, key: Option<&str>) -> reqwest::Response {
    post(fleet, path, key, None).await
}

/// The state of worker `i`'s circuit breaker.
pub fn breaker(fleet: &Fleet, i: usize) -> BreakerState {
    fleet.gw.state.pool.load().workers[i].breaker.state()
}

/// Poll `cond` until it holds (bounded): for state that changes in the background.
pub async fn eventually(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Run a test script of another language (the browser test, the SDK tests) to its end within
/// `secs`, print its output, and fail the test with that output when it failed.
pub async fn run_script(mut cmd: tokio::process::Command, secs: u64, what: &str) {
    let out = cmd.kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(secs), out)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "{what} failed:\n{log}");
}

/// The `sagellm` CLI against this fleet's gateway (`--url`), without an admin key from the
/// environment.
pub async fn sagellm(fleet: &Fleet, args: &[&str]) -> Output {
    sagellm_at(&fleet.gw.url(), args).await
}

/// The `sagellm` CLI against the gateway at `url`.
pub async fn sagellm_at(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(workspace_bin("sagellm"))
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("SAGELLM_ADMIN_KEY")
        .output()
        .await
        .expect("sagellm runs")
}

/// A process's standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A process's standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The standard output of a `sagellm` run that must have succeeded (else its output is shown).
pub fn ok_stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "sagellm failed: {}{}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// The workspace root (this crate's parent folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A binary of this workspace (built by `cargo build`/`cargo test --workspace`).
/// The interpreter of the test virtualenv with the Python SDKs (`scripts/test.sh` installs it).
pub fn venv_python() -> PathBuf {
    let venv = std::env::var("SAGELLM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sagellm-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: ./scripts/test.sh installs the Python test packages",
        python.display()
    );
    python
}

pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not built: run cargo build --release --workspace",
        bin.display()
    );
    bin
}
