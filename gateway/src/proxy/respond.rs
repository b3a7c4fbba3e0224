//! Writing responses the gateway answers itself (local endpoints and errors).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

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

/// Write a JSON value with status 200-ish.
pub async fn write_json(
    session: &mut Session,
    status: u16,
    value: &serde_json::Value,
) -> pingora::Result<()> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    write(
        session,
        status,
        &[("content-type", "application/json".into())],
        body,
        false,
    )
    .await
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
