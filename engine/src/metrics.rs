//! `GET /metrics`: Prometheus text with the vLLM names the gateway (and any vLLM dashboard)
//! reads, so the bundled engine is scraped exactly like a vLLM worker.
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `vllm:num_requests_running` | gauge | requests in the running batch |
//! | `vllm:num_requests_waiting` | gauge | requests queued in the engine |
//! | `vllm:kv_cache_usage_perc` | gauge | KV-cache use 0..1 (estimate, see [`crate::inflight`]) |
//! | `vllm:time_to_first_token_seconds` | histogram | request arrival → first token |
//! | `vllm:time_per_output_token_seconds` | histogram | mean gap between output tokens, per request |
//! | `vllm:e2e_request_latency_seconds` | histogram | request arrival → last token |
//! | `vllm:prompt_tokens_total` | counter | prompt tokens processed |
//! | `vllm:generation_tokens_total` | counter | tokens generated (rate() = throughput) |
//! | `vllm:avg_generation_throughput_toks_per_s` | gauge | tokens/s over the last 10 s |
//! | `vllm:request_success_total{finished_reason}` | counter | finished requests (`stop`, `length`) |
//! | `sagellm:requests_cancelled_total` | counter | generations stopped because the client left |
//! | `sagellm:requests_failed_total` | counter | generations that ended with an engine error |

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use prometheus::{
    exponential_buckets, Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
};

use crate::inflight::Snapshot;

/// The sliding window of the throughput gauge.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(10);

pub struct Metrics {
    registry: Registry,
    running: IntGauge,
    waiting: IntGauge,
    kv_cache: Gauge,
    pub ttft: Histogram,
    pub tpot: Histogram,
    pub e2e: Histogram,
    pub prompt_tokens: IntCounter,
    pub generation_tokens: IntCounter,
    throughput: Gauge,
    pub success: IntCounterVec,
    pub cancelled: IntCounter,
    pub failed: IntCounter,
    /// (when, tokens) samples for the throughput gauge.
    recent: std::sync::Mutex<VecDeque<(Instant, u64)>>,
}

fn opts(name: &str, help: &str, model: &str) -> Opts {
    Opts::new(name, help).const_label("model_name", model)
}

fn histogram(
    name: &str,
    help: &str,
    model: &str,
    start: f64,
    count: usize,
) -> prometheus::Result<Histogram> {
    Histogram::with_opts(
        HistogramOpts::new(name, help)
            .const_label("model_name", model)
            .buckets(exponential_buckets(start, 2.0, count)?),
    )
}

impl Metrics {
    pub fn new(model: &str) -> prometheus::Result<Self> {
        let m = Self {
            registry: Registry::new(),
            running: IntGauge::with_opts(opts("vllm:num_requests_running", "Requests in the running batch.", model))?,
            waiting: IntGauge::with_opts(opts("vllm:num_requests_waiting", "Requests waiting in the engine queue.", model))?,
            kv_cache: Gauge::with_opts(opts(
                "vllm:kv_cache_usage_perc",
                "KV-cache usage, 0..1 (estimate: tokens held by requests in flight / (max_seqs x context length)).",
                model,
            ))?,
            ttft: histogram("vllm:time_to_first_token_seconds", "Time to first token.", model, 0.01, 14)?,
            tpot: histogram("vllm:time_per_output_token_seconds", "Time per output token.", model, 0.005, 12)?,
            e2e: histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency.", model, 0.05, 14)?,
            prompt_tokens: IntCounter::with_opts(opts("vllm:prompt_tokens_total", "Prompt tokens processed.", model))?,
            generation_tokens: IntCounter::with_opts(opts("vllm:generation_tokens_total", "Tokens generated.", model))?,
            throughput: Gauge::with_opts(opts(
                "vllm:avg_generation_throughput_toks_per_s",
                "Generated tokens per second over the last 10 s.",
                model,
            ))?,
            success: IntCounterVec::new(
                opts("vllm:request_success_total", "Finished requests by finish reason.", model),
                &["finished_reason"],
            )?,
            cancelled: IntCounter::with_opts(opts(
                "sagellm:requests_cancelled_total",
                "Generations cancelled because the client disconnected.",
                model,
            ))?,
            failed: IntCounter::with_opts(opts("sagellm:requests_failed_total", "Generations that failed.", model))?,
            recent: std::sync::Mutex::new(VecDeque::new()),
        };
        let r = &m.registry;
        r.register(Box::new(m.running.clone()))?;
        r.register(Box::new(m.waiting.clone()))?;
        r.register(Box::new(m.kv_cache.clone()))?;
        r.register(Box::new(m.ttft.clone()))?;
        r.register(Box::new(m.tpot.clone()))?;
        r.register(Box::new(m.e2e.clone()))?;
        r.register(Box::new(m.prompt_tokens.clone()))?;
        r.register(Box::new(m.generation_tokens.clone()))?;
        r.register(Box::new(m.throughput.clone()))?;
        r.register(Box::new(m.success.clone()))?;
        r.register(Box::new(m.cancelled.clone()))?;
        r.register(Box::new(m.failed.clone()))?;
        Ok(m)
    }

    /// One token was generated.
    pub fn token(&self) {
        self.generation_tokens.inc();
    }

    fn throughput_now(&self) -> f64 {
        let now = Instant::now();
        let total = self.generation_tokens.get();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.push_back((now, total));
        while recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > THROUGHPUT_WINDOW)
        {
            recent.pop_front();
        }
        match recent.front() {
            Some((t, n)) if now.duration_since(*t) >= Duration::from_millis(500) => {
                (total - n) as f64 / now.duration_since(*t).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Render the page with the current in-flight gauges.
    pub fn render(&self, now: Snapshot) -> String {
        self.running.set(now.running as i64);
        self.waiting.set(now.waiting as i64);
        self.kv_cache.set(now.kv_cache_usage);
        self.throughput.set(self.throughput_now());
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vllm_names() {
        let m = Metrics::new("smol").unwrap();
        m.ttft.observe(0.2);
        m.token();
        m.success.with_label_values(&["stop"]).inc();
        let text = m.render(Snapshot {
            running: 2,
            waiting: 1,
            kv_cache_usage: 0.25,
        });
        assert!(
            text.contains("vllm:num_requests_running{model_name=\"smol\"} 2"),
            "{text}"
        );
        assert!(text.contains("vllm:num_requests_waiting{model_name=\"smol\"} 1"));
        assert!(text.contains("vllm:kv_cache_usage_perc{model_name=\"smol\"} 0.25"));
        assert!(text.contains("vllm:time_to_first_token_seconds_count{model_name=\"smol\"} 1"));
        assert!(text.contains("vllm:generation_tokens_total{model_name=\"smol\"} 1"));
        assert!(text.contains(
            "vllm:request_success_total{finished_reason=\"stop\",model_name=\"smol\"} 1"
        ));
    }
}
