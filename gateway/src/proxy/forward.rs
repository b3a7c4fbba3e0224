//! The gateway's own forwarding path, for request bodies Pingora cannot forward after they
//! were read (> 64 KiB or chunked; see [`super::body`]). The whole body is in memory
//! (bounded by `max_body_bytes`), so it is sent with a `Content-Length` and can be replayed
//! on another worker when an attempt fails before any byte reached the client. The response
//! streams back chunk by chunk, exactly like the Pingora path — or, for a request with a
//! [`Translation`](crate::edge::Translation), through its translator.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::account::Verdict;
use super::ctx::RequestCtx;
use super::{retry, select, Gateway};
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

/// Why an attempt ended without a response for the client.
enum AttemptError {
    /// Nothing reached the client: another worker may be tried.
    Retryable(GatewayError, Verdict),
    /// The response started (or the client left): the request is over.
    Final(Option<GatewayError>),
}

/// Forward `body` with retries. `Ok` once the response was written (or the client left);
/// `Err` is the error to answer — a JSON error before the response started, an error event
/// in the stream after.
pub(super) async fn run(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: Bytes,
) -> Result<(), GatewayError> {
    let cfg = ctx.config.clone();
    loop {
        if !retry::wait_before(&cfg.retry, ctx).await {
            return Err(retry::budget_spent(ctx));
        }
        let worker = select::dispatch(&gw.state, ctx).await?;
        let attempted = attempt(gw, session, ctx, &worker.spec, body.clone()).await;
        match attempted {
            Ok(()) | Err(AttemptError::Final(None)) => return Ok(()),
            Err(AttemptError::Final(Some(e))) => return Err(e),
            Err(AttemptError::Retryable(e, verdict)) => {
                tracing::warn!(worker = %worker.id, error = %e, attempt = ctx.attempts(), "attempt failed");
                gw.end_attempt(ctx, verdict);
                if !retry::budget_left(&cfg.retry, ctx) {
                    return Err(e);
                }
            }
        }
    }
}

async fn attempt(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    spec: &WorkerSpec,
    body: Bytes,
) -> Result<(), AttemptError> {
    let cfg = ctx.config.clone();
    let read_timeout = Duration::from_millis(cfg.upstream.read_timeout_ms);
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
    let req = req
        .header("host", spec.host_header())
        .header("content-length", body.len())
        .body(Full::new(body))
        .map_err(|e| {
            AttemptError::Final(Some(GatewayError::Internal(format!(
                "building the upstream request: {e}"
            ))))
        })?;

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
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    ctx.observer.on_headers(status, content_type);
    if retry::RETRY_STATUSES.contains(&status) && retry::budget_left(&cfg.retry, ctx) {
        let e = GatewayError::UpstreamFailed(format!("the worker answered {status}"));
        return Err(AttemptError::Retryable(e, Verdict::of_status(status)));
    }

    let worker_id = ctx.worker.as_ref().map(|w| w.id.as_str()).unwrap_or("");
    let mut translator = ctx
        .translation
        .as_ref()
        .map(|t| (t.factory)(status, worker_id));
    let client_status = translator.as_ref().map_or(status, |t| t.status(status));
    let mut out = ResponseHeader::build(client_status, Some(parts.headers.len() + 3))
        .map_err(|e| AttemptError::Final(Some(GatewayError::Internal(e.to_string()))))?;
    for (name, value) in parts.headers.iter() {
        let replaced = translator.is_some() && name == http::header::CONTENT_TYPE;
        if !SKIP_RESPONSE.contains(&name.as_str()) && !replaced {
            let _ = out.append_header(name.clone(), value.clone());
        }
    }
    if let Some(t) = &translator {
        let _ = out.insert_header(http::header::CONTENT_TYPE, t.content_type());
    }
    gw.decorate_response(&mut out, ctx);
    let _ = out.insert_header("transfer-encoding", "chunked");
    if session
        .write_response_header(Box::new(out), false)
        .await
        .is_err()
    {
        return Err(AttemptError::Final(None)); // the client left
    }
    loop {
        let broke = match tokio::time::timeout(read_timeout, upstream_body.frame()).await {
            Err(_) => GatewayError::UpstreamTimeout("the worker stalled mid-response".into()),
            Ok(None) => {
                ctx.upstream_done = Some(std::time::Instant::now());
                break;
            }
            Ok(Some(Err(e))) => GatewayError::UpstreamFailed(format!("the worker broke off: {e}")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    ctx.observer.on_chunk(&data);
                    let data = match translator.as_mut() {
                        Some(t) => t.chunk(&data),
                        None => data,
                    };
                    send(session, data).await?;
                }
                continue;
            }
        };
        // The response has started: end it in the client's API when a translator can.
        if let Some(t) = translator.as_mut() {
            send(session, t.abort(&broke.to_string())).await?;
            let _ = session.write_response_body(None, true).await;
        }
        return Err(AttemptError::Final(Some(broke)));
    }
    if let Some(t) = translator.as_mut() {
        send(session, t.finish()).await?;
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(|_| AttemptError::Final(None))?;
    Ok(())
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
