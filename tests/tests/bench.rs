//! `sagellm bench` against in-process `sagellm-sim` workers: the measured TTFT / TPOT / ITL
//! match the simulator's configured latencies, token counts are exact, errors are counted by
//! status, the Poisson schedule sends what it planned, bad targets fail with clear messages,
//! and the JSON report reads back unchanged.
//!
//! Timing assertions are one-sided where the physics allows (a sim never answers *before* its
//! configured latency) and generous on the other side: CI is a loaded 2-core box.

mod common;

use std::time::Duration;

use sagellm_gateway::bench::schedule::Arrivals;
use sagellm_gateway::bench::{run, BenchArgs, Percentiles, Report};
use sagellm_sim::{SimConfig, SimHandle};

/// A sim serving `sim-model` with these latencies and output length, batching generously so
/// that its queue never adds to the measured latency.
async fn sim(ttft_ms: u64, tpot_ms: u64, output_tokens: u32) -> SimHandle {
    sagellm_sim::spawn(SimConfig {
        ttft: Duration::from_millis(ttft_ms),
        tpot: Duration::from_millis(tpot_ms),
        output_tokens,
        max_running: 64,
        ..Default::default()
    })
    .await
    .expect("sim starts")
}

fn args(url: &str, extra: &[&str]) -> BenchArgs {
    let argv = std::iter::once(url).chain(extra.iter().copied());
    BenchArgs::try_parse_args(argv).expect("valid bench arguments")
}

