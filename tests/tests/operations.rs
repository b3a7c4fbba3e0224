//! Operations end to end: every Prometheus series moves (and `promtool` accepts the output),
//! the management API, live config reloads from the watched file, and the `sagellm` CLI —
//! against in-process `sagellm-sim` workers and the real gateway over loopback.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    breaker, chat_body, eventually, expect_error, repo_root, sagellm, sagellm_at, send, served_by,
    sim, stderr, stdout, stop_gateway, Fleet,
};
use futures_util::StreamExt;
use reqwest::Method;
use sagellm_gateway::bench::Report;
use sagellm_gateway::config::sources::{self, Overrides};
use sagellm_gateway::config::{ConfigSource, Strategy};
use sagellm_gateway::server::{free_port, spawn_with_source, RunningGateway};
use sagellm_gateway::views::{
    BreakerState, BreakerStats, ConfigView, Lifecycle, RoutingStats, StatusInfo, WorkerInfo,
};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const ADMIN: &str = "admin-secret-key";

// --- Metrics ----------------------------------------------------------------------------------

/// Every sample of `name`: (label set, value).
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            (n == name).then(|| (labels.to_string(), value.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

fn total(text: &str, name: &str) -> f64 {
    samples(text, name).iter().map(|(_, v)| v).sum()
}

fn value_for(text: &str, name: &str, label: &str) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(l, _)| l.contains(label))
        .map(|(_, v)| v)
}

async fn scrape(fleet: &Fleet) -> String {
    let resp = fleet.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    resp.text().await.unwrap()
}

fn promtool_check(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; scripts/test.sh installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_moves_and_promtool_accepts_the_output() {
    let fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.rate_limit.enabled = true;
        c.rate_limit.per_user_rpm = 20;
        c.circuit_breaker.failure_threshold = 2; // b's two 503s open its breaker
    })
    .await;
    // Each step adds traffic that the final scrape counts.
    step_plain_and_streamed_requests(&fleet).await;
    step_a_held_stream_shows_in_the_gauges(&fleet).await;
    step_503s_are_retried_and_open_b_breaker(&fleet).await;
    step_one_user_goes_over_its_limit(&fleet).await;
    let text = scrape(&fleet).await;
    step_every_series_moved(&fleet, &text);
    shipped_monitoring_config_uses_these_series(&text);
    step_a_removed_workers_series_are_gone(&fleet).await;
    fleet.stop().await;
}

/// A streamed chat request asking for usage.
fn usage_stream_body() -> Value {
    let mut stream_body = chat_body("m", "stream");
    stream_body["stream"] = json!(true);
    stream_body["stream_options"] = json!({"include_usage": true});
    stream_body
}

/// Plain requests, a stream with usage, a completion.
async fn step_plain_and_streamed_requests(fleet: &Fleet) {
    for i in 0..4 {
        assert_eq!(
            fleet.chat(&chat_body("m", &format!("{i}"))).await.status(),
            200
        );
    }
    let resp = fleet.chat(&usage_stream_body()).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
}

