//! The gateway's own forwarding path, for request bodies Pingora cannot forward after they
//! were read (> 64 KiB or chunked; see [`super::body`]). The whole body is in memory
//! (bounded by `max_body_bytes`), so it is sent with a `Content-Length` and can be replayed
//! on another worker when an attempt fails before any byte reached the client. The response
//! streams back chunk by chunk, exactly like the Pingora path — or, for a request with a
//! [`Translation`](crate::edge::Translation), through its translator. A streamed chat
//! completion goes this way too: when its worker breaks off or stalls mid-stream, it is
//! continued on another worker and spliced into the client's stream (`resume`). A
//! non-streamed chat completion is asked of such a worker as a stream, so it can move the
//! same way, and answered as one JSON object built from the events (`assemble`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::account::Verdict;
use super::assemble::{self, Assembler};
use super::ctx::RequestCtx;
use super::resume::{self, Break, Next, Splice};
use super::{retry, select, Gateway};
use crate::edge::translate::ResponseTranslator;
use crate::error::GatewayError;
use crate::worker::spec::WorkerSpec;

/// Request headers never copied to the worker (hop-by-hop or recomputed).
const SKIP_REQUEST: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
    "expect",
    "te",
    "trailer",
    "upgrade",
];

/// Response headers never copied to the client (hop-by-hop or recomputed).
const SKIP_RESPONSE: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "trailer",
    "upgrade",
];

/// Why an attempt ended without a complete response for the client.
enum AttemptError {
    /// Nothing reached the client: another worker may be tried.
    Retryable(GatewayError, Verdict),
    /// The client's stream started and this worker broke off; the splice may continue it.
    Broke(GatewayError, Verdict, Break),
    /// The response started (or the client left): the request is over.
    Final(Option<GatewayError>),
}

/// What lives across attempts once the client's response has started.
struct Downstream {
    /// The client's response began: its header went out, or is held by the assembler.
    started: bool,
    translator: Option<Box<dyn ResponseTranslator>>,
    /// Mid-stream failover, for a streamed chat completion (`resume`).
    splice: Option<Splice>,
    /// A non-streamed chat completion asked of the worker as a stream: the client's answer
    /// is built here and sent, header and all, once it is whole.
    assembler: Option<Assembler>,
    /// The first worker's response headers, for the held answer's header.
    held: Option<http::HeaderMap>,
}

/// Forward `body` with retries. `Ok` once the response was written (or the client left);
/// `Err` is the error to answer — a JSON error before the response started, an error event
/// in the stream after.
pub(super) async fn run(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    original: Bytes,
) -> Result<(), GatewayError> {
    let cfg = ctx.config.clone();
    let chat = matches!(
        ctx.route,
        super::route::Route::Llm(super::route::Endpoint::Chat | super::route::Endpoint::Messages)
    );
    let mut down = Downstream {
        started: false,
        translator: None,
        splice: None,
        assembler: None,
        held: None,
    };
    // The stream to ask for instead of a non-streamed chat completion (`assemble`).
    let streamed = (chat && !ctx.info.stream && cfg.failover.enabled && cfg.failover.non_streamed)
        .then(|| assemble::streamed_body(&original))
        .flatten();
    let mut continuation: Option<Bytes> = None;
    // What a continuation is built from: the body the first worker got.
    let mut first = original.clone();
    loop {
        if !down.started && !retry::wait_before(&cfg.retry, ctx).await {
            return Err(retry::budget_spent(ctx));
        }
        let from = ctx.worker.as_ref().map(|w| w.id.clone());
        let worker = match select::dispatch(&gw.state, ctx).await {
            Ok(w) => w,
            Err(e) if down.started => return end_broken(session, &mut down, e).await,
            Err(e) => return Err(e),
        };
        let body = match continuation.take() {
            Some(next) => {
                tracing::warn!(from = from.as_deref().unwrap_or("-"), to = %worker.id, attempt = ctx.attempts(), "stream continues on another worker");
                next
            }
            // Nothing reached the client: the whole request, as this worker can take it.
            None => {
                match streamed.as_ref() {
                    Some(s) if resume::supports_continuation(worker.meta().kind) => {
                        down.splice = Some(Splice::default());
                        down.assembler = Some(Assembler::default());
                        first = s.clone();
                    }
                    _ => {
                        down.splice =
                            Splice::for_request(&cfg.failover, ctx.info.stream, chat, &original);
                        down.assembler = None;
                        first = original.clone();
                    }
                }
                first.clone()
            }
        };
        match attempt(gw, session, ctx, &worker.spec, body, &mut down).await {
            Ok(()) | Err(AttemptError::Final(None)) => return Ok(()),
            Err(AttemptError::Final(Some(e))) => return Err(e),
            Err(AttemptError::Retryable(e, verdict)) if !down.started => {
                tracing::warn!(worker = %worker.id, error = %e, attempt = ctx.attempts(), "attempt failed");
                gw.end_attempt(ctx, verdict);
                if !retry::budget_left(&cfg.retry, ctx) {
                    return Err(e);
                }
            }
            // The client's stream is under way: continue it elsewhere, or end it.
            Err(AttemptError::Retryable(e, verdict)) => {
                gw.end_attempt(ctx, verdict);
                match resume_body(gw, session, ctx, &mut down, &first, &e, Break::Broken).await? {
                    Some(next) => continuation = Some(next),
                    None => return Ok(()),
                }
            }
            Err(AttemptError::Broke(e, verdict, why)) => {
                tracing::warn!(worker = %worker.id, error = %e, reason = why.as_str(), "stream broke off");
                gw.end_attempt(ctx, verdict);
                match resume_body(gw, session, ctx, &mut down, &first, &e, why).await? {
                    Some(next) => continuation = Some(next),
                    None => return Ok(()),
                }
            }
        }
    }
}

