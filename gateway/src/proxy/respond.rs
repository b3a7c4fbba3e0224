//! Writing responses the gateway answers itself (local endpoints and errors), the final
//! error of a request, and the headers the gateway adds to proxied responses.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::{Gateway, WORKER_HEADER};
use crate::error::{ApiFlavor, GatewayError};

/// Write a complete response with a body. `close` asks the client to drop the connection
/// (used when an unread request body is still on the wire).
pub async fn write(
    session: &mut Session,
    status: u16,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
    close: bool,
) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 3))?;
    for (k, v) in headers {
        resp.insert_header(*k, v.as_str())?;
    }
    resp.insert_header("content-length", body.len().to_string())?;
    if close {
        resp.insert_header("connection", "close")?;
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == pingora::http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
}

/// Write `err` in the client's API shape.
pub async fn write_error(
    session: &mut Session,
    err: &GatewayError,
    flavor: ApiFlavor,
    close: bool,
) -> pingora::Result<()> {
    let (status, headers, body) = err.render(flavor);
    write(session, status, &headers, body, close).await
}

impl Gateway {
    /// Headers the gateway adds to every proxied response.
    pub(super) fn decorate_response(&self, resp: &mut ResponseHeader, ctx: &RequestCtx) {
        if let Some(w) = &ctx.worker {
            let _ = resp.insert_header(WORKER_HEADER, w.id_header.clone());
        }
        if ctx.observer.sse {
            // Tell buffering reverse proxies in front of us (nginx) to pass events through.
            let _ = resp.insert_header("x-accel-buffering", "no");
            let _ = resp.insert_header("cache-control", "no-cache");
        }
    }

    /// The final error: a JSON response, or — when a stream already started — an SSE error
    /// event that the OpenAI SDKs raise, ending the stream.
    pub(super) async fn send_error(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        err: &GatewayError,
    ) {
        let result = if session.response_written().is_none() {
            write_error(session, err, ctx.flavor, true).await
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