/// `p` is at least `want` (minus histogram rounding) and at most `want × 1.3 + 25 ms`.
fn assert_near(what: &str, p: &Option<Percentiles>, want_ms: f64, low_factor: f64) {
    let p = p.as_ref().unwrap_or_else(|| panic!("{what}: no samples"));
    let (low, high) = (want_ms * low_factor, want_ms * 1.3 + 25.0);
    assert!(
        (low..=high).contains(&p.p50),
        "{what} p50 {} ms not in [{low}, {high}] ({p:?})",
        p.p50
    );
    assert!(
        p.p50 <= p.p95 && p.p95 <= p.p99 && p.p99 <= p.max,
        "{what}: {p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_matches_the_simulated_ttft_and_tpot() {
    let sim = sim(100, 20, 10).await;
    let a = args(&sim.url(), &["--stream", "-c", "4", "--requests", "12"]);
    let report = run(&a, false).await.expect("bench runs");
    println!("{report}");

    assert_eq!(
        (report.requests, report.ok, report.errors),
        (12, 12, 0),
        "{report}"
    );
    assert_eq!(
        report.config.model, "sim-model",
        "discovered from /v1/models"
    );
    assert_eq!(
        report.output_tokens, 120,
        "usage.completion_tokens of every request"
    );
    assert_eq!(report.ok_without_usage, 0, "include_usage was requested");
    assert_eq!(sim.control().requests_total(), 12);

    // The sim waits ttft before the first token, then paces tokens tpot apart from there.
    assert_near("TTFT", &report.ttft_ms, 100.0, 0.99);
    // TPOT excludes TTFT: (e2e − ttft) / 9 ≈ 20 ms; a late first chunk can shave a little.
    assert_near("TPOT", &report.tpot_ms, 20.0, 0.8);
    assert_near("ITL", &report.itl_ms, 20.0, 0.5);
    assert_near("latency", &report.latency_ms, 280.0, 0.99);
    assert_eq!(report.ttft_ms.as_ref().map(|p| p.count), Some(12));
    assert_eq!(report.tpot_ms.as_ref().map(|p| p.count), Some(12));
    assert_eq!(report.itl_ms.as_ref().map(|p| p.count), Some(12 * 9));
    assert!(report.output_tokens_per_s > 0.0 && report.requests_per_s > 0.0);

    let summary = report.summary();
    for row in ["requests", "throughput", "latency", "TTFT", "ITL", "TPOT"] {
        assert!(summary.contains(row), "summary lacks {row}:\n{summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_endpoint_streams_too() {
    let sim = sim(5, 1, 16).await;
    let a = args(
        &sim.url(),
        &[
            "--endpoint",
            "completions",
            "--stream",
            "--max-tokens",
            "6",
            "--requests",
            "5",
        ],
    );
    let report = run(&a, false).await.expect("bench runs");
    assert_eq!((report.ok, report.errors), (5, 0), "{report}");
    assert_eq!(
        report.output_tokens, 30,
        "min(max_tokens, output_tokens) each"
    );
    assert!(
        report.config.url.ends_with("/v1/completions"),
        "{}",
        report.config.url
    );
    assert!(report.ttft_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_has_latency_but_no_ttft() {
    let sim = sim(20, 5, 8).await;
    let a = args(&sim.url(), &["-c", "3", "--requests", "6"]);
    let report = run(&a, false).await.expect("bench runs");
    assert_eq!((report.ok, report.errors), (6, 0), "{report}");
    assert_eq!(report.output_tokens, 48);
    assert_eq!(report.ok_without_usage, 0);
    assert!(report.ttft_ms.is_none() && report.itl_ms.is_none() && report.tpot_ms.is_none());
    // The whole generation (20 + 7 × 5 ms) happens before the body is sent.
    assert_near("latency", &report.latency_ms, 55.0, 0.99);
    let summary = report.summary();
    let ttft_row = summary
        .lines()
        .find(|l| l.starts_with("TTFT"))
        .expect("TTFT row");
    assert_eq!(
        ttft_row.split_whitespace().collect::<Vec<_>>(),
        ["TTFT", "-"],
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_status() {
    let s = sagellm_sim::spawn(SimConfig {
        status: Some(503),
        ..Default::default()
    })
    .await
    .expect("sim starts");
    let a = args(&s.url(), &["--stream", "-c", "2", "--requests", "10"]);
    let report = run(&a, false)
        .await
        .expect("a failing target still gives a report");
    assert_eq!((report.requests, report.ok, report.errors), (10, 0, 10));
    assert_eq!(
        report.errors_by_status.len(),
        1,
        "{:?}",
        report.errors_by_status
    );
    let e = &report.errors_by_status["503"];
    assert_eq!(e.count, 10);
    assert!(e.first_message.contains("503"), "{}", e.first_message);
    assert!(
        report.latency_ms.is_none(),
        "failed requests have no latency"
    );
    assert_eq!(report.output_tokens, 0);
    assert!(report.summary().contains("503: 10"), "{}", report.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisson_arrivals_send_the_seeded_schedule() {
    let sim = sim(2, 1, 4).await;
    let a = args(
        &sim.url(),
        &[
            "--rate", "40", "-d", "1s", "-c", "16", "--seed", "7", "--stream",
        ],
    );
    let report = run(&a, false).await.expect("bench runs");
    // The schedule is a function of (rate, seed, duration): count it the same way.
    let planned = Arrivals::new(40.0, 7, Some(Duration::from_secs(1)), None).count() as u64;
    assert!(
        (20..=60).contains(&planned),
        "about 40 arrivals in 1 s, got {planned}"
    );
    assert_eq!(
        report.arrivals_unsent, 0,
        "16 slots for ~3 ms requests never run out"
    );
    assert_eq!(report.requests, planned, "{report}");
    assert_eq!(report.ok, planned);
    assert_eq!(report.config.rate, Some(40.0));
    assert!(
        report.summary().contains("Poisson 40 req/s"),
        "{}",
        report.summary()
    );
    // Sends are spread over the second rather than fired at once.
    assert!(report.wall_time_s >= 0.5, "{report}");

    // --requests bounds an open loop as well.
    let a = args(&sim.url(), &["--rate", "200", "--requests", "5"]);
    let report = run(&a, false).await.expect("bench runs");
    assert_eq!((report.requests, report.ok), (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_is_a_clear_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // Closed again: nothing listens there now.
    let url = format!("http://127.0.0.1:{port}");
    for extra in [&[][..], &["--model", "m"][..]] {
        let err = run(&args(&url, extra), false)
            .await
            .expect_err("nothing listens");
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("cannot reach {url}"))
                && message.contains("connection refused"),
            "{extra:?}: {message}"
        );
    }
    let err = run(&args("ftp://x", &[]), false)
        .await
        .expect_err("bad scheme");
    assert!(format!("{err:#}").contains("ftp"), "{err:#}");
}

/// A bare OpenAI-ish server whose `GET /v1/models` lists nothing (a sim always serves one).
async fn empty_model_list() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/v1/models",
        axum::routing::get(|| async {
            axum::Json(serde_json::json!({"object": "list", "data": []}))
        }),
    );
    // Bound before serving: connections queue until the server task runs.
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_without_models_is_a_clear_error() {
    let url = empty_model_list().await;
    let err = run(&args(&url, &["--requests", "1"]), false)
        .await
        .expect_err("no model to ask for");
    let message = format!("{err:#}");
    assert!(
        message.contains(&format!("{url} serves no models")) && message.contains("--model"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_round_trips() {
    let sim = sim(5, 2, 5).await;
    let path = std::env::temp_dir().join(format!("sagellm-bench-{}.json", std::process::id()));
    let out = path.to_str().expect("utf-8 temp path");
    let a = args(&sim.url(), &["--stream", "--requests", "4", "-o", out]);
    let report = run(&a, false).await.expect("bench runs");
    let text = std::fs::read_to_string(&path).expect("report written");
    let _ = std::fs::remove_file(&path);
    let back: Report = serde_json::from_str(&text).expect("report parses");
    assert_eq!(back, report);
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["errors_by_status"], serde_json::json!({}));
    assert!(value["ttft_ms"]["p99"].is_f64(), "{value}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_the_gateway_through_a_v1_base_url() {
    let fleet = common::Fleet::start(
        vec![common::sim("w1", "gw-model"), common::sim("w2", "gw-model")],
        |_| {},
    )
    .await;
    let url = format!("{}/v1/", fleet.gw.url());
    let report = run(
        &args(&url, &["--stream", "-c", "4", "--requests", "20"]),
        false,
    )
    .await
    .expect("bench runs");
    assert_eq!((report.ok, report.errors), (20, 0), "{report}");
    assert_eq!(report.config.model, "gw-model");
    assert_eq!(report.output_tokens, 20 * 16);
    let served: u64 = fleet
        .sims
        .iter()
        .map(|s| s.control().requests_total())
        .sum();
    assert_eq!(served, 20);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_prefix_traffic_through_the_gateway_reports_the_fleets_hit_rate() {
    let fleet = common::Fleet::start(
        vec![common::sim("w1", "gw-model"), common::sim("w2", "gw-model")],
        |c| c.routing.strategy = sagellm_gateway::config::Strategy::CacheAware,
    )
    .await;
    // The "before" reading needs one scrape of each worker's counters.
    common::eventually("a first scrape of the workers' counters", 5, || {
        let pool = fleet.gw.state.pool.load();
        pool.workers
            .iter()
            .all(|w| w.load.view().prefix_cache_hits.is_some())
    })
    .await;
    let report = run(
        &args(
            &fleet.gw.url(),
            &[
                "--stream",
                "-c",
                "2",
                "--requests",
                "24",
                "--workload",
                "shared-prefix",
                "--contexts",
                "2",
                "--context-tokens",
                "200",
                "--prompt-len",
                "8",
            ],
        ),
        false,
    )
    .await
    .expect("bench runs");
    assert_eq!((report.ok, report.errors), (24, 0), "{report}");
    assert_eq!(report.config.workload, "shared-prefix");
    assert_eq!(report.config.contexts, Some(2));
    let rate = report
        .prefix_cache_hit_rate
        .expect("the gateway's fleet hit rate");
    // Two contexts of ~200 tokens, 24 requests: all but the first of each context hit.
    assert!(rate > 0.5, "{report}");
    assert!(report.summary().contains("prefix hits"));
    // A plain worker as the target has no fleet view: no rate, no error.
    let direct = run(
        &args(
            &fleet.sims[0].url(),
            &["--requests", "2", "--model", "gw-model"],
        ),
        false,
    )
    .await
    .expect("bench runs");
    assert_eq!(direct.prefix_cache_hit_rate, None);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_at_the_deadline_finish_and_count() {
    let sim = sim(300, 1, 2).await;
    let a = args(&sim.url(), &["-c", "2", "-d", "100ms", "--stream"]);
    let report = run(&a, false).await.expect("bench runs");
    // Both workers sent at t = 0; nothing new starts after 100 ms; both answers count.
    assert_eq!((report.requests, report.ok), (2, 2), "{report}");
    assert!(report.wall_time_s >= 0.3, "waited for the drain: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_requests_time_out() {
    let s = sagellm_sim::spawn(SimConfig {
        hang: true,
        ..Default::default()
    })
    .await
    .expect("sim starts");
    let a = args(
        &s.url(),
        &[
            "--stream",
            "-c",
            "2",
            "--requests",
            "2",
            "--timeout",
            "200ms",
        ],
    );
    let report = run(&a, false).await.expect("bench runs");
    assert_eq!(report.errors_by_status["timeout"].count, 2, "{report}");
    assert!(report.wall_time_s < 5.0, "bounded by --timeout: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_writes_the_report_file() {
    let sim = sim(2, 1, 3).await;
    let path = std::env::temp_dir().join(format!("sagellm-bench-main-{}.json", std::process::id()));
    let out = path.to_str().expect("utf-8 temp path");
    let a = args(&sim.url(), &["--requests", "3", "--no-progress", "-o", out]);
    sagellm_gateway::bench::main(a)
        .await
        .expect("bench main runs");
    let text = std::fs::read_to_string(&path).expect("report written");
    let _ = std::fs::remove_file(&path);
    let report: Report = serde_json::from_str(&text).expect("report parses");
    assert_eq!((report.ok, report.output_tokens), (3, 9));
}
