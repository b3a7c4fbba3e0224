//! OpenTelemetry traces: one span per LLM request, exported over OTLP/HTTP (protobuf).
//!
//! Where to start: [`Tracer`] (built at start-up from `[telemetry]` when an endpoint is set;
//! `AppState::tracer`). The proxy begins a span when an LLM request arrives
//! (`proxy::trace`), reading the client's W3C `traceparent` ([`context`]); the [`Sampler`]
//! decides whether it is recorded; the worker gets a `traceparent` naming the gateway's span
//! as its parent (vLLM continues such traces); the finished [`span::SpanData`] goes to the
//! batching [`export`] thread, which encodes it ([`otlp`]) and posts it to the collector.
//!
//! The span follows the GenAI semantic conventions (`gen_ai.operation.name`,
//! `gen_ai.request.model`, `gen_ai.usage.input_tokens`/`output_tokens`,
//! `gen_ai.response.finish_reasons`) plus the gateway's own `sagellm.*` attributes (worker,
//! strategy, candidates, attempts, TTFT); attempts, failures and the first token are events.

pub mod context;
mod export;
mod otlp;
pub mod span;

use std::time::{Duration, Instant};

use context::{Parent, SpanId, TraceId};
use export::Exporter;
pub use export::SpanCounters;
pub use span::{RequestSpan, Value};

use crate::config::TelemetryConfig;

/// What decides without a parent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    /// Keep this share of traces, decided from the trace id (the same decision on every
    /// replica and in every service that uses the same rule).
    Ratio(f64),
}

/// `OTEL_TRACES_SAMPLER`: a root decision, and whether a caller's decision (its
/// `traceparent` flag) is followed instead when there is one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    pub root: Root,
    pub parent_based: bool,
}

impl Sampler {
    /// From a validated `telemetry.sampler` name and `sampler_arg`.
    pub fn from_config(name: &str, arg: f64) -> Self {
        let parent_based = name.starts_with("parentbased_");
        let root = match name.trim_start_matches("parentbased_") {
            "always_off" => Root::AlwaysOff,
            "traceidratio" => Root::Ratio(arg),
            _ => Root::AlwaysOn,
        };
        Self { root, parent_based }
    }

    pub fn sampled(&self, trace_id: &TraceId, parent: Option<&Parent>) -> bool {
        match (parent, self.parent_based) {
            (Some(p), true) => p.sampled,
            _ => match self.root {
                Root::AlwaysOn => true,
                Root::AlwaysOff => false,
                Root::Ratio(r) => {
                    let low = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or([0; 8]));
                    r >= 1.0 || (low as f64) < r * (u64::MAX as f64)
                }
            },
        }
    }
}

/// The gateway's tracer: sampling and the exporter.
#[derive(Debug)]
pub struct Tracer {
    sampler: Sampler,
    exporter: Exporter,
}

fn random_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

fn random_span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

impl Tracer {
    /// The tracer for `cfg`: `Ok(None)` when no endpoint is set (tracing off). `roots` check
    /// an `https://` collector.
    pub fn start(
        cfg: &TelemetryConfig,
        roots: rustls::RootCertStore,
        counters: SpanCounters,
    ) -> Result<Option<Self>, String> {
        let Some(endpoint) = cfg.traces_endpoint.as_deref() else {
            return Ok(None);
        };
        let resource = otlp::Resource {
            attributes: vec![
                ("service.name", Value::Str(cfg.service_name.clone())),
                (
                    "service.version",
                    Value::Str(env!("CARGO_PKG_VERSION").into()),
                ),
                ("process.pid", Value::Int(i64::from(std::process::id()))),
                ("telemetry.sdk.name", Value::Str("sagellm-gateway".into())),
                ("telemetry.sdk.language", Value::Str("rust".into())),
            ],
            scope_name: "sagellm-gateway",
            scope_version: env!("CARGO_PKG_VERSION"),
        };
        let exporter = Exporter::start(cfg, endpoint, roots, resource, counters)?;
        tracing::info!(endpoint, service = %cfg.service_name, sampler = %cfg.sampler, "exporting traces over OTLP/HTTP");
        Ok(Some(Self {
            sampler: Sampler::from_config(&cfg.sampler, cfg.sampler_arg),
            exporter,
        }))
    }

    /// A span for a request that arrived at `start` with these trace headers, or `None` when
    /// it is not sampled (the client's headers then go to the worker unchanged).
    pub fn begin(
        &self,
        traceparent: Option<&str>,
        tracestate: Option<&str>,
        start: Instant,
    ) -> Option<RequestSpan> {
        let parent = traceparent.and_then(context::parse_traceparent);
        let trace_id = parent.as_ref().map_or_else(random_trace_id, |p| p.trace_id);
        if !self.sampler.sampled(&trace_id, parent.as_ref()) {
            return None;
        }
        // A `tracestate` belongs to the caller's trace: meaningless without its traceparent.
        let state = parent
            .as_ref()
            .and(tracestate)
            .and_then(context::clean_tracestate)
            .map(str::to_string);
        Some(RequestSpan::new(
            trace_id,
            random_span_id(),
            parent.map(|p| p.span_id),
            state,
            start,
        ))
    }

    /// Finish `span` at `end` and queue it for export.
    pub fn end(&self, span: RequestSpan, end: Instant) {
        self.exporter.submit(span.finish(end));
    }

    /// Export what is queued (at shutdown); waits at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        self.exporter.flush(timeout).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(sampled: bool) -> Parent {
        Parent {
            trace_id: [7; 16],
            span_id: [8; 8],
            sampled,
        }
    }

    #[test]
    fn samplers_follow_the_specification() {
        let on = Sampler::from_config("parentbased_always_on", 1.0);
        assert!(on.sampled(&[1; 16], None));
        assert!(
            !on.sampled(&[1; 16], Some(&parent(false))),
            "the caller said no"
        );
        let always = Sampler::from_config("always_on", 1.0);
        assert!(
            always.sampled(&[1; 16], Some(&parent(false))),
            "not parent-based"
        );
        let off = Sampler::from_config("parentbased_always_off", 1.0);
        assert!(!off.sampled(&[1; 16], None));
        assert!(off.sampled(&[1; 16], Some(&parent(true))));
        assert!(!Sampler::from_config("always_off", 1.0).sampled(&[1; 16], Some(&parent(true))));
    }

    #[test]
    fn a_ratio_keeps_about_its_share_decided_by_the_trace_id() {
        let s = Sampler::from_config("traceidratio", 0.25);
        let mut rng = fastrand::Rng::with_seed(7);
        let kept = (0..10_000)
            .filter(|_| s.sampled(&rng.u128(..).to_be_bytes(), None))
            .count();
        assert!((2_200..2_800).contains(&kept), "{kept}");
        let id = [0x42; 16];
        assert_eq!(s.sampled(&id, None), s.sampled(&id, None), "deterministic");
        assert!(!Sampler::from_config("traceidratio", 0.0).sampled(&id, None));
        assert!(Sampler::from_config("traceidratio", 1.0).sampled(&[0xff; 16], None));
    }
}
