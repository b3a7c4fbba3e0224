//! The proxy: Pingora's phases for one request, in order.
//!
//! ```text
//! request_filter     local endpoints (/health, /v1/models), admin paths → admin service;
//!                    LLM paths: draining? → API key → concurrency cap → read + validate the
//!                    body → rate limits → unknown model 404 → `/v1/messages` translated
//!                    (`anthropic`), session history prepended (`session::chat`) → large,
//!                    rewritten and translated bodies go to `forward`, the rest to Pingora
//! upstream_peer      backoff before a retry → `select::pick`: eligible workers (routable,
//!                    breaker, model, not tried) → policy → worker rate limit → in-flight token
//! upstream_request_filter   Host of the worker
//! upstream_response_filter  status; 429/502/503/504 before any byte → retry elsewhere
//! upstream_response_body_filter   TTFT, usage (`observe`)
//! fail_to_connect / error_while_proxy   end the attempt (`account`), retry on another worker
//!                    while nothing reached the client (`retry`)
//! fail_to_proxy      the final error in OpenAI's shape, or an SSE error event mid-stream
//! logging            end the last attempt (stats, breaker, adaptive policy)
//! ```

pub mod account;
pub mod body;
pub mod ctx;
pub mod forward;
pub mod local;
pub mod observe;
pub mod request;
pub mod respond;
pub mod retry;
pub mod route;
pub mod select;
pub mod translate;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};

use crate::error::GatewayError;
use crate::limits::Scope;
use crate::metrics::RequestRecord;
use crate::routing::rng::hash_bytes;
use crate::state::AppState;
use account::Verdict;
use ctx::{BodyMode, RequestCtx};
use request::KeySources;
use route::{Endpoint, Route};
use translate::Translation;

/// Response header naming the worker that served the request.
pub const WORKER_HEADER: http::HeaderName = http::HeaderName::from_static("x-sagellm-worker");
/// Request headers read on every LLM request, as ready names (no parsing per lookup).
const SESSION_HEADER: http::HeaderName = http::HeaderName::from_static("x-session-id");
const PRIORITY_HEADER: http::HeaderName = http::HeaderName::from_static("x-priority");
const SLO_HEADER: http::HeaderName = http::HeaderName::from_static("x-slo-ttft-ms");

