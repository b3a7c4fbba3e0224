//! The request's OpenTelemetry span (see `otel`): begun when an LLM request arrives, told of
//! every attempt (the worker, the strategy, how many candidates it chose from, why), of every
//! attempt's end, and finished in `logging` with the GenAI attributes (model, token usage,
//! finish reasons), the status and the time to first token. Nothing here runs when tracing is
//! off or the request is not sampled (`ctx.span` is `None`).

use std::time::Instant;

use pingora::http::RequestHeader;

use super::account::Verdict;
use super::ctx::RequestCtx;
use super::route::{Endpoint, Route};
use crate::otel::context::format_traceparent;
use crate::otel::Value;
use crate::state::AppState;
use crate::worker::Worker;

/// Begin the span of an LLM request (a no-op unless tracing is on and it is sampled).
pub(super) fn begin(state: &AppState, req: &RequestHeader, ctx: &mut RequestCtx) {
    let Some(tracer) = &state.tracer else {
        return;
    };
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    ctx.span = tracer.begin(header("traceparent"), header("tracestate"), ctx.start);
    if let Some(span) = ctx.span.as_mut() {
        span.set("http.request.method", req.method.as_str());
        span.set("url.path", req.uri.path());
        ctx.observer.want_finish_reasons = true;
    }
}

/// The `traceparent` the worker gets: the gateway's span as its parent.
pub(super) fn worker_traceparent(ctx: &RequestCtx) -> Option<String> {
    ctx.span
        .as_ref()
        .map(|s| format_traceparent(s.trace_id(), s.span_id(), true))
}

/// How a worker was chosen, for the span.
pub(crate) struct Decision<'a> {
    pub worker: &'a Worker,
    pub strategy: &'static str,
    pub candidates: usize,
    /// `policy` (the strategy chose), `pinned` (session or prefix preference),
    /// `soft_limit` (every candidate was at its rate limit; this one was used anyway).
    pub reason: &'static str,
}

/// An attempt was dispatched to `d.worker`.
pub(crate) fn on_dispatch(ctx: &mut RequestCtx, d: &Decision<'_>) {
    let attempt = ctx.attempts();
    let Some(span) = ctx.span.as_mut() else {
        return;
    };
    let now = Instant::now();
    if attempt > 1 {
        span.event(
            now,
            "retry",
            vec![("sagellm.attempt", Value::from(attempt))],
        );
    }
    span.event(
        now,
        "attempt",
        vec![
            ("sagellm.attempt", Value::from(attempt)),
            ("sagellm.worker.id", Value::from(d.worker.id.as_str())),
            ("server.address", Value::from(d.worker.spec.url.as_str())),
            ("sagellm.routing.strategy", Value::from(d.strategy)),
            (
                "sagellm.routing.candidates",
                Value::from(d.candidates as u64),
            ),
            ("sagellm.routing.reason", Value::from(d.reason)),
        ],
    );
    span.set("sagellm.worker.id", d.worker.id.as_str());
    span.set("server.address", d.worker.spec.url.as_str());
    span.set("sagellm.routing.strategy", d.strategy);
    span.set("sagellm.routing.candidates", d.candidates as u64);
    span.set("sagellm.routing.reason", d.reason);
}

/// An attempt on `worker` ended with `verdict`.
pub(super) fn on_attempt_end(ctx: &mut RequestCtx, worker: &Worker, verdict: Verdict) {
    let status = ctx.observer.status;
    let Some(span) = ctx.span.as_mut() else {
        return;
    };
    let mut attributes = vec![
        ("sagellm.worker.id", Value::from(worker.id.as_str())),
        ("sagellm.verdict", Value::from(verdict.as_str())),
    ];
    if let Some(s) = status {
        attributes.push(("http.response.status_code", Value::from(u32::from(s))));
    }
    let name = if verdict == Verdict::Success {
        "attempt.end"
    } else {
        "attempt.failed"
    };
    span.event(Instant::now(), name, attributes);
}

/// `gen_ai.operation.name` of an endpoint.
fn operation(route: &Route) -> &'static str {
    match route {
        Route::Llm(Endpoint::Chat | Endpoint::Messages) => "chat",
        Route::Llm(Endpoint::Completions) => "text_completion",
        Route::Llm(Endpoint::Embeddings) => "embeddings",
        _ => "request",
    }
}

/// Finish the span: the request ended with `status` (0: no response was written).
pub(super) fn finish(state: &AppState, ctx: &mut RequestCtx, status: u16, error: Option<String>) {
    let (Some(tracer), Some(mut span)) = (&state.tracer, ctx.span.take()) else {
        return;
    };
    let op = operation(&ctx.route);
    span.set("gen_ai.operation.name", op);
    span.set_name(match &ctx.info.model {
        Some(m) => format!("{op} {m}"),
        None => op.to_string(),
    });
    if let Some(m) = &ctx.info.model {
        span.set("gen_ai.request.model", m.as_str());
    }
    span.set("sagellm.stream", ctx.info.stream);
    span.set("sagellm.attempts", ctx.attempts());
    span.set("http.response.status_code", u32::from(status));
    let o = &ctx.observer;
    let proxied = ctx.worker.is_some() && (200..300).contains(&status);
    if proxied {
        if let Some(n) = o.prompt_tokens {
            span.set("gen_ai.usage.input_tokens", n);
        }
        if let Some(n) = o.output_tokens() {
            span.set("gen_ai.usage.output_tokens", n);
        }
        if !o.finish_reasons.is_empty() {
            span.set(
                "gen_ai.response.finish_reasons",
                Value::StrList(o.finish_reasons.clone()),
            );
        }
        if let Some(first) = o.first_byte.filter(|_| o.sse) {
            span.set(
                "sagellm.ttft_seconds",
                first.saturating_duration_since(ctx.start).as_secs_f64(),
            );
            span.event(first, "first_token", vec![]);
        }
    }
    if status == 0 || status >= 400 {
        span.set("error.type", status.to_string());
    }
    if status == 0 || status >= 500 {
        span.set_error(error.unwrap_or_else(|| format!("status {status}")));
    }
    tracer.end(span, Instant::now());
}