/// After a break of a started stream: the body for the next worker (`Some`), the stream
/// completed here (`None`), or the error that ended it.
async fn resume_body(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    down: &mut Downstream,
    original: &[u8],
    e: &GatewayError,
    why: Break,
) -> Result<Option<Bytes>, GatewayError> {
    let cfg = &ctx.config.failover;
    let counter = |result: &str| {
        gw.state
            .metrics
            .stream_failovers
            .with_label_values(&[why.as_str(), result])
            .inc();
    };
    let allowed = match down.splice.as_ref() {
        None => Err("failover is off for this request".to_string()),
        Some(_) if ctx.start.elapsed().as_millis() as u64 > cfg.total_timeout_ms => {
            Err("the request is older than failover.total_timeout_ms".to_string())
        }
        Some(s) => s.resumable(cfg),
    };
    let next = allowed.and_then(|()| match down.splice.as_mut() {
        Some(s) => s.next(original),
        None => Err("failover is off for this request".to_string()),
    });
    let next = next.and_then(|n| match n {
        Next::Continue(_) if !has_alternative(gw, ctx) => {
            Err("no other worker that can continue a partial message is available".to_string())
        }
        n => Ok(n),
    });
    match next {
        Ok(Next::Continue(body)) => {
            counter("resumed");
            // Only workers that can continue a partial message take it.
            let pool = gw.state.pool.load();
            ctx.avoid = pool
                .workers
                .iter()
                .filter(|w| !resume::supports_continuation(w.meta().kind))
                .map(|w| w.uid)
                .collect();
            Ok(Some(body))
        }
        Ok(Next::Complete(tail)) => {
            counter("completed");
            send_through(session, ctx, down, tail).await.ok();
            match finish(gw, session, ctx, down).await {
                Err(AttemptError::Final(Some(e))) => Err(e),
                _ => Ok(None),
            }
        }
        Err(why_not) => {
            counter("failed");
            tracing::warn!(reason = %why_not, error = %e, "the stream cannot continue elsewhere");
            end_broken(session, down, e.clone()).await.map(|()| None)
        }
    }
}

/// End a started response that cannot be completed: in the client's API when a translator
/// can; otherwise the caller's SSE error event (`send_error`). A held answer never started
/// for the client: the caller answers a JSON error.
async fn end_broken(
    session: &mut Session,
    down: &mut Downstream,
    e: GatewayError,
) -> Result<(), GatewayError> {
    if down.assembler.is_some() {
        return Err(e);
    }
    if let Some(t) = down.translator.as_mut() {
        let tail = t.abort(&e.to_string());
        if !tail.is_empty() {
            let _ = session.write_response_body(Some(tail), false).await;
        }
        let _ = session.write_response_body(None, true).await;
    }
    Err(e)
}

