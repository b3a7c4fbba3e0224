//! Series updated on the request path. Every labelled child is resolved once at start, so a
//! request costs a few atomic adds and no label hashing or locking.

use std::time::Duration;

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};

use crate::limits::Scope;

/// The bounded `route` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteLabel {
    Chat,
    Completions,
    Embeddings,
    Messages,
    OtherV1,
    Models,
    Health,
    Metrics,
    Admin,
    Other,
}

impl RouteLabel {
    pub const ALL: [RouteLabel; 10] = [
        RouteLabel::Chat,
        RouteLabel::Completions,
        RouteLabel::Embeddings,
        RouteLabel::Messages,
        RouteLabel::OtherV1,
        RouteLabel::Models,
        RouteLabel::Health,
        RouteLabel::Metrics,
        RouteLabel::Admin,
        RouteLabel::Other,
    ];

    /// Routes forwarded to workers.
    pub fn is_llm(self) -> bool {
        matches!(
            self,
            RouteLabel::Chat
                | RouteLabel::Completions
                | RouteLabel::Embeddings
                | RouteLabel::Messages
                | RouteLabel::OtherV1
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RouteLabel::Chat => "chat",
            RouteLabel::Completions => "completions",
            RouteLabel::Embeddings => "embeddings",
            RouteLabel::Messages => "messages",
            RouteLabel::OtherV1 => "other_v1",
            RouteLabel::Models => "models",
            RouteLabel::Health => "health",
            RouteLabel::Metrics => "metrics",
            RouteLabel::Admin => "admin",
            RouteLabel::Other => "other",
        }
    }
}

/// The `status` label: the class of the status answered, `none` when the client left first.
const STATUS_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "none"];

fn status_class(status: u16) -> usize {
    match status {
        200..=299 => 0,
        300..=399 => 1,
        400..=499 => 2,
        500..=599 => 3,
        _ => 4,
    }
}

/// What one finished request contributes.
#[derive(Clone, Debug, Default)]
pub struct RequestRecord {
    pub route: Option<RouteLabel>,
    /// Status answered to the client (0 = none).
    pub status: u16,
    pub latency: Duration,
    /// Time to the first byte of a streamed response (streams only).
    pub ttft: Option<Duration>,
    /// Mean time per output token after the first (streams with ≥ 2 tokens).
    pub tpot: Option<Duration>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Time spent in the gateway: arrival → request sent to the worker, plus the worker's
    /// last byte → response finished (requests one worker answered without a retry).
    pub overhead: Option<Duration>,
}

/// Cumulative counts of a histogram: `cumulative[i]` observations were ≤ `bounds[i]`, and
/// `count` in all (the `+Inf` bucket).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    pub bounds: Vec<f64>,
    pub cumulative: Vec<u64>,
    pub count: u64,
}

impl Buckets {
    pub fn of(h: &Histogram) -> Self {
        use prometheus::core::Metric;
        let m = h.metric();
        let h = m.get_histogram();
        Self {
            bounds: h.get_bucket().iter().map(|b| b.upper_bound()).collect(),
            cumulative: h
                .get_bucket()
                .iter()
                .map(|b| b.cumulative_count())
                .collect(),
            count: h.get_sample_count(),
        }
    }

    /// Add another histogram with the same buckets (an empty `self` takes `other`'s).
    pub fn add(&mut self, other: &Buckets) {
        if self.bounds.is_empty() && self.count == 0 {
            *self = other.clone();
            return;
        }
        for (a, b) in self.cumulative.iter_mut().zip(&other.cumulative) {
            *a += b;
        }
        self.count += other.count;
    }
}

/// What the LLM routes answered since start (see [`RequestMetrics::totals`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrafficTotals {
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    /// 429s from the gateway's rate limits.
    pub rejected: u64,
    pub completion_tokens: u64,
    /// End-to-end latency in seconds, all LLM routes together.
    pub latency: Buckets,
    /// Time to first byte of streamed responses, in seconds.
    pub ttft: Buckets,
}

pub struct RequestMetrics {
    /// `[route][status class]`.
    requests: Vec<[IntCounter; 5]>,
    latency: Vec<Histogram>,
    ttft: Histogram,
    tpot: Histogram,
    overhead: Histogram,
    retries: IntCounter,
    prompt_tokens: IntCounter,
    completion_tokens: IntCounter,
    limiter_checked: IntCounter,
    limiter_rejected_user: IntCounter,
    limiter_rejected_global: IntCounter,
}

