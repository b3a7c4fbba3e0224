//! `GET /metrics`: Prometheus text with live values, in the dialect of [`MetricsFlavor`].

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::config::MetricsFlavor;
use crate::control::SimControl;
use crate::openai::not_found;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`
pub(crate) async fn metrics(State(control): State<Arc<SimControl>>) -> Response {
    let text = match control.flavor() {
        MetricsFlavor::Vllm => render_vllm(&control),
        MetricsFlavor::Lmdeploy => render_lmdeploy(&control),
        MetricsFlavor::None => return not_found().await,
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends one metric family with a single sample.
fn family(out: &mut String, name: &str, kind: &str, help: &str, labels: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name}{{{labels}}} {value:?}");
}

/// The vLLM v1 names a gateway scrapes.
pub(crate) fn render_vllm(c: &SimControl) -> String {
    let model = format!("model_name=\"{}\"", escape(c.primary_model()));
    let sleeping = if c.knobs().sleeping { 1.0 } else { 0.0 };
    let mut out = String::new();
    #[rustfmt::skip]
    let rows: [(&str, &str, &str, String, f64); 9] = [
        ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", model.clone(), c.running() as f64),
        ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", model.clone(), c.waiting() as f64),
        ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", model.clone(), c.kv_cache_usage()),
        ("vllm:engine_sleep_state", "gauge", "Engine sleep state; weights_offloaded = 1 means the engine sleeps.", format!("{model},sleep_state=\"weights_offloaded\""), sleeping),
        ("vllm:request_success_total", "counter", "Count of successfully processed requests.", model.clone(), c.completed_total() as f64),
        ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", model.clone(), c.prompt_tokens_total() as f64),
        ("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", model.clone(), c.generation_tokens_total() as f64),
        ("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.", model.clone(), c.prefix_cache_queries_total() as f64),
        ("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.", model, c.prefix_cache_hits_total() as f64),
    ];
    for (name, kind, help, labels, value) in rows {
        family(&mut out, name, kind, help, &labels, value);
    }
    out
}

/// The LMDeploy names a gateway scrapes.
pub(crate) fn render_lmdeploy(c: &SimControl) -> String {
    let model = format!("model_name=\"{}\"", escape(c.primary_model()));
    let mut out = String::new();
    #[rustfmt::skip]
    let rows: [(&str, &str, f64); 3] = [
        ("lmdeploy:num_requests_running", "Number of requests currently running.", c.running() as f64),
        ("lmdeploy:num_requests_waiting", "Number of requests waiting.", c.waiting() as f64),
        ("lmdeploy:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", c.kv_cache_usage()),
    ];
    for (name, help, value) in rows {
        family(&mut out, name, "gauge", help, &model, value);
    }
    out
}
