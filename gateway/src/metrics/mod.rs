//! The gateway's Prometheus metrics (`GET /metrics`), in a private registry.
//!
//! Two kinds of series:
//! - request series ([`RequestMetrics`]), updated on the request path with pre-resolved
//!   handles (no label hashing per request): requests, latency, TTFT, time per output token,
//!   tokens, retries, rate-limiter decisions;
//! - fleet series ([`fleet`]), rebuilt from the worker pool at every scrape: per-worker load,
//!   breaker state and counters. A removed worker is simply absent from the next scrape.
//!
//! Labels are bounded: route (a fixed set), status class, worker URL (from the config or
//! the management API), strategy tag, rate-limit scope, a quota's configured key name. Never a
//! user string.

pub mod discovery;
pub mod fleet;
pub mod queue;
pub mod quota;
pub mod request;
pub mod shared;

use parking_lot::Mutex;
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub use request::{Buckets, RequestMetrics, RequestRecord, RouteLabel, TrafficTotals};

use crate::state::AppState;

/// The registry and its families.
pub struct Metrics {
    registry: Registry,
    pub requests: RequestMetrics,
    fleet: fleet::FleetMetrics,
    pub queue: queue::QueueMetrics,
    shared: shared::SharedMetrics,
    discovery: discovery::DiscoveryMetrics,
    quota: quota::QuotaMetrics,
    /// `llm_gateway_tls_certificate_reloads_total{result="ok"|"error"}` (see `tls::Rotation`).
    pub tls_reloads: IntCounterVec,
    /// `llm_gateway_trace_spans_total{result="exported"|"failed"|"dropped"}` (see `otel`).
    pub trace_spans: IntCounterVec,
    /// `llm_stream_failovers_total{reason,result}`: streams whose worker broke off mid-way,
    /// by why (broken, stalled, worker_error) and what followed (resumed on another worker,
    /// completed here, failed: ended with an error event).
    pub stream_failovers: IntCounterVec,
    /// `llm_gateway_runtime_tasks`: tasks alive on the proxy's tokio runtime (the one that
    /// answers the scrape), set at each scrape; a leak shows as growth (`scripts/soak.sh`).
    runtime_tasks: IntGauge,
    /// Serialises scrapes: the fleet families are reset and refilled for each one.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        // Registration only fails on duplicate names, which the families below do not have.
        let requests = RequestMetrics::register(&registry).expect("request metric families");
        let fleet = fleet::FleetMetrics::register(&registry).expect("fleet metric families");
        let queue = queue::QueueMetrics::register(&registry).expect("queue metric families");
        let shared = shared::SharedMetrics::register(&registry).expect("shared metric families");
        let discovery =
            discovery::DiscoveryMetrics::register(&registry).expect("discovery metric families");
        let quota = quota::QuotaMetrics::register(&registry).expect("quota metric families");
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "llm_gateway_tls_certificate_reloads_total",
                "Reloads of the listener's TLS certificate after its files changed, by result",
            ),
            &["result"],
        )
        .expect("valid metric options");
        registry
            .register(Box::new(tls_reloads.clone()))
            .expect("TLS metric family");
        let trace_spans = IntCounterVec::new(
            Opts::new(
                "llm_gateway_trace_spans_total",
                "Request spans handed to the OTLP exporter, by result (exported, failed: the collector did not take them, dropped: the export queue was full)",
            ),
            &["result"],
        )
        .expect("valid metric options");
        registry
            .register(Box::new(trace_spans.clone()))
            .expect("trace metric family");
        let stream_failovers = IntCounterVec::new(
            Opts::new(
                "llm_stream_failovers_total",
                "Streams whose worker broke off or stalled mid-way, by reason (broken, stalled, worker_error) and result (resumed on another worker, completed, failed)",
            ),
            &["reason", "result"],
        )
        .expect("valid metric options");
        registry
            .register(Box::new(stream_failovers.clone()))
            .expect("failover metric family");
        let runtime_tasks = IntGauge::new(
            "llm_gateway_runtime_tasks",
            "Tasks alive on the proxy's tokio runtime (the one answering this scrape)",
        )
        .expect("valid metric options");
        registry
            .register(Box::new(runtime_tasks.clone()))
            .expect("runtime metric family");
        Self {
            runtime_tasks,
            stream_failovers,
            tls_reloads,
            trace_spans,
            registry,
            requests,
            fleet,
            queue,
            shared,
            discovery,
            quota,
            scrape: Mutex::new(()),
        }
    }

    /// The counters the trace exporter updates.
    pub fn span_counters(&self) -> crate::otel::SpanCounters {
        let c = |r: &str| self.trace_spans.with_label_values(&[r]);
        crate::otel::SpanCounters {
            exported: c("exported"),
            failed: c("failed"),
            dropped: c("dropped"),
        }
    }

    /// The exposition text (Prometheus text format 0.0.4).
    pub fn render(&self, state: &AppState) -> String {
        let _one_at_a_time = self.scrape.lock();
        self.fleet.refresh(state);
        self.queue.refresh(&state.scheduler);
        self.shared.refresh(&state.shared);
        self.discovery.refresh(state);
        self.quota.refresh(&state.quotas.load());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .set(i64::try_from(rt.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        }
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
