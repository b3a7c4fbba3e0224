//! Admission of an LLM request, as a pipeline of small stages. Each stage either adds what it
//! learned to the request's context or refuses the request with a [`GatewayError`]; the first
//! refusal ends the pipeline, and `request_filter` answers it in one place (`Gateway::reject`).
//!
//! ```text
//! open        the gateway is not shutting down
//! authorize   a valid API key (when keys are configured)
//! reserve     a place among the gateway's in-flight LLM requests (`limits.max_concurrent_requests`)
//! read body   whole, within `limits.max_body_bytes` and `body_read_timeout_ms` (`body`)
//! translate   `/v1/messages` → an OpenAI chat-completions body (`anthropic`)
//! parse       routing fields and validation of the (translated) body (`request`)
//! queue class priority and TTFT objective for the gateway's queue
//! limits      per-user and global token buckets (in Redis when replicas share them)
//! quota       the API key's quota: allowed models, requests/tokens per minute, in flight
//! model       some worker serves the requested model (else 404)
//! rewrite     a session's history prepended (`session::chat`), or the translation's body
//! ```
//!
//! What comes out says how the body travels on: Pingora forwards it (small, unchanged bodies)
//! or the gateway's own path does (large, chunked, rewritten or translated bodies).

use std::net::IpAddr;

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::ctx::{BodyMode, Kind, RequestCtx};
use super::request::{self, KeySources, RequestInfo};
use super::route::Endpoint;
use super::{body, Gateway};
use crate::anthropic::request::Translated;
use crate::auth;
use crate::config::Config;
use crate::edge::Translation;
use crate::error::GatewayError;
use crate::limits::Scope;
use crate::routing::rng::hash_bytes;
use crate::shared::Verdict;
use crate::state::ActiveGuard;

/// Request headers read on every LLM request, as ready names (no parsing per lookup).
const SESSION_HEADER: http::HeaderName = http::HeaderName::from_static("x-session-id");
const PRIORITY_HEADER: http::HeaderName = http::HeaderName::from_static("x-priority");
const SLO_HEADER: http::HeaderName = http::HeaderName::from_static("x-slo-ttft-ms");

/// How an admitted request's body travels to the worker.
#[derive(Debug)]
pub(super) enum Admitted {
    /// Pingora forwards it (`ctx.body` says from where).
    Proxy,
    /// The gateway forwards this body on its own path (`forward`).
    Forward(Bytes),
}

/// Run the admission stages for an LLM request to `endpoint`.
pub(super) async fn admit(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
) -> Result<Admitted, GatewayError> {
    open(gw, session)?;
    authorize(gw, session.req_header())?;
    ctx.active = Some(reserve(gw, &ctx.config)?);
    let (mode, bytes) = body::read(session, &ctx.config.limits).await?;
    let translated = translate(endpoint, &bytes)?;
    let req = session.req_header();
    ctx.info = parse(req, &ctx.config, endpoint, &bytes, translated.as_ref())?;
    ctx.hints.affinity = ctx.info.affinity;
    ctx.hints.prompt = ctx.info.prompt.clone();
    (ctx.priority, ctx.slo_ms) = queue_class(req, &ctx.info, &ctx.config)?;
    limit(gw, &ctx.config, user_key(session, &ctx.info)).await?;
    ctx.quota = quota(gw, session.req_header(), &ctx.info).await?;
    known_model(gw, &ctx.info)?;
    let rewritten = rewrite(gw, session.req_header(), ctx, endpoint, translated, &bytes).await?;
    ctx.kind = Kind::Llm;
    // A chat completion takes the gateway's own path too: it can move to another worker
    // mid-stream there (`resume`) — a non-streamed one when some worker for its model can
    // continue a partial message (`assemble`).
    let f = &ctx.config.failover;
    let failover = f.enabled
        && matches!(endpoint, Endpoint::Chat | Endpoint::Messages)
        && (ctx.info.stream || (f.non_streamed && can_continue(gw, ctx.info.model.as_deref())));
    let mode = match mode {
        BodyMode::Replayable if failover => BodyMode::Owned(bytes),
        mode => mode,
    };
    // A rewritten body is forwarded on the gateway's own path (it is not Pingora's).
    Ok(match rewritten.map_or(mode, BodyMode::Owned) {
        BodyMode::Owned(body) => Admitted::Forward(body),
        mode => {
            ctx.body = mode;
            Admitted::Proxy
        }
    })
}

/// Some worker serving `model` continues partial messages (`resume::supports_continuation`).
fn can_continue(gw: &Gateway, model: Option<&str>) -> bool {
    let pool = gw.state.pool.load();
    pool.workers.iter().any(|w| {
        super::resume::supports_continuation(w.meta().kind) && model.is_none_or(|m| w.serves(m))
    })
}

