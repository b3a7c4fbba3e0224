//! The per-request context carried through Pingora's phases.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::observe::ResponseObserver;
use super::request::RequestInfo;
use super::route::Route;
use super::translate::Translation;
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

#[derive(Debug)]
pub struct RequestCtx {
    pub start: Instant,
    pub route: Route,
    pub flavor: ApiFlavor,
    pub info: RequestInfo,
    pub hints: RouteHints,
    pub body: BodyMode,
    /// Workers this request was sent to, in order (their uids).
    pub tried: Vec<u64>,
    /// The in-flight token of the current attempt; dropping it releases the worker.
    pub guard: Option<LoadGuard>,
    /// The worker of the last attempt (kept after the guard is released, for accounting).
    pub worker: Option<Arc<Worker>>,
    /// When the last attempt was dispatched (worker-side latency is measured from here).
    pub dispatched_at: Option<Instant>,
    /// How the breaker admitted the current attempt.
    pub admission: Option<Admission>,
    /// Counts this request among the gateway's in-flight LLM requests.
    pub active: Option<ActiveGuard>,
    /// The request goes to the internal admin service (not an LLM request).
    pub to_admin: bool,
    /// The error answered to the client, if the gateway answered one.
    pub error: Option<GatewayError>,
    pub observer: ResponseObserver,
    /// Answered by the gateway itself (no worker involved).
    pub local: bool,
    /// Set when the response is rewritten for the client (forces the gateway's own path).
    pub translation: Option<Translation>,
    /// Queue class (`X-Priority` / `priority`; higher first under the `priority` policy).
    pub priority: i64,
    /// Time-to-first-token objective (`X-SLO-TTFT-MS`, else the key's or the default).
    pub slo_ms: Option<u64>,
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            route: Route::default(),
            flavor: ApiFlavor::OpenAi,
            info: RequestInfo::default(),
            hints: RouteHints::default(),
            body: BodyMode::Empty,
            tried: Vec::new(),
            guard: None,
            worker: None,
            dispatched_at: None,
            admission: None,
            active: None,
            to_admin: false,
            error: None,
            observer: ResponseObserver::default(),
            local: false,
            translation: None,
            priority: 0,
            slo_ms: None,
        }
    }
}

impl RequestCtx {
    /// Release the current attempt's worker (idempotent).
    pub fn release(&mut self) {
        self.guard = None;
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.tried.len() as u32
    }
}
