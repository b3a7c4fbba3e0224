//! Series rebuilt from the worker pool at every scrape: the pool is the single source of
//! truth, so a removed worker's series disappear with it and nothing is updated twice.
//! Counters are re-set from the workers' own monotonic totals.

use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::routing::Strategy;
use crate::state::AppState;
use crate::worker::breaker::BreakerState;

pub struct FleetMetrics {
    active: IntGauge,
    healthy: IntGauge,
    workers: IntGauge,
    uptime: Gauge,
    strategy: IntGaugeVec,
    running: GaugeVec,
    waiting: GaugeVec,
    kv_cache: GaugeVec,
    inflight: IntGaugeVec,
    up: IntGaugeVec,
    latency: GaugeVec,
    ttft: GaugeVec,
    served: IntCounterVec,
    errors: IntCounterVec,
    breaker_state: IntGaugeVec,
    breaker_failures: IntCounterVec,
    breaker_opened: IntCounterVec,
    selections: IntCounterVec,
    prefix_hit_rate: GaugeVec,
    index_entries: IntGauge,
    index_capacity: IntGauge,
    prefix_prompt: IntCounter,
    prefix_matched: IntCounter,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl FleetMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let url = &["url"];
        let m = Self {
            active: IntGauge::with_opts(opts(
                "llm_gateway_active_requests",
                "LLM requests in flight through the gateway",
            ))?,
            healthy: IntGauge::with_opts(opts(
                "llm_gateway_healthy_workers",
                "Workers that can take requests (READY, not draining, awake)",
            ))?,
            workers: IntGauge::with_opts(opts(
                "llm_gateway_workers",
                "Workers in the pool, in any state",
            ))?,
            uptime: Gauge::with_opts(opts(
                "llm_gateway_uptime_seconds",
                "Seconds since the gateway started",
            ))?,
            strategy: IntGaugeVec::new(
                opts(
                    "llm_gateway_routing_strategy",
                    "The routing strategy in use (1 for the active one)",
                ),
                &["strategy"],
            )?,
            running: GaugeVec::new(
                opts(
                    "llm_worker_running_requests",
                    "Requests running on the worker (scraped, corrected by recent dispatches)",
                ),
                url,
            )?,
            waiting: GaugeVec::new(
                opts(
                    "llm_worker_waiting_requests",
                    "Requests waiting on the worker (scraped, corrected by recent dispatches)",
                ),
                url,
            )?,
            kv_cache: GaugeVec::new(
                opts(
                    "llm_worker_kv_cache_usage",
                    "KV-cache usage of the worker, 0..1 (scraped)",
                ),
                url,
            )?,
            inflight: IntGaugeVec::new(
                opts(
                    "llm_worker_inflight_requests",
                    "Requests this gateway has in flight on the worker",
                ),
                url,
            )?,
            up: IntGaugeVec::new(
                opts(
                    "llm_worker_up",
                    "1 when the worker can take requests, else 0",
                ),
                url,
            )?,
            latency: GaugeVec::new(
                opts(
                    "llm_worker_latency_ewma_seconds",
                    "EWMA of the worker's request latency",
                ),
                url,
            )?,
            ttft: GaugeVec::new(
                opts(
                    "llm_worker_ttft_ewma_seconds",
                    "EWMA of the worker's time to first token",
                ),
                url,
            )?,
            served: IntCounterVec::new(
                opts(
                    "llm_worker_requests_total",
                    "Requests the worker answered successfully",
                ),
                url,
            )?,
            errors: IntCounterVec::new(
                opts(
                    "llm_worker_errors_total",
                    "Failed attempts on the worker (connect errors, resets, timeouts, 5xx, 429)",
                ),
                url,
            )?,
            breaker_state: IntGaugeVec::new(
                opts(
                    "llm_circuit_breaker_state",
                    "Circuit breaker state: 0 closed, 1 open, 2 half-open",
                ),
                url,
            )?,
            breaker_failures: IntCounterVec::new(
                opts(
                    "llm_circuit_breaker_failures_total",
                    "Failures recorded by the worker's circuit breaker",
                ),
                url,
            )?,
            breaker_opened: IntCounterVec::new(
                opts(
                    "llm_circuit_breaker_opened_total",
                    "Times the worker's circuit breaker opened",
                ),
                url,
            )?,
            selections: IntCounterVec::new(
                opts(
                    "llm_routing_selections_total",
                    "Times the routing policy chose the worker, by strategy",
                ),
                &["url", "strategy"],
            )?,
            prefix_hit_rate: GaugeVec::new(
                opts(
                    "llm_worker_prefix_cache_hit_rate",
                    "The worker's prefix-cache hit rate since it started, 0..1 (scraped vllm:prefix_cache_*_total)",
                ),
                url,
            )?,
            index_entries: IntGauge::with_opts(opts(
                "llm_gateway_prefix_index_entries",
                "Prompt-prefix chunks in the routing policy's prefix index",
            ))?,
            index_capacity: IntGauge::with_opts(opts(
                "llm_gateway_prefix_index_capacity",
                "The most prompt-prefix chunks the prefix index holds",
            ))?,
            prefix_prompt: IntCounter::with_opts(opts(
                "llm_gateway_prefix_prompt_tokens_total",
                "Estimated prompt tokens of requests routed by a prefix-aware policy",
            ))?,
            prefix_matched: IntCounter::with_opts(opts(
                "llm_gateway_prefix_matched_tokens_total",
                "Of those, tokens of a prefix the chosen worker had been sent before (matched / prompt = the matched-prefix ratio)",
            ))?,
        };
        r.register(Box::new(m.active.clone()))?;
        r.register(Box::new(m.healthy.clone()))?;
        r.register(Box::new(m.workers.clone()))?;
        r.register(Box::new(m.uptime.clone()))?;
        r.register(Box::new(m.strategy.clone()))?;
        r.register(Box::new(m.running.clone()))?;
        r.register(Box::new(m.waiting.clone()))?;
        r.register(Box::new(m.kv_cache.clone()))?;
        r.register(Box::new(m.inflight.clone()))?;
        r.register(Box::new(m.up.clone()))?;
        r.register(Box::new(m.latency.clone()))?;
        r.register(Box::new(m.ttft.clone()))?;
        r.register(Box::new(m.served.clone()))?;
        r.register(Box::new(m.errors.clone()))?;
        r.register(Box::new(m.breaker_state.clone()))?;
        r.register(Box::new(m.breaker_failures.clone()))?;
        r.register(Box::new(m.breaker_opened.clone()))?;
        r.register(Box::new(m.selections.clone()))?;
        r.register(Box::new(m.prefix_hit_rate.clone()))?;
        r.register(Box::new(m.index_entries.clone()))?;
        r.register(Box::new(m.index_capacity.clone()))?;
        r.register(Box::new(m.prefix_prompt.clone()))?;
        r.register(Box::new(m.prefix_matched.clone()))?;
        Ok(m)
    }

    /// Reset the per-worker families and fill them from the current pool.
    pub fn refresh(&self, state: &AppState) {
        let pool = state.pool.load();
        let cfg = state.config.load();
        let breaker = cfg.circuit_breaker.settings();
        self.active.set(state.active_requests() as i64);
        self.healthy.set(pool.routable_count() as i64);
        self.workers.set(pool.workers.len() as i64);
        self.uptime.set(state.started.elapsed().as_secs_f64());
        let policy = state.policy.load();
        let current = policy.strategy();
        let index = policy.prefix_index();
        self.index_entries
            .set(index.map_or(0, |i| i.entries()) as i64);
        self.index_capacity
            .set(index.map_or(0, |i| i.capacity()) as i64);
        let (matched, prompt) = index.map_or((0, 0), |i| i.routed_tokens());
        self.prefix_prompt.reset();
        self.prefix_prompt.inc_by(prompt);
        self.prefix_matched.reset();
        self.prefix_matched.inc_by(matched);
        for &s in Strategy::ALL {
            self.strategy
                .with_label_values(&[s.as_str()])
                .set((s == current) as i64);
        }
        self.running.reset();
        self.waiting.reset();
        self.kv_cache.reset();
        self.inflight.reset();
        self.up.reset();
        self.latency.reset();
        self.ttft.reset();
        self.served.reset();
        self.errors.reset();
        self.breaker_state.reset();
        self.breaker_failures.reset();
        self.breaker_opened.reset();
        self.selections.reset();
        self.prefix_hit_rate.reset();
        for w in &pool.workers {
            let url = [w.spec.url.as_str()];
            let load = w.load.view();
            let stats = w.stats.view();
            let b = w.breaker.view(&breaker);
            self.running.with_label_values(&url).set(load.running);
            self.waiting.with_label_values(&url).set(load.waiting);
            self.kv_cache.with_label_values(&url).set(load.kv_cache);
            if let Some(rate) = load.prefix_cache_hit_rate {
                self.prefix_hit_rate.with_label_values(&url).set(rate);
            }
            self.inflight
                .with_label_values(&url)
                .set(load.inflight as i64);
            self.up
                .with_label_values(&url)
                .set(w.is_eligible(&breaker) as i64);
            if let Some(ms) = stats.latency_ms {
                self.latency.with_label_values(&url).set(ms / 1000.0);
            }
            if let Some(ms) = stats.ttft_ms {
                self.ttft.with_label_values(&url).set(ms / 1000.0);
            }
            self.served.with_label_values(&url).inc_by(w.served());
            self.errors.with_label_values(&url).inc_by(stats.errors);
            self.breaker_state
                .with_label_values(&url)
                .set(match b.state {
                    BreakerState::Closed => 0,
                    BreakerState::Open => 1,
                    BreakerState::HalfOpen => 2,
                });
            self.breaker_failures
                .with_label_values(&url)
                .inc_by(b.failures_total);
            self.breaker_opened
                .with_label_values(&url)
                .inc_by(b.opened_total);
            for (s, n) in Strategy::ALL.iter().zip(w.selections()) {
                if n > 0 {
                    self.selections
                        .with_label_values(&[url[0], s.as_str()])
                        .inc_by(n);
                }
            }
        }
    }
}