impl RequestMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "llm_gateway_requests_total",
                "Requests answered by the gateway, by route and status class",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "llm_gateway_request_latency_seconds",
                "Time from the request's arrival to the end of its response, by route",
            )
            .buckets(exponential_buckets(0.001, 2.0, 19)?), // 1 ms … 262 s
            &["route"],
        )?;
        let ttft = Histogram::with_opts(
            HistogramOpts::new(
                "llm_gateway_time_to_first_token_seconds",
                "Streamed responses: time from dispatch to the worker to the first byte back",
            )
            .buckets(exponential_buckets(0.005, 2.0, 14)?), // 5 ms … 41 s
        )?;
        let tpot = Histogram::with_opts(
            HistogramOpts::new(
                "llm_gateway_time_per_output_token_seconds",
                "Streamed responses: mean time per output token after the first",
            )
            .buckets(exponential_buckets(0.001, 2.0, 13)?), // 1 ms … 4 s
        )?;
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "llm_gateway_overhead_seconds",
                "Time spent in the gateway per proxied request: arrival to the request sent to \
                 the worker, plus the worker's last byte to the response's end",
            )
            .buckets(exponential_buckets(0.000_05, 2.0, 16)?), // 50 µs … 1.6 s
        )?;
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let retries = counter(
            "llm_gateway_retries_total",
            "Attempts retried on another worker",
        )?;
        let prompt_tokens = counter(
            "llm_gateway_prompt_tokens_total",
            "Prompt tokens reported by workers in usage",
        )?;
        let completion_tokens = counter(
            "llm_gateway_completion_tokens_total",
            "Completion tokens reported by workers (or counted stream events)",
        )?;
        let limiter_checked = counter(
            "llm_rate_limiter_requests_total",
            "Requests checked by the rate limiter",
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "llm_rate_limiter_rejected_total",
                "Requests rejected by the rate limiter (429), by bucket",
            ),
            &["scope"],
        )?;
        r.register(Box::new(requests.clone()))?;
        r.register(Box::new(latency.clone()))?;
        r.register(Box::new(ttft.clone()))?;
        r.register(Box::new(tpot.clone()))?;
        r.register(Box::new(overhead.clone()))?;
        r.register(Box::new(retries.clone()))?;
        r.register(Box::new(prompt_tokens.clone()))?;
        r.register(Box::new(completion_tokens.clone()))?;
        r.register(Box::new(limiter_checked.clone()))?;
        r.register(Box::new(rejected.clone()))?;
        Ok(Self {
            requests: RouteLabel::ALL
                .iter()
                .map(|r| STATUS_CLASSES.map(|c| requests.with_label_values(&[r.as_str(), c])))
                .collect(),
            latency: RouteLabel::ALL
                .iter()
                .map(|r| latency.with_label_values(&[r.as_str()]))
                .collect(),
            ttft,
            tpot,
            overhead,
            retries,
            prompt_tokens,
            completion_tokens,
            limiter_checked,
            limiter_rejected_user: rejected.with_label_values(&["user"]),
            limiter_rejected_global: rejected.with_label_values(&["global"]),
        })
    }

    pub fn record(&self, r: &RequestRecord) {
        let Some(route) = r.route else { return };
        let i = route as usize; // `ALL` is in declaration order (tested)
        self.requests[i][status_class(r.status)].inc();
        self.latency[i].observe(r.latency.as_secs_f64());
        if let Some(t) = r.ttft {
            self.ttft.observe(t.as_secs_f64());
        }
        if let Some(t) = r.overhead {
            self.overhead.observe(t.as_secs_f64());
        }
        if let Some(t) = r.tpot {
            self.tpot.observe(t.as_secs_f64());
        }
        if r.retries > 0 {
            self.retries.inc_by(r.retries);
        }
        if r.prompt_tokens > 0 {
            self.prompt_tokens.inc_by(r.prompt_tokens);
        }
        if r.completion_tokens > 0 {
            self.completion_tokens.inc_by(r.completion_tokens);
        }
    }

    /// LLM requests answered since start, and how many of them got a 4xx/5xx.
    pub fn llm_totals(&self) -> (u64, u64) {
        let mut total = 0;
        let mut errors = 0;
        for (route, by_class) in RouteLabel::ALL.iter().zip(&self.requests) {
            if route.is_llm() {
                total += by_class.iter().map(|c| c.get()).sum::<u64>();
                errors += by_class[2].get() + by_class[3].get();
            }
        }
        (total, errors)
    }

    /// Cumulative totals of the LLM routes, for the dashboard's per-second samples.
    pub fn totals(&self) -> TrafficTotals {
        let mut t = TrafficTotals {
            rejected: self.limiter_rejected_user.get() + self.limiter_rejected_global.get(),
            completion_tokens: self.completion_tokens.get(),
            ttft: Buckets::of(&self.ttft),
            ..Default::default()
        };
        for (i, route) in RouteLabel::ALL.iter().enumerate() {
            if !route.is_llm() {
                continue;
            }
            let by_class = &self.requests[i];
            t.requests += by_class.iter().map(|c| c.get()).sum::<u64>();
            t.client_errors += by_class[2].get();
            t.server_errors += by_class[3].get();
            t.latency.add(&Buckets::of(&self.latency[i]));
        }
        t
    }

    /// A rate-limiter decision: admitted (`None`) or rejected by `scope`.
    pub fn limiter(&self, rejected: Option<Scope>) {
        self.limiter_checked.inc();
        match rejected {
            Some(Scope::User) => self.limiter_rejected_user.inc(),
            Some(Scope::Global) => self.limiter_rejected_global.inc(),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_indexed_by_declaration_order() {
        for (i, r) in RouteLabel::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(STATUS_CLASSES[status_class(200)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(429)], "4xx");
        assert_eq!(STATUS_CLASSES[status_class(503)], "5xx");
        assert_eq!(STATUS_CLASSES[status_class(0)], "none");
    }
}