/// The Pingora application: one per gateway, shared by all requests.
pub struct Gateway {
    pub state: Arc<AppState>,
    /// The internal admin service (management API, dashboard) on loopback.
    pub admin_addr: std::net::SocketAddr,
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

/// What a finished request contributes to the metrics.
fn record(ctx: &RequestCtx, status: u16) -> RequestRecord {
    let o = &ctx.observer;
    let proxied = ctx.worker.is_some() && !ctx.to_admin && (200..300).contains(&status);
    let first = o.first_byte.zip(ctx.dispatched_at);
    let ttft = first
        .filter(|_| proxied && o.sse)
        .map(|(f, d)| f.saturating_duration_since(d));
    let tokens = if proxied {
        o.output_tokens().unwrap_or(0)
    } else {
        0
    };
    let tpot = o
        .first_byte
        .filter(|_| ttft.is_some() && tokens >= 2)
        .map(|f| f.elapsed() / (tokens as u32 - 1));
    RequestRecord {
        route: Some(ctx.route.label()),
        status,
        latency: ctx.start.elapsed(),
        ttft,
        tpot,
        prompt_tokens: if proxied {
            o.prompt_tokens.unwrap_or(0)
        } else {
            0
        },
        completion_tokens: tokens,
        retries: u64::from(ctx.attempts().saturating_sub(1)),
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
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

    /// The rate-limit identity: API key, else the `user` field, else the client IP.
    fn user_key(&self, session: &Session, ctx: &RequestCtx) -> u64 {
        if let Some(k) = api_key(session.req_header()).filter(|k| !k.is_empty()) {
            return hash_bytes(k.as_bytes()) ^ 0x006b_6579;
        }
        if let Some(u) = ctx.info.user {
            return u;
        }
        match client_ip(session) {
            Some(ip) => hash_bytes(ip.to_string().as_bytes()) ^ 0x6970,
            None => 0,
        }
    }

    /// Admit an LLM request: shutdown, key, concurrency, body, limits, model. `Ok(true)` when
    /// it was answered here.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        endpoint: Endpoint,
    ) -> Result<bool> {
        if self.state.is_draining() {
            session.set_keepalive(None);
            return self
                .reject(
                    session,
                    ctx,
                    GatewayError::NoWorker("the gateway is shutting down".into()),
                )
                .await;
        }
        if !self
            .state
            .auth
            .load()
            .check_api_key(api_key(session.req_header()))
        {
            let e = GatewayError::Unauthorized(
                "a valid API key is required (Authorization: Bearer <key>)".into(),
            );
            return self.reject(session, ctx, e).await;
        }
        let cfg = self.state.config.load_full();
        match self.state.begin_request(cfg.limits.max_concurrent_requests) {
            Some(guard) => ctx.active = Some(guard),
            None => {
                let e = GatewayError::NoWorker(
                    "too many requests in flight at the gateway; retry shortly".into(),
                );
                return self.reject(session, ctx, e).await;
            }
        }
        let (mode, bytes) = match body::read(session, &cfg.limits).await {
            Ok(v) => v,
            Err(e) => return self.reject(session, ctx, e).await,
        };
        // Anthropic's Messages API goes to the worker as chat completions.
        let translated = match endpoint {
            Endpoint::Messages => match crate::anthropic::request::translate(&bytes) {
                Ok(t) => Some(t),
                Err(e) => return self.reject(session, ctx, e).await,
            },
            _ => None,
        };
        let (parse_as, forward_body) = match &translated {
            Some(t) => (Endpoint::Chat, &t.body),
            None => (endpoint, &bytes),
        };
        let req = session.req_header();
        let keys = KeySources {
            session_header: req
                .headers
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok()),
            api_key: api_key(req),
            prefix_bytes: cfg.routing.consistent_hash.prefix_bytes,
        };
        ctx.info = match request::parse(parse_as, forward_body, keys) {
            Ok(info) => info,
            Err(e) => return self.reject(session, ctx, e).await,
        };
        ctx.hints.affinity = ctx.info.affinity;
        if let Err(e) = self.queue_class(session, ctx, &cfg) {
            return self.reject(session, ctx, e).await;
        }
        let limits = self.state.limits.load();
        let verdict = limits.check(self.user_key(session, ctx));
        if limits.enabled() {
            self.state
                .metrics
                .requests
                .limiter(verdict.as_ref().err().map(|(scope, _)| *scope));
        }
        if let Err((scope, wait)) = verdict {
            let message = match scope {
                Scope::User => "rate limit exceeded for this user; retry after the indicated time",
                Scope::Global => {
                    "the gateway's request rate limit is exceeded; retry after the indicated time"
                }
            };
            let e = GatewayError::RateLimited {
                message: message.into(),
                retry_after: wait,
            };
            return self.reject(session, ctx, e).await;
        }
        if let Some(m) = &ctx.info.model {
            if !self.state.pool.load().serves(m) {
                return self
                    .reject(session, ctx, GatewayError::ModelNotFound(m.clone()))
                    .await;
            }
        }
        let rewritten = match translated {
            Some(t) => {
                ctx.translation = Some(Translation {
                    upstream_path: Some("/v1/chat/completions"),
                    factory: crate::anthropic::factory(ctx.info.stream, t.model),
                });
                Some(t.body)
            }
            None => match self.session_of(session, ctx, endpoint) {
                Some(id) => {
                    let key = api_key(session.req_header());
                    match crate::session::chat::prepare(
                        &self.state,
                        &id,
                        key,
                        &bytes,
                        ctx.info.stream,
                    ) {
                        Ok(p) => {
                            ctx.translation = Some(p.translation);
                            ctx.hints.prefer = p.prefer;
                            Some(p.body)
                        }
                        Err(e) => return self.reject(session, ctx, e).await,
                    }
                }
                None => None,
            },
        };
        // A rewritten body is forwarded on the gateway's own path (it is not Pingora's).
        let mode = rewritten.map_or(mode, BodyMode::Owned);
        match mode {
            BodyMode::Owned(body) => {
                forward::run(self, session, ctx, body).await;
                if let Some(e) = ctx.error.clone() {
                    self.send_error(session, ctx, &e).await;
                }
                Ok(true)
            }
            mode => {
                ctx.body = mode;
                Ok(false)
            }
        }
    }