/// Refuse new requests while the gateway shuts down (and close the connection after).
fn open(gw: &Gateway, session: &mut Session) -> Result<(), GatewayError> {
    if gw.state.is_draining() {
        session.set_keepalive(None);
        return Err(GatewayError::NoWorker(
            "the gateway is shutting down".into(),
        ));
    }
    Ok(())
}

/// A valid API key, when keys are configured (also checked for the model list).
pub(super) fn authorize(gw: &Gateway, req: &RequestHeader) -> Result<(), GatewayError> {
    if gw
        .state
        .auth
        .load()
        .check_api_key(auth::api_key(&req.headers))
    {
        Ok(())
    } else {
        Err(auth::key_required())
    }
}

/// Count the request among the gateway's in-flight LLM requests, within the limit.
fn reserve(gw: &Gateway, cfg: &Config) -> Result<ActiveGuard, GatewayError> {
    gw.state
        .begin_request(cfg.limits.max_concurrent_requests)
        .ok_or_else(|| {
            GatewayError::Overloaded(
                "too many requests in flight at the gateway; retry shortly".into(),
            )
        })
}

/// Anthropic's Messages API goes to the worker as chat completions.
fn translate(endpoint: Endpoint, bytes: &[u8]) -> Result<Option<Translated>, GatewayError> {
    match endpoint {
        Endpoint::Messages => crate::anthropic::request::translate(bytes).map(Some),
        _ => Ok(None),
    }
}

/// The routing fields of the body the worker will get (the translated one, if any).
fn parse(
    req: &RequestHeader,
    cfg: &Config,
    endpoint: Endpoint,
    bytes: &Bytes,
    translated: Option<&Translated>,
) -> Result<RequestInfo, GatewayError> {
    let (parse_as, body) = match translated {
        Some(t) => (Endpoint::Chat, &t.body),
        None => (endpoint, bytes),
    };
    let keys = KeySources {
        session_header: req
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok()),
        api_key: auth::api_key(&req.headers),
        prefix_bytes: cfg.routing.consistent_hash.prefix_bytes,
        prefixes: cfg
            .routing
            .uses_prefixes()
            .then_some(&cfg.routing.cache_aware),
    };
    request::parse(parse_as, body, keys)
}

/// An integer request header, if present.
fn number_header(
    req: &RequestHeader,
    header: &http::HeaderName,
) -> Result<Option<i64>, GatewayError> {
    let name = header.as_str();
    req.headers
        .get(header)
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
}

