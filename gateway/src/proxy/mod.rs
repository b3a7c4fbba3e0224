//! The proxy: Pingora's phases for one request, in order.
//!
//! ```text
//! request_filter     the route (`route`), then `decide`: local endpoints (/health,
//!                    /metrics, /v1/models) answered here, admin paths → the admin service,
//!                    LLM paths through the admission pipeline (`admit`: open → authorize →
//!                    reserve → read body → translate → parse → queue class → limits → model
//!                    → rewrite); any refusal is answered in one place (`Gateway::reject`).
//!                    Large, rewritten and translated bodies go to `forward`, the rest to
//!                    Pingora
//! upstream_peer      backoff before a retry → `select::dispatch`: the gateway's queue, then
//!                    eligible workers (routable, breaker, model, not tried) → policy → worker
//!                    rate limit → in-flight token
//! upstream_request_filter   Host of the worker; the request leaves (overhead clock)
//! upstream_response_filter  status; 429/502/503/504 before any byte → retry elsewhere
//! upstream_response_body_filter   TTFT, usage (`observe`)
//! fail_to_connect / error_while_proxy   end the attempt (`account`), retry on another worker
//!                    while nothing reached the client (`retry`)
//! fail_to_proxy      the final error in OpenAI's shape, or an SSE error event mid-stream
//! logging            end the last attempt (stats, breaker, adaptive policy), metrics
//! ```
//!
//! The request's context ([`ctx::RequestCtx`]) carries one config snapshot for the whole
//! request and its [`ctx::Kind`] (local, admin, LLM), which the later phases branch on.

mod account;
mod admit;
mod assemble;
mod body;
mod ctx;
mod decide;
mod forward;
mod local;
pub(crate) mod observe;
pub(crate) mod request;
mod respond;
mod resume;
mod retry;
pub(crate) mod route;
mod select;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};

use crate::error::GatewayError;
use crate::state::AppState;
use account::Verdict;
use ctx::Kind;
pub(crate) use ctx::RequestCtx;
use decide::Flow;
use route::{Endpoint, Route};

/// Response header naming the worker that served the request.
pub const WORKER_HEADER: http::HeaderName = http::HeaderName::from_static("x-sagellm-worker");

/// The Pingora application: one per gateway, shared by all requests.
pub(crate) struct Gateway {
    pub state: Arc<AppState>,
    /// The internal admin service (management API, dashboard) on loopback.
    pub admin_addr: std::net::SocketAddr,
}