/// The worker request for `body`, with the client's headers less the hop-by-hop ones.
fn upstream_request(
    session: &Session,
    ctx: &RequestCtx,
    spec: &WorkerSpec,
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, AttemptError> {
    let req_header = session.req_header();
    let path = match ctx.translation.as_ref().and_then(|t| t.upstream_path) {
        Some(p) => p,
        None => req_header
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    };
    let mut req = http::Request::builder()
        .method(req_header.method.clone())
        .uri(format!("{}{path}", spec.url));
    // A rewritten body is JSON the gateway made; a translated request's Anthropic headers
    // (and its key, meant for the gateway) mean nothing to an OpenAI worker.
    let rewritten = ctx.translation.is_some();
    let translated = ctx
        .translation
        .as_ref()
        .is_some_and(|t| t.upstream_path.is_some());
    let traceparent = super::trace::worker_traceparent(ctx);
    for (name, value) in req_header.headers.iter() {
        let n = name.as_str();
        let dropped = SKIP_REQUEST.contains(&n)
            || (traceparent.is_some() && n == "traceparent")
            || (rewritten && n == "content-type")
            || (translated && (n.starts_with("anthropic-") || n == "x-api-key"));
        if !dropped {
            req = req.header(name, value);
        }
    }
    if rewritten {
        req = req.header("content-type", "application/json");
    }
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    req.header("host", spec.host_header())
        .header("content-length", body.len())
        .body(Full::new(body))
        .map_err(|e| {
            AttemptError::Final(Some(GatewayError::Internal(format!(
                "building the upstream request: {e}"
            ))))
        })
}

async fn attempt(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    spec: &WorkerSpec,
    body: Bytes,
    down: &mut Downstream,
) -> Result<(), AttemptError> {
    let read_timeout = Duration::from_millis(ctx.config.upstream.read_timeout_ms);
    // The client's stream began on an earlier worker: this attempt continues it.
    let continuing = down.started;
    let req = upstream_request(session, ctx, spec, body)?;
    ctx.sent_at = Some(std::time::Instant::now());
    let resp = match tokio::time::timeout(read_timeout, gw.state.client.request(spec, req)).await {
        Err(_) => {
            let e = GatewayError::UpstreamTimeout("the worker did not answer in time".into());
            return Err(AttemptError::Retryable(e, Verdict::Failure));
        }
        Ok(Err(e)) => {
            let verdict = if e.is_connect() {
                Verdict::ConnectFailure
            } else {
                Verdict::Failure
            };
            let e = GatewayError::UpstreamFailed(format!(
                "worker request failed: {}",
                crate::http_client::error_chain(&e)
            ));
            return Err(AttemptError::Retryable(e, verdict));
        }
        Ok(Ok(r)) => r,
    };
    let (parts, mut upstream_body) = resp.into_parts();
    let status = parts.status.as_u16();
    if let Some(w) = ctx.worker.clone() {
        let retry_after = parts.headers.get(http::header::RETRY_AFTER);
        ctx.overloaded = retry::observe_overload(&ctx.config.retry, &w, status, retry_after);
    }
    let verdict_of = |ctx: &RequestCtx| {
        if ctx.overloaded {
            Verdict::Overloaded
        } else {
            Verdict::of_status(status)
        }
    };
    if down.started {
        // A continuation: only a stream can be spliced in.
        if status != 200 {
            let e = GatewayError::UpstreamFailed(format!(
                "the worker answered {status} to the stream's continuation"
            ));
            return Err(AttemptError::Broke(e, verdict_of(ctx), Break::Broken));
        }
    } else {
        start_response(gw, session, ctx, &parts, down, verdict_of(ctx)).await?;
    }
    if let Some(s) = down.splice.as_mut() {
        s.begin_attempt();
    }
    let stall = match ctx.config.failover.stall_timeout_ms {
        0 => None,
        ms => down.splice.as_ref().map(|_| Duration::from_millis(ms)),
    };
    // Once this worker's stream has started, a silence longer than `stall` moves it — unless
    // no other worker could take it, when the usual read timeout applies. A continuation is
    // mid-stream for the client from its first byte on: a worker that answers and then sends
    // nothing is a stall too, not a wait of the whole read timeout.
    let mut streaming = continuing;
    let mut patient = false;
    loop {
        let done = down.splice.as_ref().is_some_and(Splice::is_done);
        let wait = match stall {
            Some(s) if streaming && !patient && !done => s,
            _ => read_timeout,
        };
        let (broke, why) = match tokio::time::timeout(wait, upstream_body.frame()).await {
            Err(_) if wait != read_timeout => {
                if !has_alternative(gw, ctx) {
                    patient = true;
                    continue;
                }
                let e = GatewayError::UpstreamTimeout(format!(
                    "the worker sent nothing for {} ms mid-stream",
                    wait.as_millis()
                ));
                (e, Break::Stalled)
            }
            Err(_) => (
                GatewayError::UpstreamTimeout("the worker stalled mid-response".into()),
                Break::Stalled,
            ),
            Ok(None) => {
                ctx.upstream_done = Some(std::time::Instant::now());
                let Some(s) = down.splice.as_mut() else {
                    break;
                };
                let (tail, complete) = s.end_of_body();
                send_through(session, ctx, down, tail).await?;
                if complete {
                    break;
                }
                let e = GatewayError::UpstreamFailed(
                    "the worker closed the stream before it was complete".into(),
                );
                (e, Break::Broken)
            }
            Ok(Some(Err(e))) => (
                GatewayError::UpstreamFailed(format!("the worker broke off: {e}")),
                Break::Broken,
            ),
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let Some(s) = down.splice.as_mut() else {
                    send_through(session, ctx, down, data).await?;
                    continue;
                };
                let out = s.push(&data);
                let worker_error = s.take_worker_error();
                streaming = true;
                patient = false;
                send_through(session, ctx, down, out).await?;
                match worker_error {
                    None => continue,
                    Some(m) => (GatewayError::UpstreamFailed(m), Break::WorkerError),
                }
            }
        };
        let Some(s) = down.splice.as_mut() else {
            end_broken(session, down, broke.clone()).await.ok();
            return Err(AttemptError::Final(Some(broke)));
        };
        if let Some(tail) = s.complete_on_break() {
            // Only `[DONE]` was missing: the stream is whole.
            send_through(session, ctx, down, tail).await?;
            break;
        }
        return Err(AttemptError::Broke(broke, Verdict::Failure, why));
    }
    finish(gw, session, ctx, down).await
}

