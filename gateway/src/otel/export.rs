//! The batching exporter, off the request path: a request hands its finished span to a
//! bounded queue (`try_send`: never waits; a full queue drops the span and counts it), and one
//! thread of its own — with its own single-threaded runtime, so a slow or unreachable
//! collector never takes time from the proxy's threads — sends batches of up to
//! `max_batch_spans` every `export_interval_ms` (or as soon as a batch is full) as
//! `POST <traces_endpoint>` with `Content-Type: application/x-protobuf`.
//!
//! A failed export is not retried (the spans are counted as failed and the next batch goes
//! on); the first failure after a success and the first success after failures are logged.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};

use super::otlp::{self, Resource};
use super::span::SpanData;
use crate::config::TelemetryConfig;

/// `llm_gateway_trace_spans_total{result}`.
#[derive(Clone)]
pub struct SpanCounters {
    pub exported: IntCounter,
    pub failed: IntCounter,
    pub dropped: IntCounter,
}

enum Msg {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The request side of the exporter.
pub struct Exporter {
    tx: mpsc::Sender<Msg>,
    dropped: IntCounter,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

struct Sender {
    client: crate::http_client::HttpClient,
    uri: http::Uri,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    timeout: Duration,
    resource: Resource,
    counters: SpanCounters,
    failing: bool,
}

impl Exporter {
    /// Start the export thread. `Err` when the endpoint or a header is unusable, or the thread
    /// cannot start.
    pub fn start(
        cfg: &TelemetryConfig,
        endpoint: &str,
        roots: rustls::RootCertStore,
        resource: Resource,
        counters: SpanCounters,
    ) -> Result<Self, String> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| format!("telemetry.traces_endpoint `{endpoint}`: {e}"))?;
        let mut headers = Vec::new();
        for (k, v) in &cfg.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("telemetry.headers `{k}`: {e}"))?;
            let mut value = http::HeaderValue::from_str(v)
                .map_err(|e| format!("telemetry.headers `{k}`: {e}"))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let (tx, rx) = mpsc::channel(cfg.max_queue_spans);
        let interval = Duration::from_millis(cfg.export_interval_ms);
        let max_batch = cfg.max_batch_spans;
        let timeout = Duration::from_millis(cfg.export_timeout_ms);
        let dropped = counters.dropped.clone();
        std::thread::Builder::new()
            .name("otel-export".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "trace export runtime did not start; no traces");
                        return;
                    }
                };
                rt.block_on(async move {
                    let sender = Sender {
                        client: crate::http_client::build(timeout, Duration::from_secs(30), roots),
                        uri,
                        headers,
                        timeout,
                        resource,
                        counters,
                        failing: false,
                    };
                    run(rx, sender, interval, max_batch).await;
                });
            })
            .map_err(|e| format!("starting the trace export thread: {e}"))?;
        Ok(Self { tx, dropped })
    }

    /// Queue a finished span; never waits (a full queue drops it).
    pub fn submit(&self, span: SpanData) {
        if self.tx.try_send(Msg::Span(Box::new(span))).is_err() {
            self.dropped.inc();
        }
    }

    /// Send what is queued now; waits at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (done, wait) = oneshot::channel();
        let queued = self
            .tx
            .send_timeout(Msg::Flush(done), timeout)
            .await
            .is_ok();
        if queued {
            let _ = tokio::time::timeout(timeout, wait).await;
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Msg>,
    mut sender: Sender,
    interval: Duration,
    max_batch: usize,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(max_batch);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Span(s)) => {
                    batch.push(*s);
                    if batch.len() >= max_batch {
                        sender.send(&mut batch).await;
                    }
                }
                Some(Msg::Flush(done)) => {
                    // Everything queued before the flush is in `rx` ahead of it: take it too.
                    while let Ok(Msg::Span(s)) = rx.try_recv() {
                        batch.push(*s);
                        if batch.len() >= max_batch {
                            sender.send(&mut batch).await;
                        }
                    }
                    sender.send(&mut batch).await;
                    let _ = done.send(());
                }
                None => {
                    sender.send(&mut batch).await;
                    return;
                }
            },
            _ = tick.tick() => sender.send(&mut batch).await,
        }
    }
}

impl Sender {
    /// Export and empty `batch` (nothing when it is empty).
    async fn send(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let body = otlp::export_request(&self.resource, batch);
        batch.clear();
        let result = self.post(Bytes::from(body)).await;
        match result {
            Ok(()) => {
                self.counters.exported.inc_by(n);
                if std::mem::replace(&mut self.failing, false) {
                    tracing::info!(endpoint = %self.uri, "trace export works again");
                }
            }
            Err(e) => {
                self.counters.failed.inc_by(n);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(endpoint = %self.uri, error = %e, "trace export failed; spans are dropped until the collector answers (requests are not affected)");
                }
            }
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), String> {
        let mut req = http::Request::post(self.uri.clone())
            .header("content-type", "application/x-protobuf")
            .header(
                "user-agent",
                concat!("sagellm-gateway/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        for (k, v) in &self.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let resp = tokio::time::timeout(self.timeout, self.client.send(req))
            .await
            .map_err(|_| format!("no answer in {:?}", self.timeout))?
            .map_err(|e| crate::http_client::error_chain(&e))?;
        let status = resp.status();
        // Read the (small: a partial-success message at most) body so the connection is
        // reused; its content is not needed.
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024);
        let _ = tokio::time::timeout(self.timeout, body.collect()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}
