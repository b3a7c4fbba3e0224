//! A small pooled HTTP/1.1 client (hyper) for the gateway's own requests to workers: health
//! checks, model discovery, metrics scrapes, and forwarding of bodies too large for Pingora's
//! retry buffer (see `proxy::forward`). `https://` workers are reached over rustls, checked
//! against the roots of [`crate::tls::upstream`] unless the worker is configured with
//! `insecure_skip_verify`; the worker's configured headers go with every request.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;

use crate::worker::spec::WorkerSpec;

type Inner = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Two pools: certificates verified, and accept-any for `insecure_skip_verify` workers.
#[derive(Clone)]
pub struct HttpClient {
    verified: Inner,
    insecure: Inner,
}

impl HttpClient {
    /// Send `req` to `worker` (its URL's scheme picks plain or TLS), with its configured
    /// headers in place of any of the same name.
    pub fn request(
        &self,
        worker: &WorkerSpec,
        mut req: http::Request<Full<Bytes>>,
    ) -> ResponseFuture {
        for (name, value) in &worker.options.headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        let client = if worker.options.insecure_skip_verify {
            &self.insecure
        } else {
            &self.verified
        };
        client.request(req)
    }

    /// Send `req` to a service that is not a worker (the trace collector), certificates
    /// verified.
    pub fn send(&self, req: http::Request<Full<Bytes>>) -> ResponseFuture {
        self.verified.request(req)
    }
}

/// Largest probe response read (a `/metrics` page of a big vLLM is ~100 KiB).
pub const MAX_PROBE_BODY: usize = 8 * 1024 * 1024;

/// Build a client with a connect timeout and an idle-pool timeout below the usual 5 s
/// keep-alive of uvicorn-based workers (vLLM, SGLang, LMDeploy).
pub fn build(connect_timeout: Duration, pool_idle: Duration, roots: RootCertStore) -> HttpClient {
    let (verified, insecure) = crate::tls::upstream::client_configs(roots);
    let pool = |tls: rustls::ClientConfig| {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(pool_idle)
            .pool_max_idle_per_host(32)
            .build(connector)
    };
    HttpClient {
        verified: pool(verified),
        insecure: pool(insecure),
    }
}

/// `GET {worker.url}{path}` with an overall timeout; returns status and (size-limited) body.
pub async fn get(
    client: &HttpClient,
    worker: &WorkerSpec,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let url = format!("{}{path}", worker.url);
    let url = url.as_str();
    let req = http::Request::get(url)
        .header(
            "user-agent",
            concat!("sagellm-gateway/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("bad request for {url}: {e}"))?;
    let fut = async {
        let resp = client
            .request(worker, req)
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
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

/// An error with its causes (hyper's own message is only "client error (Connect)"; the TLS
/// reason — an unknown issuer, a wrong name — is further down the chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