/// The request's place in the gateway's queue: `X-Priority` (else the body's `priority`)
/// and the TTFT objective (`X-SLO-TTFT-MS`, else the API key's, else the default).
fn queue_class(
    req: &RequestHeader,
    info: &RequestInfo,
    cfg: &Config,
) -> Result<(i64, Option<u64>), GatewayError> {
    let priority = number_header(req, &PRIORITY_HEADER)?
        .or(info.priority)
        .unwrap_or(0);
    let slo = match number_header(req, &SLO_HEADER)? {
        Some(ms) if !(1..=3_600_000).contains(&ms) => {
            return Err(GatewayError::invalid(
                "header `x-slo-ttft-ms` must be 1..=3600000",
                Some("x-slo-ttft-ms"),
            ))
        }
        v => v.map(|ms| ms as u64),
    };
    let slo_ms = cfg.scheduler.slo_ms(slo, auth::api_key(&req.headers));
    Ok((priority, slo_ms))
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The rate-limit identity: API key, else the `user` field, else the client IP.
fn user_key(session: &Session, info: &RequestInfo) -> u64 {
    if let Some(k) = auth::api_key(&session.req_header().headers).filter(|k| !k.is_empty()) {
        return hash_bytes(k.as_bytes()) ^ 0x006b_6579;
    }
    if let Some(u) = info.user {
        return u;
    }
    match client_ip(session) {
        Some(ip) => hash_bytes(ip.to_string().as_bytes()) ^ 0x6970,
        None => 0,
    }
}

/// The per-user and global token buckets (a refusal consumes nothing): this process's, or
/// those every replica shares in Redis (`shared`).
async fn limit(gw: &Gateway, cfg: &Config, user: u64) -> Result<(), GatewayError> {
    let limits = gw.state.limits.load_full();
    let verdict = gw.state.shared.check(&cfg.rate_limit, &limits, user).await;
    if cfg.rate_limit.enabled {
        let scope = match &verdict {
            Verdict::Limited(scope, _) => Some(*scope),
            _ => None,
        };
        gw.state.metrics.requests.limiter(scope);
    }
    match verdict {
        Verdict::Admit => Ok(()),
        Verdict::Limited(scope, wait) => Err(GatewayError::RateLimited {
            message: match scope {
                Scope::User => "rate limit exceeded for this user; retry after the indicated time",
                Scope::Global => {
                    "the gateway's request rate limit is exceeded; retry after the indicated time"
                }
            }
            .into(),
            retry_after: wait,
        }),
        Verdict::Unavailable(_) => Err(GatewayError::NoWorker(
            "the shared rate limits are unavailable (Redis is not answering); retry shortly".into(),
        )),
    }
}

/// The per-key quota of the presented API key, if it has one (`quota`).
async fn quota(
    gw: &Gateway,
    req: &RequestHeader,
    info: &RequestInfo,
) -> Result<Option<crate::quota::Ticket>, GatewayError> {
    let quotas = gw.state.quotas.load_full();
    let Some(entry) = quotas.find(auth::api_key(&req.headers)) else {
        return Ok(None);
    };
    crate::quota::admit(&gw.state, entry, info.model.as_deref(), info.prompt_bytes)
        .await
        .map(Some)
}

/// A model nobody in the fleet serves is a 404 now, not a 503 after queueing.
fn known_model(gw: &Gateway, info: &RequestInfo) -> Result<(), GatewayError> {
    match &info.model {
        Some(m) if !gw.state.pool.load().serves(m) => Err(GatewayError::ModelNotFound(m.clone())),
        _ => Ok(()),
    }
}

/// The body the worker gets instead of the client's, if any: the translation's, or the
/// client's messages behind its session's history. Sets the response translation (and a
/// session's worker as the preferred one).
async fn rewrite(
    gw: &Gateway,
    req: &RequestHeader,
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
    translated: Option<Translated>,
    bytes: &[u8],
) -> Result<Option<Bytes>, GatewayError> {
    if let Some(t) = translated {
        ctx.translation = Some(Translation {
            upstream_path: Some("/v1/chat/completions"),
            factory: crate::anthropic::factory(ctx.info.stream, t.model),
        });
        return Ok(Some(t.body));
    }
    let Some(id) = session_of(req, &ctx.info, endpoint) else {
        return Ok(None);
    };
    let key = auth::api_key(&req.headers);
    let p = crate::session::chat::prepare(&gw.state, &id, key, bytes, ctx.info.stream).await?;
    ctx.translation = Some(p.translation);
    ctx.hints.prefer = p.prefer;
    Ok(Some(p.body))
}

/// The session a chat request belongs to: the `X-Session-ID` header or the `session_id`
/// field, when it names one of the gateway's sessions (`sess_…`). Other values are only
/// affinity keys for `consistent_hash`, as before sessions existed.
fn session_of(req: &RequestHeader, info: &RequestInfo, endpoint: Endpoint) -> Option<String> {
    if endpoint != Endpoint::Chat {
        return None;
    }
    let header = req
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    header
        .or(info.session_id.as_deref())
        .filter(|id| id.starts_with(crate::session::ID_PREFIX))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pairs: &[(&'static str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (k, v) in pairs {
            req.insert_header(*k, *v).unwrap();
        }
        req
    }

    #[test]
    fn the_queue_class_comes_from_headers_then_the_body_then_the_config() {
        let mut cfg = Config::default();
        cfg.scheduler.default_slo_ttft_ms = 900;
        let info = RequestInfo {
            priority: Some(3),
            ..Default::default()
        };
        assert_eq!(
            queue_class(&header(&[]), &info, &cfg).unwrap(),
            (3, Some(900))
        );
        let req = header(&[("x-priority", " -2 "), ("x-slo-ttft-ms", "250")]);
        assert_eq!(queue_class(&req, &info, &cfg).unwrap(), (-2, Some(250)));
        let e = queue_class(&header(&[("x-priority", "high")]), &info, &cfg).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("x-priority"), "{e}");
        let e = queue_class(&header(&[("x-slo-ttft-ms", "0")]), &info, &cfg).unwrap_err();
        assert!(e.to_string().contains("1..=3600000"), "{e}");
    }

    #[test]
    fn only_gateway_session_ids_name_a_session() {
        let info = RequestInfo {
            session_id: Some("sess_body".into()),
            ..Default::default()
        };
        let none = RequestInfo::default();
        let h = header(&[("x-session-id", " sess_abc ")]);
        assert_eq!(
            session_of(&h, &info, Endpoint::Chat).as_deref(),
            Some("sess_abc")
        );
        assert_eq!(
            session_of(&header(&[]), &info, Endpoint::Chat).as_deref(),
            Some("sess_body")
        );
        assert_eq!(
            session_of(
                &header(&[("x-session-id", "user-7")]),
                &none,
                Endpoint::Chat
            ),
            None
        );
        assert_eq!(session_of(&h, &info, Endpoint::Completions), None);
    }
}