    /// The request's place in the gateway's queue: `X-Priority` (else the body's `priority`)
    /// and the TTFT objective (`X-SLO-TTFT-MS`, else the API key's, else the default).
    fn queue_class(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        cfg: &crate::config::Config,
    ) -> std::result::Result<(), GatewayError> {
        let req = session.req_header();
        let number = |header: http::HeaderName| -> std::result::Result<Option<i64>, GatewayError> {
            let name = header.as_str();
            req.headers
                .get(&header)
                .map(|v| v.to_str().unwrap_or("?").trim())
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        GatewayError::invalid(
                            format!(
                                "header `{name}` must be an integer, got `{}`",
                                v.chars().take(40).collect::<String>()
                            ),
                            Some(name),
                        )
                    })
                })
                .transpose()
        };
        ctx.priority = number(PRIORITY_HEADER)?.or(ctx.info.priority).unwrap_or(0);
        let slo = match number(SLO_HEADER)? {
            Some(ms) if !(1..=3_600_000).contains(&ms) => {
                return Err(GatewayError::invalid(
                    "header `x-slo-ttft-ms` must be 1..=3600000",
                    Some("x-slo-ttft-ms"),
                ))
            }
            v => v.map(|ms| ms as u64),
        };
        ctx.slo_ms = cfg.scheduler.slo_ms(slo, api_key(req));
        Ok(())
    }

    /// The session a chat request belongs to: the `X-Session-ID` header or the `session_id`
    /// field, when it names one of the gateway's sessions (`sess_…`). Other values are only
    /// affinity keys for `consistent_hash`, as before sessions existed.
    fn session_of(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        endpoint: Endpoint,
    ) -> Option<String> {
        if endpoint != Endpoint::Chat {
            return None;
        }
        let header = session
            .req_header()
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        header
            .or(ctx.info.session_id.as_deref())
            .filter(|id| id.starts_with(crate::session::ID_PREFIX))
            .map(str::to_string)
    }

    /// The final error: a JSON response, or — when a stream already started — an SSE error
    /// event that the OpenAI SDKs raise, ending the stream.
    async fn send_error(&self, session: &mut Session, ctx: &RequestCtx, err: &GatewayError) {
        let result = if session.response_written().is_none() {
            respond::write_error(session, err, ctx.flavor, true).await
        } else if ctx.translation.is_some() {
            Ok(()) // the translator already ended the response in the client's API
        } else if ctx.observer.sse {
            let (_, _, body) = err.render(ctx.flavor);
            let mut event = b"data: ".to_vec();
            event.extend_from_slice(&body);
            event.extend_from_slice(b"\n\n");
            session
                .write_response_body(Some(Bytes::from(event)), true)
                .await
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not send the error to the client");
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
        if ctx.route == Route::Llm(Endpoint::Messages) {
            ctx.flavor = crate::error::ApiFlavor::Anthropic;
        }
        let model_list = matches!(ctx.route, Route::Models | Route::Model(_));
        if model_list
            && !self
                .state
                .auth
                .load()
                .check_api_key(api_key(session.req_header()))
        {
            let e = GatewayError::Unauthorized(
                "a valid API key is required (Authorization: Bearer <key>)".into(),
            );
            return self.reject(session, ctx, e).await;
        }
        match ctx.route.clone() {
            Route::Llm(endpoint) => self.admit(session, ctx, endpoint).await,
            Route::Admin => {
                ctx.to_admin = true;
                Ok(false)
            }
            Route::Health => {
                ctx.local = true;
                let (status, body) = local::health(&self.state);
                respond::write_json(session, status, &body).await?;
                Ok(true)
            }
            Route::Metrics => {
                ctx.local = true;
                let text = self.state.metrics.render(&self.state);
                let headers = [("content-type", crate::metrics::CONTENT_TYPE.to_string())];
                respond::write(session, 200, &headers, text.into_bytes(), false).await?;
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
        if ctx.to_admin {
            return Ok(Box::new(HttpPeer::new(
                self.admin_addr,
                false,
                String::new(),
            )));
        }
        let cfg = self.state.config.load_full();
        let refused = |ctx: &mut RequestCtx, e: GatewayError| {
            let status = e.status();
            ctx.error = Some(e);
            Error::explain(ErrorType::HTTPStatus(status), "no worker for this request")
        };
        if !retry::wait_before(&cfg.retry, ctx).await {
            let e = GatewayError::UpstreamFailed(format!(
                "{} attempt(s) failed and the retry time budget is spent",
                ctx.attempts()
            ));
            return Err(refused(ctx, e));
        }
        let worker = select::pick_queued(&self.state, ctx)
            .await
            .map_err(|e| refused(ctx, e))?;
        let u = &cfg.upstream;
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
        if let Some(w) = ctx.worker.as_ref().filter(|_| !ctx.to_admin) {
            upstream_request.insert_header(http::header::HOST, w.host_header.clone())?;
        }
        upstream_request.remove_header("expect");
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
        if !ctx.to_admin
            && retry::RETRY_STATUSES.contains(&status)
            && retry::may_retry(&self.state.config.load().retry, session, ctx)
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
        if !ctx.to_admin {
            self.decorate_response(upstream_response, ctx);
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
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
        if ctx.to_admin {
            return e;
        }
        tracing::warn!(peer = %peer, error = %e, attempt = ctx.attempts(), "connect to worker failed");
        self.end_attempt(ctx, Verdict::ConnectFailure);
        if retry::budget_left(&self.state.config.load().retry, ctx) {
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
        if ctx.to_admin {
            e.set_retry(false);
            return e;
        }
        let upstream_fault = matches!(e.esource(), ErrorSource::Upstream);
        if upstream_fault {
            let verdict = match e.etype() {
                ErrorType::HTTPStatus(s) => Verdict::of_status(*s),
                _ => Verdict::Failure,
            };
            self.end_attempt(ctx, verdict);
        }
        let retry =
            upstream_fault && retry::may_retry(&self.state.config.load().retry, session, ctx);
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
        self.state.metrics.requests.record(&record(ctx, status));
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
