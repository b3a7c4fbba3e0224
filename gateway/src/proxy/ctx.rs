//! The per-request context carried through Pingora's phases.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::observe::ResponseObserver;
use super::request::RequestInfo;
use super::route::Route;
use crate::config::Config;
use crate::edge::Translation;
use crate::error::{ApiFlavor, GatewayError};
use crate::routing::RouteHints;
use crate::state::ActiveGuard;
use crate::worker::breaker::Admission;
use crate::worker::load::LoadGuard;
use crate::worker::Worker;

/// How the request body travels to the worker.
#[derive(Debug, Default)]
pub enum BodyMode {
    /// No body (GET, empty POST).
    #[default]
    Empty,
    /// Read whole into Pingora's retry buffer (≤ 64 KiB): Pingora forwards and can replay it.
    Replayable,
    /// Read whole by the gateway (larger than the retry buffer, or chunked): forwarded on the
    /// gateway's own client path, replayable too.
    Owned(Bytes),
}

/// What kind of request this is, decided in `request_filter`; the later phases branch on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// Answered by the gateway itself: `/health`, `/metrics`, the model list, and every
    /// request refused before it reached a worker.
    #[default]
    Local,
    /// Forwarded to the internal admin service (management API, dashboard, sessions).
    Admin,
    /// An LLM request admitted for a worker.
    Llm,
}

#[derive(Debug)]
pub struct RequestCtx {
    pub start: Instant,
    /// The configuration this request sees from start to end (one snapshot, taken when the
    /// request arrived; a reload meanwhile applies to the next request).
    pub config: Arc<Config>,
    pub kind: Kind,
    pub route: Route,
    pub flavor: ApiFlavor,
    pub info: RequestInfo,
    pub hints: RouteHints,
    pub body: BodyMode,
    /// Workers this request was sent to, in order (their uids).
    pub tried: Vec<u64>,
    /// Workers (uids) the next attempt must not go to either: those that cannot continue a
    /// stream that moves mid-way (`resume`).
    pub avoid: Vec<u64>,
    /// The in-flight token of the current attempt; dropping it releases the worker.
    pub guard: Option<LoadGuard>,
    /// The worker of the last attempt (kept after the guard is released, for accounting).
    pub worker: Option<Arc<Worker>>,
    /// When the last attempt was dispatched (worker-side latency is measured from here).
    pub dispatched_at: Option<Instant>,
    /// When the last attempt's request went to the worker, and when the worker's last response
    /// byte came back: the time outside them is the gateway's overhead.
    pub sent_at: Option<Instant>,
    pub upstream_done: Option<Instant>,
    /// The routing policy's estimate of the prompt tokens the last attempt's worker had to
    /// prefill (not cached there), when it made one.
    pub prefill_tokens: Option<u32>,
    /// The current attempt's worker answered with an overload signal (`retry::observe_overload`).
    pub overloaded: bool,
    /// How the breaker admitted the current attempt.
    pub admission: Option<Admission>,
    /// Counts this request among the gateway's in-flight LLM requests.
    pub active: Option<ActiveGuard>,
    /// The error answered to the client, if the gateway answered one.
    pub error: Option<GatewayError>,
    pub observer: ResponseObserver,
    /// Set when the response is rewritten for the client (forces the gateway's own path).
    pub translation: Option<Translation>,
    /// Queue class (`X-Priority` / `priority`; higher first under the `priority` policy).
    pub priority: i64,
    /// Time-to-first-token objective (`X-SLO-TTFT-MS`, else the key's or the default).
    pub slo_ms: Option<u64>,
    /// The request's OpenTelemetry span, when tracing is on and it is sampled.
    pub span: Option<crate::otel::RequestSpan>,
    /// The key's quota ticket, settled in `logging` with the response's usage.
    pub quota: Option<crate::quota::Ticket>,
}

impl Default for RequestCtx {
    /// A context under the default configuration (tests).
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl RequestCtx {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            start: Instant::now(),
            config,
            kind: Kind::Local,
            route: Route::default(),
            flavor: ApiFlavor::OpenAi,
            info: RequestInfo::default(),
            hints: RouteHints::default(),
            body: BodyMode::Empty,
            tried: Vec::new(),
            avoid: Vec::new(),
            guard: None,
            worker: None,
            dispatched_at: None,
            sent_at: None,
            upstream_done: None,
            prefill_tokens: None,
            overloaded: false,
            admission: None,
            active: None,
            error: None,
            observer: ResponseObserver::default(),
            translation: None,
            priority: 0,
            slo_ms: None,
            span: None,
            quota: None,
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.tried.len() as u32
    }
}