/// A stream held open: active requests and the worker's in-flight count are visible.
async fn step_a_held_stream_shows_in_the_gauges(fleet: &Fleet) {
    fleet.sims[0].control().set_tpot(Duration::from_millis(300));
    fleet.sims[1].control().set_tpot(Duration::from_millis(300));
    let resp = fleet.chat(&usage_stream_body()).await;
    let mut chunks = resp.bytes_stream();
    chunks.next().await.unwrap().unwrap();
    let during = scrape(fleet).await;
    assert_eq!(total(&during, "llm_gateway_active_requests"), 1.0);
    assert_eq!(total(&during, "llm_worker_inflight_requests"), 1.0);
    // The worker's own running count and KV-cache usage arrive with its next /metrics scrape
    // (every 50 ms here). Both are gauges of the moment, so they are checked while the stream
    // runs: once it ends they are back to 0.
    let (mut running, mut kv) = (0.0, 0.0);
    for _ in 0..40 {
        let text = scrape(fleet).await;
        running = total(&text, "llm_worker_running_requests");
        kv = total(&text, "llm_worker_kv_cache_usage");
        if running >= 1.0 && kv > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(running >= 1.0, "running during the stream: {running}");
    assert!(kv > 0.0, "KV-cache usage during the stream: {kv}");
    while chunks.next().await.is_some() {}
    fleet.sims[0].control().set_tpot(Duration::from_millis(1));
    fleet.sims[1].control().set_tpot(Duration::from_millis(1));
}

/// Worker b answers 503: retried on a, failures counted on b.
async fn step_503s_are_retried_and_open_b_breaker(fleet: &Fleet) {
    fleet.sims[1].control().set_status(Some(503));
    for i in 0..20 {
        assert_eq!(
            fleet.chat(&chat_body("m", &format!("r{i}"))).await.status(),
            200
        );
        if breaker(fleet, 1) == BreakerState::Open {
            break;
        }
    }
    assert_eq!(breaker(fleet, 1), BreakerState::Open);
    fleet.sims[1].control().set_status(None);
}

/// One user over its limit: the 21st request is rejected.
async fn step_one_user_goes_over_its_limit(fleet: &Fleet) {
    let mut statuses = Vec::new();
    for i in 0..21 {
        let mut body = chat_body("m", &format!("u{i}"));
        body["user"] = json!("greedy");
        statuses.push(fleet.chat(&body).await.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{statuses:?}"
    );
}

/// After the steps above: `promtool` accepts the scrape and every series moved.
fn step_every_series_moved(fleet: &Fleet, text: &str) {
    let url_b = fleet.sims[1].url();
    promtool_check(text);
    let moved = |name: &str| {
        let v = total(text, name);
        assert!(v > 0.0, "{name} did not move ({v})\n{text}");
    };
    for name in [
        "llm_gateway_requests_total",
        "llm_gateway_request_latency_seconds_count",
        "llm_gateway_time_to_first_token_seconds_count",
        "llm_gateway_time_per_output_token_seconds_count",
        "llm_gateway_overhead_seconds_count",
        "llm_gateway_retries_total",
        "llm_gateway_prompt_tokens_total",
        "llm_gateway_completion_tokens_total",
        "llm_rate_limiter_requests_total",
        "llm_rate_limiter_rejected_total",
        "llm_worker_requests_total",
        "llm_worker_errors_total",
        "llm_worker_latency_ewma_seconds",
        "llm_routing_selections_total",
        "llm_circuit_breaker_failures_total",
        "llm_circuit_breaker_opened_total",
        "llm_worker_ttft_ewma_seconds",
        "llm_gateway_uptime_seconds",
    ] {
        moved(name);
    }
    assert_eq!(total(text, "llm_gateway_healthy_workers"), 2.0);
    assert_eq!(total(text, "llm_gateway_workers"), 2.0);
    assert_eq!(total(text, "llm_gateway_active_requests"), 0.0, "back to 0");
    assert_eq!(
        value_for(
            text,
            "llm_gateway_requests_total",
            "route=\"chat\",status=\"4xx\""
        ),
        Some(1.0)
    );
    assert_eq!(
        value_for(text, "llm_rate_limiter_rejected_total", "scope=\"user\""),
        Some(1.0)
    );
    assert_eq!(
        value_for(text, "llm_gateway_routing_strategy", "round_robin"),
        Some(1.0)
    );
    assert!(value_for(text, "llm_circuit_breaker_failures_total", &url_b).unwrap() >= 1.0);
    assert_eq!(
        value_for(text, "llm_circuit_breaker_state", &url_b),
        Some(1.0),
        "open"
    );
    assert_eq!(
        total(text, "llm_gateway_healthy_workers"),
        2.0,
        "READY, breaker aside"
    );
    assert_eq!(
        value_for(text, "llm_worker_up", &url_b),
        Some(0.0),
        "not routable"
    );
    // Per-worker gauges exist for both workers (scraped from the sims' vLLM metrics).
    for name in [
        "llm_worker_running_requests",
        "llm_worker_waiting_requests",
        "llm_worker_kv_cache_usage",
        "llm_worker_up",
    ] {
        assert_eq!(samples(text, name).len(), 2, "{name}");
    }
}

/// A removed worker's series are gone.
async fn step_a_removed_workers_series_are_gone(fleet: &Fleet) {
    let url_b = fleet.sims[1].url();
    let resp = fleet
        .http
        .delete(fleet.url("/api/workers/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = scrape(fleet).await;
    assert!(
        !text.contains(&url_b),
        "series of the removed worker remain"
    );
    assert_eq!(total(&text, "llm_gateway_workers"), 1.0);
}

/// `conf/grafana-dashboard.json` queries only series the gateway exports, and
/// `conf/prometheus.yml` is a valid Prometheus config.
fn shipped_monitoring_config_uses_these_series(text: &str) {
    let conf = repo_root().join("conf");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(conf.join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("llm_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        let exported = ["", "_bucket", "_count", "_sum"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| text.contains(&format!("# TYPE {base} ")))
        });
        assert!(
            exported,
            "the dashboard queries `{name}`, which /metrics does not export"
        );
    }
    let out = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(conf.join("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- The management API ---------------------------------------------------------------------

/// A chat request with the test's API key.
async fn user_chat(fleet: &Fleet, body: &Value) -> reqwest::Response {
    fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .bearer_auth("sk-user-key-1")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api() {
    let mut fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m")], |c| {
        c.auth.admin_key = Some(ADMIN.into());
        c.auth.api_keys = vec!["sk-user-key-1".into()];
        c.circuit_breaker.failure_threshold = 2;
    })
    .await;
    let extra = sagellm_sim::spawn(sim("c", "m")).await.unwrap();
    // Each step starts where the previous one left the gateway.
    step_status_shows_the_two_workers(&fleet).await;
    step_adding_a_worker(&fleet, &extra.url()).await;
    step_routing_stats_count_per_strategy_and_worker(&fleet).await;
    step_config_is_masked_and_patched_to_round_robin(&fleet).await;
    step_a_breaker_opens_shows_and_resets(&fleet).await;
    step_invalid_config_patches_change_nothing_but_the_error(&fleet).await;
    step_removing_workers_by_id(&fleet).await;
    drop(extra);
    fleet.sims.truncate(2);
    fleet.stop().await;
}

async fn step_status_shows_the_two_workers(fleet: &Fleet) {
    let s: StatusInfo = fleet.get_json("/api/status").await;
    assert_eq!((s.workers_total, s.workers_healthy), (2, 2));
    assert_eq!(s.routing_strategy, "cache_aware");
    assert_eq!(s.workers.len(), 2);
}

/// Adding a worker: admin key, body validation naming the field, duplicates.
async fn step_adding_a_worker(fleet: &Fleet, extra_url: &str) {
    let new = json!({"url": extra_url});
    let r = send(fleet, Method::POST, "/api/workers", None, Some(new.clone())).await;
    expect_error(r, 401).await;
    let r = send(
        fleet,
        Method::POST,
        "/api/workers",
        Some(ADMIN),
        Some(json!({"url": 5})),
    )
    .await;
    let e = expect_error(r, 400).await;
    assert_eq!(e["error"]["param"], "url");
    let r = send(
        fleet,
        Method::POST,
        "/api/workers",
        Some(ADMIN),
        Some(json!({"url": "http://127.0.0.1:9", "weight": 0})),
    )
    .await;
    assert_eq!(expect_error(r, 400).await["error"]["param"], "weight");
    let r = send(
        fleet,
        Method::POST,
        "/api/workers",
        Some(ADMIN),
        Some(json!({"url": "http://127.0.0.1:9", "colour": 1})),
    )
    .await;
    assert!(expect_error(r, 400).await["error"]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let r = send(
        fleet,
        Method::POST,
        "/api/workers",
        Some(ADMIN),
        Some(json!({"url": "ftp://nope"})),
    )
    .await;
    assert_eq!(expect_error(r, 400).await["error"]["param"], "url");
    let r = fleet
        .http
        .post(fleet.url("/api/workers"))
        .bearer_auth(ADMIN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, 400).await;
    let r = send(
        fleet,
        Method::POST,
        "/api/workers",
        Some(ADMIN),
        Some(new.clone()),
    )
    .await;
    assert_eq!(r.status(), 201);
    let added: WorkerInfo = r.json().await.unwrap();
    assert_eq!((added.index, added.state), (2, Lifecycle::Starting));
    let r = send(fleet, Method::POST, "/api/workers", Some(ADMIN), Some(new)).await;
    expect_error(r, 409).await;
    tokio::time::timeout(Duration::from_secs(10), fleet.gw.state.wait_routable(3))
        .await
        .expect("the added worker becomes READY");
}

/// Traffic reaches all three; routing stats count it per strategy and worker.
async fn step_routing_stats_count_per_strategy_and_worker(fleet: &Fleet) {
    let mut served = HashMap::new();
    for i in 0..30 {
        let r = user_chat(fleet, &chat_body("m", &format!("{i}"))).await;
        assert_eq!(r.status(), 200);
        *served.entry(served_by(&r)).or_insert(0) += 1;
    }
    assert_eq!(served.len(), 3, "{served:?}");
    let rs: RoutingStats = fleet.get_json("/api/routing/stats").await;
    assert_eq!(rs.strategy, "cache_aware");
    assert_eq!(rs.by_strategy["cache_aware"], 30);
    assert_eq!(rs.by_strategy["round_robin"], 0);
    assert_eq!(rs.workers.iter().map(|w| w.selected).sum::<u64>(), 30);
    assert!((rs.workers.iter().map(|w| w.share).sum::<f64>() - 1.0).abs() < 1e-9);
    for w in &rs.workers {
        assert_eq!(
            served[&["a", "b", "c"][w.index].to_string()],
            w.selected,
            "{w:?}"
        );
    }
}

/// Config: keys masked; a partial update (to round robin) needs the admin key.
async fn step_config_is_masked_and_patched_to_round_robin(fleet: &Fleet) {
    let c: ConfigView = fleet.get_json("/api/config").await;
    let shown = c.config.to_string();
    assert!(
        !shown.contains(ADMIN) && !shown.contains("sk-user"),
        "{shown}"
    );
    assert!(c.reload.last_error.is_none());
    let patch = json!({"routing": {"strategy": "round_robin"}, "retry.max_attempts": 2});
    expect_error(
        send(fleet, Method::PUT, "/api/config", None, Some(patch.clone())).await,
        401,
    )
    .await;
    let r = send(fleet, Method::PUT, "/api/config", Some(ADMIN), Some(patch)).await;
    assert_eq!(r.status(), 200);
    let c: ConfigView = r.json().await.unwrap();
    assert_eq!(c.config["routing"]["strategy"], "round_robin");
    assert_eq!(c.config["retry"]["max_attempts"], 2);
    assert_eq!(fleet.gw.state.policy.load().name(), "round_robin");
    assert_eq!(
        fleet.gw.state.config.load().auth.api_keys,
        vec!["sk-user-key-1"],
        "keys kept"
    );
}

/// Breakers (round robin now): open one, see it in the stats, reset it.
async fn step_a_breaker_opens_shows_and_resets(fleet: &Fleet) {
    fleet.sims[0].control().set_status(Some(503));
    let fails = fleet.sims[0].control_arc();
    for i in 0..20 {
        let r = user_chat(fleet, &chat_body("m", &format!("x{i}"))).await;
        assert_eq!(r.status(), 200, "retried elsewhere");
        if breaker(fleet, 0) == BreakerState::Open {
            break;
        }
    }
    assert!(fails.requests_total() > 0);
    let bs: BreakerStats = fleet.get_json("/api/circuit-breaker/stats").await;
    assert_eq!(bs.failure_threshold, 2);
    assert_eq!(bs.workers[0].breaker.state, BreakerState::Open);
    assert!(bs.workers[0].breaker.failures_total >= 2);
    fleet.sims[0].control().set_status(None);
    expect_error(
        send(
            fleet,
            Method::POST,
            "/api/circuit-breaker/0/reset",
            None,
            None,
        )
        .await,
        401,
    )
    .await;
    expect_error(
        send(
            fleet,
            Method::POST,
            "/api/circuit-breaker/7/reset",
            Some(ADMIN),
            None,
        )
        .await,
        404,
    )
    .await;
    let r = send(
        fleet,
        Method::POST,
        "/api/circuit-breaker/0/reset",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["breaker"]["state"], "CLOSED");
    assert_eq!(breaker(fleet, 0), BreakerState::Closed);
}

/// An invalid patch changes nothing but the error (the strategy stays round robin).
async fn step_invalid_config_patches_change_nothing_but_the_error(fleet: &Fleet) {
    for (patch, field) in [
        (
            json!({"routing": {"strategy": "fastest"}}),
            "routing.strategy",
        ),
        (
            json!({"limits": {"max_concurrent_requests": -1}}),
            "limits.max_concurrent_requests",
        ),
        (
            json!({"routing.adaptive.epsilon": 3}),
            "routing.adaptive.epsilon",
        ),
    ] {
        let r = send(fleet, Method::PUT, "/api/config", Some(ADMIN), Some(patch)).await;
        assert_eq!(expect_error(r, 400).await["error"]["param"], field);
        let c: ConfigView = fleet.get_json("/api/config").await;
        assert_eq!(c.reload.last_error.as_ref().unwrap().field, field);
        assert_eq!(c.config["routing"]["strategy"], "round_robin", "unchanged");
    }
    let s: StatusInfo = fleet.get_json("/api/status").await;
    assert!(s
        .config_error
        .unwrap()
        .starts_with("routing.adaptive.epsilon"));
}

/// Removing by id (the added worker); unknown ids are 404 JSON.
async fn step_removing_workers_by_id(fleet: &Fleet) {
    expect_error(
        send(fleet, Method::DELETE, "/api/workers/9", Some(ADMIN), None).await,
        404,
    )
    .await;
    expect_error(
        send(
            fleet,
            Method::POST,
            "/api/workers/nope:1/drain",
            Some(ADMIN),
            None,
        )
        .await,
        404,
    )
    .await;
    let id = fleet.gw.state.pool.load().workers[2].id.clone();
    let r = send(
        fleet,
        Method::DELETE,
        &format!("/api/workers/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let removed: WorkerInfo = r.json().await.unwrap();
    assert_eq!((removed.id, removed.state), (id, Lifecycle::Stopped));
    let s: StatusInfo = fleet.get_json("/api/status").await;
    assert_eq!(s.workers_total, 2);
    expect_error(
        send(fleet, Method::GET, "/api/nothing-here", None, None).await,
        404,
    )
    .await;
}

fn config_file(path: &Path, port: u16, workers: &[String], strategy: &str) {
    let mut text = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = {port}\nthreads = 1\ngrace_period_seconds = 0\n\n\
         [routing]\nstrategy = \"{strategy}\"\nseed = 7\n\n\
         [health]\ncheck_interval_ms = 100\nscrape_interval_ms = 50\n\n\
         [rate_limit]\nenabled = false\n"
    );
    for w in workers {
        text.push_str(&format!("\n[[workers]]\nurl = \"{w}\"\n"));
    }
    std::fs::write(path, text).unwrap();
}

// --- Live reloads from the watched file -------------------------------------------------------

/// A gateway started from a watched config file (`gateway.toml` in its own folder).
struct Watched {
    gw: RunningGateway,
    dir: PathBuf,
    path: PathBuf,
    port: u16,
    urls: Vec<String>,
    http: reqwest::Client,
}

/// Write the file for `urls` with `strategy`, start a gateway watching it, wait for both
/// workers.
async fn start_watched_gateway(urls: Vec<String>, strategy: &str) -> Watched {
    let dir = std::env::temp_dir().join(format!("sagellm-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    let port = free_port().unwrap();
    config_file(&path, port, &urls, strategy);
    let (config, _) =
        sources::load(Some(&path), &Overrides::default(), &Overrides::default()).unwrap();
    let source = ConfigSource {
        path: path.clone(),
        ..Default::default()
    };
    let gw = tokio::task::spawn_blocking(move || spawn_with_source(config, Some(source)).unwrap())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), gw.state.wait_routable(2))
        .await
        .unwrap();
    Watched {
        gw,
        dir,
        path,
        port,
        urls,
        http: common::client(),
    }
}

/// Steady load from two clients with one session key. Each answer is recorded as (strategy,
/// worker) when the strategy was the same before and after it; any failure is counted.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(w: &Watched) -> Load {
        let url = format!("{}/v1/chat/completions", w.gw.url());
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let mut clients = Vec::new();
        for c in 0..2 {
            let (stop, failed, seen, url, http, state) = (
                stop.clone(),
                failed.clone(),
                seen.clone(),
                url.clone(),
                w.http.clone(),
                w.gw.state.clone(),
            );
            clients.push(tokio::spawn(async move {
                for i in 0..4000 {
                    if stop.load(Relaxed) {
                        break;
                    }
                    let before = state.policy.load().name();
                    let r = http
                        .post(&url)
                        .header("x-session-id", "one-session")
                        .json(&chat_body("m", &format!("{c}-{i}")))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let after = state.policy.load().name();
                            if before == after {
                                seen.lock()
                                    .unwrap()
                                    .push((after.to_string(), served_by(&r)));
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Relaxed);
                        }
                    }
                }
            }));
        }
        Load {
            stop,
            failed,
            seen,
            clients,
        }
    }

    /// Answers recorded under `strategy`, by worker.
    fn count(&self, strategy: &str) -> HashMap<String, usize> {
        let seen = self.seen.lock().unwrap();
        let mut by: HashMap<String, usize> = HashMap::new();
        for (_, w) in seen.iter().filter(|(s, _)| s == strategy) {
            *by.entry(w.clone()).or_default() += 1;
        }
        by
    }

    /// Stop the clients; the number of requests that failed.
    async fn finish(self) -> usize {
        self.stop.store(true, Relaxed);
        for c in self.clients {
            c.await.unwrap();
        }
        self.failed.load(Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_config_file_applies_live_and_a_broken_file_changes_nothing() {
    let sims = [
        sagellm_sim::spawn(sim("a", "m")).await.unwrap(),
        sagellm_sim::spawn(sim("b", "m")).await.unwrap(),
    ];
    let w = start_watched_gateway(sims.iter().map(|s| s.url()).collect(), "consistent_hash").await;
    // Steady load with one session key through every step.
    let load = Load::start(&w);
    step_an_edit_switches_the_strategy_under_load(&w, &load).await;
    let valid = step_broken_files_are_rejected_naming_the_field(&w).await;
    step_fixing_the_file_clears_the_error(&w, &valid).await;
    step_the_worker_list_is_live_too(&w).await;
    assert_eq!(load.finish().await, 0, "requests failed during the reloads");
    let Watched { gw, dir, .. } = w;
    stop_gateway(gw).await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(sims);
}

/// consistent_hash keeps the one session on one worker; after the edit round_robin spreads it.
async fn step_an_edit_switches_the_strategy_under_load(w: &Watched, load: &Load) {
    eventually("load under consistent_hash", 10, || {
        load.count("consistent_hash").values().sum::<usize>() >= 40
    })
    .await;
    config_file(&w.path, w.port, &w.urls, "round_robin");
    eventually("the edit is applied", 10, || {
        w.gw.state.policy.load().name() == "round_robin"
    })
    .await;
    eventually("load under round_robin", 10, || {
        load.count("round_robin").values().sum::<usize>() >= 40
    })
    .await;
    let hashed = load.count("consistent_hash");
    let rr = load.count("round_robin");
    assert_eq!(hashed.len(), 1, "one session, one worker: {hashed:?}");
    assert_eq!(rr.len(), 2, "round robin spreads: {rr:?}");
    assert_eq!(w.gw.state.reload.lock().reloads, 1);
}

/// Broken files: each is rejected naming the field, the live config stays, load goes on.
/// Returns the last valid file.
async fn step_broken_files_are_rejected_naming_the_field(w: &Watched) -> String {
    let gw = &w.gw;
    let valid = std::fs::read_to_string(&w.path).unwrap();
    let cases = [
        ("routing = [", "routing"),
        ("", "config"),
        ("[routing]\nstrategy = \"fastest\"\n", "routing.strategy"),
        (
            "[limits]\nmax_concurrent_requests = -1\n",
            "limits.max_concurrent_requests",
        ),
        (
            "[routing.adaptive]\nepsilon = 4.0\n",
            "routing.adaptive.epsilon",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        std::fs::write(&w.path, text).unwrap();
        let previous = gw.state.reload.lock().last_error.clone();
        eventually(&format!("the broken file {i} is reported"), 10, || {
            gw.state.reload.lock().last_error != previous
        })
        .await;
        let e = gw.state.reload.lock().last_error.clone().unwrap();
        assert!(e.field.starts_with(field), "{text:?}: {e:?}");
        assert_eq!(gw.state.policy.load().name(), "round_robin");
    }
    let c: ConfigView = w
        .http
        .get(format!("{}/api/config", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let e = c.reload.last_error.unwrap();
    assert_eq!(
        (e.source.as_str(), e.field.as_str()),
        ("file", "routing.adaptive.epsilon")
    );
    assert_eq!(c.config["routing"]["strategy"], "round_robin");
    assert_eq!(c.reload.reloads, 1, "nothing broken was applied");
    valid
}

/// Fixing the file clears the error.
async fn step_fixing_the_file_clears_the_error(w: &Watched, valid: &str) {
    std::fs::write(&w.path, valid.replace("round_robin", "least_queue")).unwrap();
    eventually("the fixed file is applied", 10, || {
        w.gw.state.policy.load().name() == "least_queue"
    })
    .await;
    assert!(w.gw.state.reload.lock().last_error.is_none());
}

/// The worker list is live too: drop b, then give a weight 3.
async fn step_the_worker_list_is_live_too(w: &Watched) {
    config_file(&w.path, w.port, &w.urls[..1], "least_queue");
    eventually("b leaves the pool", 10, || {
        w.gw.state.pool.load().workers.len() == 1
    })
    .await;
    let with_weight = std::fs::read_to_string(&w.path).unwrap() + "weight = 3\n";
    std::fs::write(&w.path, with_weight).unwrap();
    eventually("a's weight is applied", 10, || {
        w.gw.state.pool.load().workers[0].weight() == 3
    })
    .await;
}

// --- The sagellm CLI --------------------------------------------------------------------------

/// Two workers behind a gateway with the admin key.
async fn cli_fleet() -> Fleet {
    Fleet::start(vec![sim("a", "m"), sim("b", "m")], |c| {
        c.auth.admin_key = Some(ADMIN.into());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_status_workers_health_and_watch() {
    let fleet = cli_fleet().await;

    let o = sagellm(&fleet, &["status"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("workers 2/2 healthy"), "{}", stdout(&o));
    assert!(stdout(&o).contains("READY"), "{}", stdout(&o));

    let o = sagellm(&fleet, &["--json", "workers"]).await;
    let workers: Vec<WorkerInfo> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(workers.len(), 2);

    let o = sagellm(&fleet, &["health"]).await;
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("ok (200): 2/2"), "{}", stdout(&o));

    let o = sagellm(
        &fleet,
        &["--json", "watch", "--count", "2", "--interval", "0.1"],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<StatusInfo> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drains_and_undrains_with_the_admin_key() {
    let fleet = cli_fleet().await;
    let o = sagellm(&fleet, &["drain", "0"]).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("admin key"), "{}", stderr(&o));
    let o = sagellm(&fleet, &["--admin-key", ADMIN, "drain", "0"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("DRAINING"), "{}", stdout(&o));
    assert!(fleet.gw.state.pool.load().workers[0].health.is_draining());
    let o = sagellm(&fleet, &["--admin-key", ADMIN, "undrain", "0"]).await;
    assert!(stdout(&o).contains("READY"), "{}", stdout(&o));
    let o = sagellm(&fleet, &["--admin-key", ADMIN, "drain", "7"]).await;
    assert!(
        !o.status.success() && stderr(&o).contains("404"),
        "{}",
        stderr(&o)
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_and_gets_the_config() {
    let fleet = cli_fleet().await;
    let o = sagellm(
        &fleet,
        &[
            "--admin-key",
            ADMIN,
            "config",
            "set",
            "routing_strategy=round_robin",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fleet.gw.state.policy.load().name(), "round_robin");
    let o = sagellm(
        &fleet,
        &[
            "--admin-key",
            ADMIN,
            "config",
            "set",
            "routing_strategy=fastest",
        ],
    )
    .await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("routing.strategy"), "{}", stderr(&o));
    let o = sagellm(&fleet, &["config", "get"]).await;
    let c: ConfigView = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c.config["routing"]["strategy"], "round_robin");
    assert_eq!(c.config["auth"]["admin_key"], "<redacted>");
    fleet.stop().await;
}

/// The load generator through the CLI, against the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_benchmarks_the_gateway() {
    let fleet = cli_fleet().await;
    let report =
        std::env::temp_dir().join(format!("sagellm-cli-bench-{}.json", std::process::id()));
    let url = fleet.gw.url();
    let o = sagellm(
        &fleet,
        &[
            "bench",
            &url,
            "--requests",
            "12",
            "-c",
            "3",
            "--max-tokens",
            "4",
            "--stream",
            "--no-progress",
            "-o",
            report.to_str().unwrap(),
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Report = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    assert_eq!((r.requests, r.ok, r.errors), (12, 12, 0), "{r:?}");
    fleet.stop().await;
}

/// Unreachable gateway: one clear line, exit status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_names_an_unreachable_gateway() {
    let o = sagellm_at("http://127.0.0.1:1", &["status"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach the gateway at http://127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
}
