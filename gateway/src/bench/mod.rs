//! `sagellm bench`: a load generator for any OpenAI-compatible endpoint (this gateway, vLLM,
//! LMDeploy, SGLang, llama.cpp's server, `sagellm-engine`).
//!
//! It sends chat or completion requests with a closed loop of `-c` workers, or Poisson arrivals
//! at `--rate` requests/s with at most `-c` in flight, for `-d` (or `--requests`), and reports
//! requests/s, errors by status, output tokens/s and the p50/p95/p99 of end-to-end latency,
//! time to first token, inter-token latency and time per output token. Usage and the JSON
//! report schema: `docs/sagellm-bench.md`.
//!
//! ```text
//! sagellm bench http://127.0.0.1:9000 -c 16 -d 30s --stream --max-tokens 256 -o report.json
//! ```
//!
//! From Rust: parse or build a [`BenchArgs`], then [`run`] it for the [`Report`] (or call
//! [`main`] to also print it).
//!
//! ## Layout
//! - [`args`]: the flags and their parsers (durations, rates).
//! - [`target`]: base URL, HTTP client, reachability and model discovery.
//! - [`workload`]: deterministic prompts and request bodies.
//! - [`driver`]: one request, streamed (with [`sse`]) or not, into an [`driver::Outcome`].
//! - [`schedule`]: Poisson arrivals; [`runner`]: closed and open loops, collecting outcomes.
//! - [`stats`]: counts and HdrHistograms; [`report`]: the result and its printout;
//!   [`progress`]: the progress bar.
//! - [`decision`]: `sagellm bench-decision`, the time of one routing decision in process;
//!   [`fleet`]: the fleet's prefix-cache hit rate over a run, read from a gateway target.

mod args;
pub(crate) mod decision;
mod driver;
mod fleet;
mod progress;
mod report;
mod runner;
pub mod schedule;
mod sse;
mod stats;
mod target;
mod workload;

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};

pub use args::{BenchArgs, Endpoint, WorkloadKind};
pub use decision::DecisionArgs;
pub use report::{ErrorSummary, Percentiles, Report, RunConfig};

use progress::{Goal, Progress};
use runner::{drive, ArrivalCounts, Load, Plan};
use stats::Stats;
use target::Target;
use workload::Workload;

/// Runs the benchmark described by `args` and returns its report; writes the report as JSON
/// to `args.output` when set. Draws a progress bar on stderr when `progress` is true.
///
/// Fails before sending anything when the arguments are invalid, the target cannot be reached,
/// or (without `--model`) it lists no models.
pub async fn run(args: &BenchArgs, progress: bool) -> anyhow::Result<Report> {
    validate(args)?;
    let target = Target::new(&args.url, args.resolved_api_key(), args.concurrency)?;
    let model = match &args.model {
        Some(model) => {
            target.check_reachable().await?;
            model.clone()
        }
        None => target.first_model().await?,
    };
    let workload = Workload::new(args, model.clone());
    let duration = args.effective_duration();
    let load = Load {
        concurrency: args.concurrency,
        rate: args.rate.map(|r| (r, args.seed)),
        duration,
        limit: args.requests,
    };
    let goal = match (duration, args.requests) {
        (None, Some(n)) => Goal::Requests(n),
        (d, _) => Goal::Duration(d.unwrap_or(args::DEFAULT_DURATION)),
    };
    let config = RunConfig {
        url: target.url(args.endpoint.path()),
        endpoint: args.endpoint.name().to_string(),
        model,
        stream: args.stream,
        concurrency: args.concurrency,
        rate: args.rate,
        duration_s: duration.map(|d| round(d.as_secs_f64(), 6)),
        requests: args.requests,
        prompt_len: args.prompt_len,
        max_tokens: args.max_tokens,
        workload: args.workload.name().to_string(),
        contexts: (args.workload == WorkloadKind::SharedPrefix).then_some(args.contexts),
        context_tokens: (args.workload == WorkloadKind::SharedPrefix)
            .then_some(args.context_tokens),
        conversations: (args.workload == WorkloadKind::MultiTurn).then_some(args.conversations),
        turns: (args.workload == WorkloadKind::MultiTurn).then_some(args.turns),
        seed: args.seed,
        timeout_s: round(args.timeout.as_secs_f64(), 6),
    };
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let before = fleet::counters(&target).await;
    let plan = Arc::new(Plan::new(target.clone(), workload, args.timeout));
    let (stats, arrivals, wall) = drive(plan, load, &Progress::new(goal, progress)).await;
    let mut report = build_report(config, started_unix_ms, &stats, arrivals, wall);
    if before.is_some() {
        tokio::time::sleep(fleet::SETTLE).await;
        report.prefix_cache_hit_rate =
            fleet::hit_rate(before, fleet::counters(&target).await).map(|r| round(r, 4));
    }
    if let Some(path) = &args.output {
        let json = serde_json::to_string_pretty(&report).context("serialising the report")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok(report)
}

/// The `sagellm bench` command: [`run`] with a progress bar when stderr is a terminal (and not
/// `--no-progress`), then the summary on stdout.
pub async fn main(args: BenchArgs) -> anyhow::Result<()> {
    let progress = !args.no_progress && std::io::stderr().is_terminal();
    let report = run(&args, progress).await?;
    print!("{}", report.summary());
    if let Some(path) = &args.output {
        println!("\nreport written to {}", path.display());
    }
    Ok(())
}

/// Checks what clap checks too, for [`BenchArgs`] built in code.
fn validate(args: &BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of requests per second");
    }
    if args.duration.is_some_and(|d| d.is_zero()) || args.timeout.is_zero() {
        bail!("--duration and --timeout must be longer than 0");
    }
    if args.requests == Some(0) {
        bail!("--requests must be at least 1");
    }
    if args.prompt_len == 0 || args.max_tokens == 0 {
        bail!("--prompt-len and --max-tokens must be at least 1");
    }
    if args.workload == WorkloadKind::MultiTurn && args.endpoint != Endpoint::Chat {
        bail!("--workload multi-turn needs the chat endpoint (it sends a conversation)");
    }
    Ok(())
}

fn build_report(
    config: RunConfig,
    started_unix_ms: u64,
    stats: &Stats,
    arrivals: ArrivalCounts,
    wall: Duration,
) -> Report {
    let secs = round(wall.as_secs_f64(), 6);
    let per_s = |n: u64| {
        if secs > 0.0 {
            round(n as f64 / secs, 3)
        } else {
            0.0
        }
    };
    Report {
        schema_version: report::SCHEMA_VERSION,
        config,
        started_unix_ms,
        wall_time_s: secs,
        requests: stats.finished(),
        ok: stats.ok,
        errors: stats.error_count(),
        errors_by_status: stats.errors.clone(),
        arrivals_delayed: arrivals.delayed,
        arrivals_unsent: arrivals.unsent,
        requests_per_s: per_s(stats.finished()),
        ok_per_s: per_s(stats.ok),
        output_tokens: stats.output_tokens,
        output_tokens_per_s: per_s(stats.output_tokens),
        ok_without_usage: stats.without_usage,
        latency_ms: stats.e2e.summary(),
        ttft_ms: stats.ttft.summary(),
        itl_ms: stats.itl.summary(),
        tpot_ms: stats.tpot.summary(),
        prefix_cache_hit_rate: None,
    }
}

/// `x` rounded to `decimals` places: tidier JSON, and short decimals read back bit for bit.
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}
