//! A small pooled HTTP/1.1 client (hyper) for the gateway's own requests to workers: health
//! checks, model discovery, metrics scrapes, and forwarding of bodies too large for Pingora's
//! retry buffer (see `proxy::forward`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Largest probe response read (a `/metrics` page of a big vLLM is ~100 KiB).
pub const MAX_PROBE_BODY: usize = 8 * 1024 * 1024;

/// Build a client with a connect timeout and an idle-pool timeout below the usual 5 s
/// keep-alive of uvicorn-based workers (vLLM, SGLang, LMDeploy).
pub fn build(connect_timeout: Duration, pool_idle: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pool_idle)
        .pool_max_idle_per_host(32)
        .build(connector)
}

/// `GET url` with an overall timeout; returns status and (size-limited) body.
pub async fn get(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let req = http::Request::get(url)
        .header(
            "user-agent",
            concat!("sagellm-gateway/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("bad request for {url}: {e}"))?;
    let fut = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_PROBE_BODY)
            .collect()
            .await
            .map_err(|e| format!("GET {url}: reading body: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("GET {url}: timed out after {timeout:?}"))?
}
