//! The proxy: Pingora's phases for one request, in order.
//!
//! ```text
//! request_filter     local endpoints (/health, /v1/models) → read + validate the body →
//!                    unknown model 404 → large bodies go to `forward`, the rest to Pingora
//! upstream_peer      `select::pick`: eligible workers → policy → in-flight token
//! upstream_request_filter   Host of the worker
//! upstream_response_*       status, TTFT, usage (`observe`), response headers
//! fail_to_connect / error_while_proxy   release the worker, record the failure, retry on
//!                    another worker while nothing reached the client
//! fail_to_proxy      the final error, in OpenAI's shape (`error::GatewayError::render`)
//! logging            release the worker, record the outcome (stats, adaptive policy)
//! ```

pub mod body;
pub mod ctx;
pub mod forward;
pub mod local;
pub mod observe;
pub mod request;
pub mod respond;
pub mod route;
pub mod select;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};

use crate::error::GatewayError;
use crate::state::AppState;
use crate::worker::stats::Outcome;
use ctx::{BodyMode, RequestCtx};
use request::KeySources;
use route::{Endpoint, Route};

/// Response header naming the worker that served the request.
pub const WORKER_HEADER: http::HeaderName = http::HeaderName::from_static("x-sagellm-worker");

/// The Pingora application: one per gateway, shared by all requests.
pub struct Gateway {
    pub state: Arc<AppState>,
}