/// The worker answered: retry elsewhere on a retryable status, else send the client the
/// response header (through the translator, if any).
async fn start_response(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    parts: &http::response::Parts,
    down: &mut Downstream,
    verdict: Verdict,
) -> Result<(), AttemptError> {
    let status = parts.status.as_u16();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    ctx.observer.on_headers(status, content_type);
    if retry::RETRY_STATUSES.contains(&status) && retry::budget_left(&ctx.config.retry, ctx) {
        let e = GatewayError::UpstreamFailed(format!("the worker answered {status}"));
        return Err(AttemptError::Retryable(e, verdict));
    }
    if status != 200 || !ctx.observer.sse {
        // Only a stream is spliced; any other answer to an assembled request goes to the
        // client as it came.
        down.splice = None;
        down.assembler = None;
    }
    let worker_id = ctx.worker.as_ref().map(|w| w.id.as_str()).unwrap_or("");
    down.translator = ctx
        .translation
        .as_ref()
        .map(|t| (t.factory)(status, worker_id));
    if down.assembler.is_some() {
        // The header goes out with the whole answer (`finish`).
        down.held = Some(parts.headers.clone());
        down.started = true;
        return Ok(());
    }
    let translator = down.translator.as_ref();
    let client_status = translator.map_or(status, |t| t.status(status));
    let client_type = translator.map(|t| t.content_type());
    let mut out = client_header(gw, ctx, client_status, &parts.headers, client_type)?;
    let _ = out.insert_header("transfer-encoding", "chunked");
    if session
        .write_response_header(Box::new(out), false)
        .await
        .is_err()
    {
        return Err(AttemptError::Final(None)); // the client left
    }
    down.started = true;
    Ok(())
}

/// The client's response header: the worker's headers less the hop-by-hop ones (and its
/// content type when `content_type` replaces it), decorated by the gateway.
fn client_header(
    gw: &Gateway,
    ctx: &RequestCtx,
    status: u16,
    worker: &http::HeaderMap,
    content_type: Option<&str>,
) -> Result<ResponseHeader, AttemptError> {
    let mut out = ResponseHeader::build(status, Some(worker.len() + 3))
        .map_err(|e| AttemptError::Final(Some(GatewayError::Internal(e.to_string()))))?;
    for (name, value) in worker.iter() {
        let replaced = content_type.is_some() && name == http::header::CONTENT_TYPE;
        if !SKIP_RESPONSE.contains(&name.as_str()) && !replaced {
            let _ = out.append_header(name.clone(), value.clone());
        }
    }
    if let Some(t) = content_type {
        let _ = out.insert_header(http::header::CONTENT_TYPE, t.to_string());
    }
    gw.decorate_response(&mut out, ctx);
    Ok(out)
}

