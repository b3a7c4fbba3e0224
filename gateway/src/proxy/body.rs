//! Reading request bodies within Pingora's limits.
//!
//! Pingora 0.9.1 can replay a body it forwards only from its fixed 64 KiB retry buffer; a
//! body read in `request_filter` beyond that is not forwarded at all (seen with
//! pingora-proxy 0.9.1). So:
//! - `Content-Length` ≤ 64 KiB (nearly every chat request): read whole with retry buffering
//!   on; Pingora forwards it from the buffer and can replay it on another worker;
//! - larger or chunked bodies (≤ `max_body_bytes`): read whole by the gateway, then forwarded
//!   on the gateway's own client path ([`super::forward`]), where they are replayable too.
//!
//! Either way the gateway holds the whole body, so routing always sees `model`, wherever the
//! field sits in the JSON.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::ctx::BodyMode;
use crate::config::LimitsConfig;
use crate::error::GatewayError;

/// Pingora's retry buffer size (`BODY_BUF_LIMIT` in pingora-core 0.9.1).
pub const RETRY_BUFFER_LIMIT: usize = 64 * 1024;

/// The declared framing of a request body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Framing {
    pub content_length: Option<usize>,
    pub chunked: bool,
}

impl Framing {
    pub fn has_body(&self) -> bool {
        self.chunked || self.content_length.is_some_and(|n| n > 0)
    }
}

/// Most bytes read and thrown away after an early error response.
pub const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
/// Longest time spent throwing away an unread body.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// After an early error response (413, 400 …) the client may still be sending its body.
/// Closing at once would reset the connection before the client reads the answer (it sees
/// "broken pipe" instead of the 413), so read and discard the rest first, bounded in bytes
/// and time (nginx calls this a lingering close).
pub async fn drain(session: &mut Session) {
    let downstream = session.as_downstream_mut();
    let mut seen = 0usize;
    let discard = async {
        while let Ok(Some(chunk)) = downstream.read_request_body().await {
            seen += chunk.len();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard).await;
}

/// Read `Content-Length` / `Transfer-Encoding`.
pub fn framing(session: &Session) -> Result<Framing, GatewayError> {
    let headers = &session.req_header().headers;
    let chunked = headers.get_all("transfer-encoding").iter().any(|v| {
        v.to_str()
            .map(|s| s.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false)
    });
    let mut lengths = headers.get_all("content-length").iter();
    let content_length = match (lengths.next(), lengths.next()) {
        (None, _) => None,
        (Some(v), None) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| GatewayError::invalid("invalid Content-Length header", None))?,
        ),
        (Some(_), Some(_)) => {
            return Err(GatewayError::invalid(
                "multiple Content-Length headers",
                None,
            ))
        }
    };
    Ok(Framing {
        content_length,
        chunked,
    })
}

/// Read the whole body (see the module doc). Returns how it will be forwarded and the bytes
/// for parsing (the same bytes for `Owned`).
pub async fn read(
    session: &mut Session,
    limits: &LimitsConfig,
) -> Result<(BodyMode, Bytes), GatewayError> {
    let f = framing(session)?;
    if !f.has_body() {
        return Ok((BodyMode::Empty, Bytes::new()));
    }
    let max = limits.max_body_bytes;
    if f.content_length.is_some_and(|n| n > max) {
        return Err(GatewayError::PayloadTooLarge { limit: max });
    }
    let expects_continue = session
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let downstream = session.as_downstream_mut();
    if expects_continue {
        downstream
            .write_continue_response()
            .await
            .map_err(|e| GatewayError::invalid(e.to_string(), None))?;
    }
    let replayable = !f.chunked && f.content_length.is_some_and(|n| n <= RETRY_BUFFER_LIMIT);
    if replayable {
        downstream.enable_retry_buffering();
    }
    let mut buf = BytesMut::with_capacity(f.content_length.unwrap_or(16 * 1024).min(max));
    let reading = async {
        while let Some(chunk) = downstream.read_request_body().await.map_err(|e| {
            GatewayError::invalid(format!("could not read the request body: {e}"), None)
        })? {
            if buf.len() + chunk.len() > max {
                return Err(GatewayError::PayloadTooLarge { limit: max });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_millis(limits.body_read_timeout_ms), reading)
        .await
        .map_err(|_| GatewayError::RequestTimeout)??;
    let bytes = buf.freeze();
    if replayable && !session.as_downstream().retry_buffer_truncated() {
        Ok((BodyMode::Replayable, bytes))
    } else {
        Ok((BodyMode::Owned(bytes.clone()), bytes))
    }
}