impl Gateway {
    pub fn new(state: Arc<AppState>, admin_addr: std::net::SocketAddr) -> Self {
        Self { state, admin_addr }
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
        ctx.kind = Kind::Local;
        respond::write_error(session, &err, ctx.flavor, close).await?;
        if close {
            body::drain(session).await;
        }
        ctx.error = Some(err);
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.state.config.load_full())
    }

    /// No downstream modules: Pingora's default adds a (disabled) compression module whose
    /// filters still run on every response. LLM responses are never compressed here (that
    /// would buffer SSE streams).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        ctx.route = route::classify(&req.method, req.uri.path());
        if ctx.route == Route::Llm(Endpoint::Messages) {
            ctx.flavor = crate::error::ApiFlavor::Anthropic;
        }
        if matches!(ctx.route, Route::Llm(_)) {
            trace::begin(&self.state, req, ctx);
        }
        match decide::decide(self, session, ctx).await {
            Ok(Flow::Proxy) => Ok(false),
            Ok(Flow::Reply(status, content_type, body)) => {
                let headers = [("content-type", content_type.to_string())];
                respond::write(session, status, &headers, body, false).await?;
                Ok(true)
            }
            Ok(Flow::Forward(body)) => {
                if let Err(e) = forward::run(self, session, ctx, body).await {
                    self.send_error(session, ctx, &e).await;
                    ctx.error = Some(e);
                }
                Ok(true)
            }
            // The one place a request is refused before it reached a worker.
            Err(e) => self.reject(session, ctx, e).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if ctx.kind == Kind::Admin {
            return Ok(Box::new(HttpPeer::new(
                self.admin_addr,
                false,
                String::new(),
            )));
        }
        let cfg = ctx.config.clone();
        // Kept for `fail_to_proxy`, which answers it.
        let refused = |ctx: &mut RequestCtx, e: GatewayError| {
            let status = e.status();
            ctx.error = Some(e);
            Error::explain(ErrorType::HTTPStatus(status), "no worker for this request")
        };
        if !retry::wait_before(&cfg.retry, ctx).await {
            let e = retry::budget_spent(ctx);
            return Err(refused(ctx, e));
        }
        let worker = select::dispatch(&self.state, ctx)
            .await
            .map_err(|e| refused(ctx, e))?;
        let u = &cfg.upstream;
        let spec = &worker.spec;
        let sni = if spec.tls {
            spec.host.clone()
        } else {
            String::new()
        };
        let mut peer = HttpPeer::new(spec.addr, spec.tls, sni);
        peer.options.verify_cert = !spec.options.insecure_skip_verify;
        peer.options.verify_hostname = !spec.options.insecure_skip_verify;
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
        if let Some(w) = ctx.worker.as_ref().filter(|_| ctx.kind == Kind::Llm) {
            upstream_request.insert_header(http::header::HOST, w.host_header.clone())?;
            for (name, value) in &w.spec.options.headers {
                upstream_request.insert_header(name.clone(), value.clone())?;
            }
            if let Some(tp) = trace::worker_traceparent(ctx) {
                upstream_request.insert_header("traceparent", tp)?;
            }
        }
        upstream_request.remove_header("expect");
        ctx.sent_at = Some(std::time::Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        let content_type = upstream_response
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        ctx.observer.on_headers(status, content_type);
        if let Some(w) = ctx.worker.as_ref().filter(|_| ctx.kind == Kind::Llm) {
            let retry_after = upstream_response.headers.get(http::header::RETRY_AFTER);
            ctx.overloaded = retry::observe_overload(&ctx.config.retry, w, status, retry_after);
        }
        if ctx.kind == Kind::Llm
            && retry::RETRY_STATUSES.contains(&status)
            && retry::may_retry(&ctx.config.retry, session, ctx)
        {
            // Nothing reached the client yet: try another worker instead of passing this on.
            return Err(
                Error::explain(ErrorType::HTTPStatus(status), "retryable worker status").into_up(),
            );
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.kind == Kind::Llm {
            self.decorate_response(upstream_response, ctx);
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(b) = body {
            ctx.observer.on_chunk(b);
        }
        if end_of_stream {
            ctx.upstream_done = Some(std::time::Instant::now());
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
        if ctx.kind == Kind::Admin {
            return e;
        }
        tracing::warn!(peer = %peer, error = %e, attempt = ctx.attempts(), "connect to worker failed");
        self.end_attempt(ctx, Verdict::ConnectFailure);
        if retry::budget_left(&ctx.config.retry, ctx) {
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
        if ctx.kind == Kind::Admin {
            e.set_retry(false);
            return e;
        }
        let upstream_fault = matches!(e.esource(), ErrorSource::Upstream);
        if upstream_fault {
            let verdict = match e.etype() {
                ErrorType::HTTPStatus(_) if ctx.overloaded => Verdict::Overloaded,
                ErrorType::HTTPStatus(s) => Verdict::of_status(*s),
                _ => Verdict::Failure,
            };
            self.end_attempt(ctx, verdict);
        }
        let retry = upstream_fault && retry::may_retry(&ctx.config.retry, session, ctx);
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
        self.send_error(session, ctx, &err).await;
        let code = err.status();
        ctx.error = Some(err);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.guard.is_some() {
            let status = ctx.observer.status.unwrap_or(0);
            let verdict = match e {
                // The client left: nothing the worker did wrong.
                Some(err) if matches!(err.esource(), ErrorSource::Downstream) && status != 0 => {
                    Verdict::of_status(status)
                }
                Some(err) if matches!(err.esource(), ErrorSource::Downstream) => Verdict::Success,
                Some(_) => Verdict::Failure,
                None if ctx.error.is_some() => Verdict::Failure,
                None => Verdict::of_status(status),
            };
            self.end_attempt(ctx, verdict);
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let record = account::record(ctx, status);
        if let Some(ticket) = ctx.quota.take() {
            let ok = (200..300).contains(&status);
            let (p, c) = (record.prompt_tokens, record.completion_tokens);
            crate::quota::settle(&self.state, ticket, ok, p, c);
        }
        self.state.metrics.requests.record(&record);
        if ctx.span.is_some() {
            let error = ctx.error.as_ref().map(|e| e.to_string());
            let error = error.or_else(|| e.map(|e| e.to_string()));
            trace::finish(&self.state, ctx, status, error);
        }
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