/// Another worker could take this request's stream now.
fn has_alternative(gw: &Gateway, ctx: &RequestCtx) -> bool {
    let pool = gw.state.pool.load();
    let breaker = ctx.config.circuit_breaker.settings();
    pool.eligible(ctx.info.model.as_deref(), &ctx.tried, &breaker)
        .into_iter()
        .any(|i| resume::supports_continuation(pool.workers[i].meta().kind))
}

/// Pass bytes meant for the client through the observer and the translator.
async fn send_through(
    session: &mut Session,
    ctx: &mut RequestCtx,
    down: &mut Downstream,
    data: Bytes,
) -> Result<(), AttemptError> {
    if data.is_empty() {
        return Ok(());
    }
    ctx.observer.on_chunk(&data);
    if let Some(a) = down.assembler.as_mut() {
        a.push(&data);
        return Ok(());
    }
    let data = match down.translator.as_mut() {
        Some(t) => t.chunk(&data),
        None => data,
    };
    send(session, data).await
}

/// Longest wait for a translator's `commit` at the end of a response.
const COMMIT_LIMIT: Duration = Duration::from_secs(2);

/// The response is complete: the translator's last bytes, then the end of the body. A
/// held answer goes out whole here, header first.
async fn finish(
    gw: &Gateway,
    session: &mut Session,
    ctx: &RequestCtx,
    down: &mut Downstream,
) -> Result<(), AttemptError> {
    if let Some(a) = down.assembler.take() {
        return send_assembled(gw, session, ctx, down, a).await;
    }
    if let Some(t) = down.translator.as_mut() {
        send(session, t.finish()).await?;
        commit(t.as_mut()).await;
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(|_| AttemptError::Final(None))
}

/// Send the client the answer assembled from the worker's stream: one JSON response (or
/// its translation), with a `Content-Length`.
async fn send_assembled(
    gw: &Gateway,
    session: &mut Session,
    ctx: &RequestCtx,
    down: &mut Downstream,
    a: Assembler,
) -> Result<(), AttemptError> {
    let json = a.finish().map_err(|why| {
        AttemptError::Final(Some(GatewayError::UpstreamFailed(format!(
            "the worker's answer cannot be assembled: {why}"
        ))))
    })?;
    let (status, content_type, body) = match down.translator.as_mut() {
        Some(t) => {
            let mut body = t.chunk(&json).to_vec();
            body.extend_from_slice(&t.finish());
            // Before any byte: a client that has read its `Content-Length` is done.
            commit(t.as_mut()).await;
            (t.status(200), t.content_type(), Bytes::from(body))
        }
        None => (200, "application/json", json),
    };
    let worker = down.held.take().unwrap_or_default();
    let mut out = client_header(gw, ctx, status, &worker, Some(content_type))?;
    // A JSON answer: none of the stream's own headers.
    for name in ["cache-control", "x-accel-buffering"] {
        out.remove_header(name);
    }
    let _ = out.insert_header("content-length", body.len().to_string());
    if session
        .write_response_header(Box::new(out), false)
        .await
        .is_err()
    {
        return Err(AttemptError::Final(None));
    }
    send(session, body).await?;
    session
        .write_response_body(None, true)
        .await
        .map_err(|_| AttemptError::Final(None))
}

/// A translator's `commit` (a session's exchange), stored before the response ends so the
/// client's next turn finds it.
async fn commit(t: &mut dyn ResponseTranslator) {
    if let Some(work) = t.commit() {
        if tokio::time::timeout(COMMIT_LIMIT, work).await.is_err() {
            tracing::warn!("a session's exchange was not stored within {COMMIT_LIMIT:?}");
        }
    }
}

/// Write a piece of the response body (nothing for an empty piece).
async fn send(session: &mut Session, data: Bytes) -> Result<(), AttemptError> {
    if data.is_empty() {
        return Ok(());
    }
    session
        .write_response_body(Some(data), false)
        .await
        .map_err(|_| AttemptError::Final(None)) // the client left
}