/// The caller's API key, from `Authorization: Bearer …` or `x-api-key`.
pub fn api_key(req: &RequestHeader) -> Option<&str> {
    if let Some(v) = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    req.headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl Gateway {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// Answer `err` to the client and end the request.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        err: GatewayError,
    ) -> Result<bool> {
        // A body still on the wire would be read as the next request: close instead.
        let close =
            body::framing(session).map(|f| f.has_body()).unwrap_or(true) && !session.is_body_done();
        ctx.local = true;
        respond::write_error(session, &err, ctx.flavor, close).await?;
        if close {
            body::drain(session).await;
        }
        ctx.error = Some(err);
        Ok(true)
    }

    /// Headers the gateway adds to every proxied response.
    fn decorate_response(&self, resp: &mut ResponseHeader, ctx: &RequestCtx) {
        if let Some(w) = &ctx.worker {
            let _ = resp.insert_header(WORKER_HEADER, w.id_header.clone());
        }
        if ctx.observer.sse {
            // Tell buffering reverse proxies in front of us (nginx) to pass events through.
            let _ = resp.insert_header("x-accel-buffering", "no");
            let _ = resp.insert_header("cache-control", "no-cache");
        }
    }

    /// An attempt failed before anything reached the client: release the worker and
    /// record the failure (a connect failure also counts against its health).
    fn record_attempt_failure(&self, ctx: &mut RequestCtx, connect: bool) {
        let Some(guard) = ctx.guard.take() else {
            return;
        };
        let w = guard.worker().clone();
        drop(guard);
        let outcome = Outcome {
            success: false,
            latency: ctx.dispatched_at.map(|t| t.elapsed()).unwrap_or_default(),
            ..Default::default()
        };
        w.stats.record(&outcome);
        self.state.policy.load().observe(&w, &outcome);
        if connect {
            let h = &self.state.config.load().health;
            let t = crate::worker::state::HealthThresholds {
                failures: h.failure_threshold,
                recoveries: h.recovery_threshold,
            };
            if let Some((from, to)) = w.health.record(false, t) {
                tracing::warn!(worker = %w.id, from = from.as_str(), to = to.as_str(), "worker state changed (connect failures)");
                self.state.publish_routable();
            }
        }
    }

    /// Read, validate and admit an LLM request. `Ok(true)` when it was answered here.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        endpoint: Endpoint,
    ) -> Result<bool> {
        let cfg = self.state.config.load_full();
        let (mode, bytes) = match body::read(session, &cfg.limits).await {
            Ok(v) => v,
            Err(e) => return self.reject(session, ctx, e).await,
        };
        let req = session.req_header();
        let keys = KeySources {
            session_header: req
                .headers
                .get("x-session-id")
                .and_then(|v| v.to_str().ok()),
            api_key: api_key(req),
            prefix_bytes: cfg.routing.consistent_hash.prefix_bytes,
        };
        ctx.info = match request::parse(endpoint, &bytes, keys) {
            Ok(info) => info,
            Err(e) => return self.reject(session, ctx, e).await,
        };
        ctx.hints.affinity = ctx.info.affinity;
        if let Some(m) = &ctx.info.model {
            if !self.state.pool.load().serves(m) {
                return self
                    .reject(session, ctx, GatewayError::ModelNotFound(m.clone()))
                    .await;
            }
        }
        match mode {
            BodyMode::Owned(body) => {
                forward::run(self, session, ctx, body).await;
                if let Some(e) = ctx.error.clone() {
                    if session.response_written().is_none() {
                        respond::write_error(session, &e, ctx.flavor, false).await?;
                    }
                }
                Ok(true)
            }
            mode => {
                ctx.body = mode;
                Ok(false)
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    /// No downstream modules: Pingora's default adds a (disabled) compression module whose
    /// filters still run on every response. LLM responses are never compressed here (that
    /// would buffer SSE streams).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        ctx.route = route::classify(&req.method, req.uri.path());
        match ctx.route.clone() {
            Route::Llm(endpoint) => self.admit(session, ctx, endpoint).await,
            Route::Health => {
                ctx.local = true;
                let (status, body) = local::health(&self.state);
                respond::write_json(session, status, &body).await?;
                Ok(true)
            }
            Route::Models => {
                ctx.local = true;
                respond::write_json(session, 200, &local::models(&self.state)).await?;
                Ok(true)
            }
            Route::Model(id) => match local::model(&self.state, &id) {
                Some(m) => {
                    ctx.local = true;
                    respond::write_json(session, 200, &m).await?;
                    Ok(true)
                }
                None => {
                    self.reject(session, ctx, GatewayError::ModelNotFound(id))
                        .await
                }
            },
            Route::MethodNotAllowed => {
                let req = session.req_header();
                let e = GatewayError::MethodNotAllowed {
                    method: req.method.to_string(),
                    path: req.uri.path().to_string(),
                };
                self.reject(session, ctx, e).await
            }
            Route::NotFound => {
                let path: String = session.req_header().uri.path().chars().take(200).collect();
                self.reject(session, ctx, GatewayError::NotFound(path))
                    .await
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let worker = select::pick(&self.state, ctx).map_err(|e| {
            let status = e.status();
            ctx.error = Some(e);
            Error::explain(ErrorType::HTTPStatus(status), "no worker for this request")
        })?;
        let u = &self.state.config.load().upstream;
        let mut peer = HttpPeer::new(worker.spec.addr, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_millis(u.connect_timeout_ms));
        peer.options.read_timeout = Some(Duration::from_millis(u.read_timeout_ms));
        peer.options.idle_timeout = Some(Duration::from_millis(u.idle_timeout_ms));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(w) = &ctx.worker {
            upstream_request.insert_header(http::header::HOST, w.host_header.clone())?;
        }
        upstream_request.remove_header("expect");
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let content_type = upstream_response
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        ctx.observer
            .on_headers(upstream_response.status.as_u16(), content_type);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.decorate_response(upstream_response, ctx);
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(b) = body {
            ctx.observer.on_chunk(b);
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        tracing::warn!(peer = %peer, error = %e, attempt = ctx.attempts(), "connect to worker failed");
        self.record_attempt_failure(ctx, true);
        if ctx.attempts() < self.state.config.load().upstream.max_attempts {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let upstream_fault = matches!(e.esource(), ErrorSource::Upstream);
        if upstream_fault {
            self.record_attempt_failure(ctx, false);
        }
        let retry = upstream_fault
            && session.response_written().is_none()
            && matches!(ctx.body, BodyMode::Replayable | BodyMode::Empty)
            && !session.as_downstream().retry_buffer_truncated()
            && ctx.attempts() < self.state.config.load().upstream.max_attempts;
        if retry {
            tracing::warn!(peer = %peer, error = %e, attempt = ctx.attempts(), "worker failed before responding, retrying");
        }
        e.set_retry(retry);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = ctx.error.clone().or_else(|| match e.esource() {
            ErrorSource::Downstream => None, // the client went away or sent garbage
            _ => Some(match e.etype() {
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                    GatewayError::UpstreamTimeout(format!(
                        "the worker did not answer in time ({})",
                        e.etype().as_str()
                    ))
                }
                ErrorType::HTTPStatus(s) if *s < 500 => GatewayError::invalid(e.to_string(), None),
                _ if matches!(e.esource(), ErrorSource::Upstream) => GatewayError::UpstreamFailed(
                    format!("the worker failed: {}", e.etype().as_str()),
                ),
                _ => GatewayError::Internal(format!("gateway error: {}", e.etype().as_str())),
            }),
        });
        let Some(err) = err else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let code = err.status();
        if session.response_written().is_none() {
            if let Err(write_err) = respond::write_error(session, &err, ctx.flavor, true).await {
                tracing::debug!(error = %write_err, "could not send the error response");
            }
        }
        ctx.error = Some(err);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(guard) = ctx.guard.take() {
            let worker = guard.worker().clone();
            drop(guard);
            let status = ctx.observer.status.unwrap_or(0);
            let success =
                e.is_none() && ctx.error.is_none() && status != 0 && status < 500 && status != 429;
            let dispatched = ctx.dispatched_at.unwrap_or(ctx.start);
            let outcome = Outcome {
                success,
                latency: dispatched.elapsed(),
                ttft: ctx
                    .observer
                    .first_byte
                    .map(|t| t.saturating_duration_since(dispatched)),
                completion_tokens: ctx.observer.output_tokens(),
            };
            worker.stats.record(&outcome);
            self.state.policy.load().observe(&worker, &outcome);
            if success {
                worker.count_served();
            }
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        tracing::debug!(
            method = %session.req_header().method,
            path = session.req_header().uri.path(),
            status,
            worker = ctx.worker.as_ref().map(|w| w.id.as_str()).unwrap_or("-"),
            attempts = ctx.attempts(),
            ms = ctx.start.elapsed().as_millis() as u64,
            error = ctx.error.as_ref().map(|e| e.to_string()).or_else(|| e.map(|e| e.to_string())).unwrap_or_default(),
            "request"
        );
    }
}
