//! The result of a run: [`Report`] (serialised as the `-o` JSON file, schema in
//! `docs/sagellm-bench.md`) and its compact human summary ([`Report::summary`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Version of the JSON layout below; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Latency distribution of one metric, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples (requests, or token gaps for ITL).
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Failures of one kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSummary {
    pub count: u64,
    /// The message of the first failure of this kind.
    pub first_message: String,
}

/// The settings a run used (after defaults and model discovery).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Full URL requests went to, e.g. `http://127.0.0.1:9000/v1/chat/completions`.
    pub url: String,
    /// `"chat"` or `"completions"`.
    pub endpoint: String,
    pub model: String,
    pub stream: bool,
    pub concurrency: u32,
    /// Poisson arrival rate in requests/s; `null` for a closed loop.
    pub rate: Option<f64>,
    /// How long new requests were sent, in seconds; `null` when only `requests` bounded it.
    pub duration_s: Option<f64>,
    /// `--requests`, when given.
    pub requests: Option<u64>,
    pub prompt_len: u32,
    pub max_tokens: u32,
    /// `plain`, `shared-prefix` or `multi-turn` (absent in older reports: plain).
    #[serde(default = "plain")]
    pub workload: String,
    /// shared-prefix: `--contexts` and `--context-tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contexts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u32>,
    /// multi-turn: `--conversations` and `--turns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<u32>,
    pub seed: u64,
    pub timeout_s: f64,
}

fn plain() -> String {
    "plain".to_string()
}

/// Everything a run measured. Latencies cover successful requests only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub config: RunConfig,
    /// Start of the run, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// From the first request sent to the last one finished, in seconds.
    pub wall_time_s: f64,
    /// Requests that finished (ok + errors).
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Keyed by HTTP status (`"503"`) or transport failure (`"connect"`, `"timeout"`,
    /// `"stream"`, `"invalid_response"`).
    pub errors_by_status: BTreeMap<String, ErrorSummary>,
    /// `--rate` only: arrivals that found all `concurrency` slots busy and waited.
    pub arrivals_delayed: u64,
    /// `--rate` only: arrivals still waiting for a slot when the duration ended (never sent).
    pub arrivals_unsent: u64,
    /// `requests / wall_time_s`.
    pub requests_per_s: f64,
    /// `ok / wall_time_s`.
    pub ok_per_s: f64,
    /// Output tokens of successful requests.
    pub output_tokens: u64,
    /// `output_tokens / wall_time_s`.
    pub output_tokens_per_s: f64,
    /// Successful requests without `usage.completion_tokens`, whose tokens were estimated.
    pub ok_without_usage: u64,
    /// End-to-end latency: send → end of the response body.
    pub latency_ms: Option<Percentiles>,
    /// Time to first token (streams only): send → first chunk with content.
    pub ttft_ms: Option<Percentiles>,
    /// Inter-token latency (streams only): gaps between consecutive content chunks.
    pub itl_ms: Option<Percentiles>,
    /// Time per output token after the first (streams with ≥ 2 tokens):
    /// `(latency − ttft) / (output_tokens − 1)` per request.
    pub tpot_ms: Option<Percentiles>,
    /// When the target is a sagellm gateway whose workers export vLLM's prefix-cache
    /// counters: the fleet's hit rate over the run (tokens found cached / looked up).
    #[serde(default)]
    pub prefix_cache_hit_rate: Option<f64>,
}

impl Report {
    /// The compact text printed at the end of a run.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        let _ = writeln!(out, "sagellm bench  {}  model {}", c.url, c.model);
        let mode = match c.rate {
            Some(rate) => format!("Poisson {rate} req/s, at most {} in flight", c.concurrency),
            None => format!("closed loop, concurrency {}", c.concurrency),
        };
        let shape = match (c.contexts, c.context_tokens, c.conversations, c.turns) {
            (Some(n), Some(t), _, _) => format!("{} ({n} contexts of {t} tokens)", c.workload),
            (_, _, Some(n), Some(k)) => format!("{} ({n} conversations of {k} turns)", c.workload),
            _ => c.workload.clone(),
        };
        let _ = writeln!(
            out,
            "  {mode}, {}, {shape}, prompt ~{} tokens, max_tokens {}",
            if c.stream { "stream" } else { "no stream" },
            c.prompt_len,
            c.max_tokens
        );
        out.push('\n');
        let mut requests = format!(
            "{} finished: {} ok, {} errors",
            self.requests, self.ok, self.errors
        );
        if !self.errors_by_status.is_empty() {
            let kinds: Vec<String> = self
                .errors_by_status
                .iter()
                .map(|(k, e)| format!("{k}: {}", e.count))
                .collect();
            let _ = write!(requests, " ({})", kinds.join(", "));
        }
        let _ = writeln!(out, "{:<12}{requests}", "requests");
        let _ = writeln!(
            out,
            "{:<12}{:.2} req/s, {:.1} output tok/s ({} output tokens in {:.2} s)",
            "throughput",
            self.requests_per_s,
            self.output_tokens_per_s,
            self.output_tokens,
            self.wall_time_s
        );
        if c.rate.is_some() {
            let _ = writeln!(
                out,
                "{:<12}{} delayed (all slots busy), {} unsent at the deadline",
                "arrivals", self.arrivals_delayed, self.arrivals_unsent
            );
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "{:<12}{:>10}{:>10}{:>10}{:>10}{:>10}{:>9}",
            "ms", "p50", "p95", "p99", "mean", "max", "n"
        );
        for (name, p) in [
            ("latency", &self.latency_ms),
            ("TTFT", &self.ttft_ms),
            ("ITL", &self.itl_ms),
            ("TPOT", &self.tpot_ms),
        ] {
            match p {
                Some(p) => {
                    let _ = writeln!(
                        out,
                        "{name:<12}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>9}",
                        p.p50, p.p95, p.p99, p.mean, p.max, p.count
                    );
                }
                None => {
                    let _ = writeln!(out, "{name:<12}{:>10}", "-");
                }
            }
        }
        if let Some(rate) = self.prefix_cache_hit_rate {
            let _ = writeln!(
                out,
                "\n{:<12}{:.1}% of prompt tokens found cached (the fleet, over the run)",
                "prefix hits",
                rate * 100.0
            );
        }
        if !self.errors_by_status.is_empty() {
            out.push('\n');
            for (kind, e) in &self.errors_by_status {
                let _ = writeln!(out, "error {kind} ×{}: {}", e.count, e.first_message);
            }
        }
        out
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}
