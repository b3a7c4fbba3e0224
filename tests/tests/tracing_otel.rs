//! OpenTelemetry traces end to end: a real OTLP/HTTP receiver on loopback (axum, bodies
//! decoded with `prost` from the message definitions of `opentelemetry/proto`, an independent
//! reader of what the gateway writes by hand), a gateway with `[telemetry]` pointing at it,
//! sims that note the `traceparent` they received. Loopback only; every wait is bounded.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{chat_body, eventually, sim, Fleet};
use futures_util::StreamExt;
use prost::Message;
use serde_json::{json, Value};

// ---- the OTLP messages the receiver decodes (field numbers from opentelemetry/proto) ----

#[derive(Clone, PartialEq, prost::Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Resource {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    scope: Option<Scope>,
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Scope {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Span {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    name: String,
    #[prost(int32, tag = "6")]
    kind: i32,
    #[prost(fixed64, tag = "7")]
    start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    attributes: Vec<KeyValue>,
    #[prost(message, repeated, tag = "11")]
    events: Vec<Event>,
    #[prost(message, optional, tag = "15")]
    status: Option<SpanStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(fixed64, tag = "1")]
    time_unix_nano: u64,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "3")]
    attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SpanStatus {
    #[prost(string, tag = "2")]
    message: String,
    #[prost(int32, tag = "3")]
    code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyValue {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AnyValue {
    #[prost(oneof = "Any", tags = "1, 2, 3, 4, 5")]
    value: Option<Any>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Any {
    #[prost(string, tag = "1")]
    Str(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(ArrayValue),
}

#[derive(Clone, PartialEq, prost::Message)]
struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    values: Vec<AnyValue>,
}

/// `SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`.
const KIND_SERVER: i32 = 2;
const STATUS_ERROR: i32 = 2;

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_attr(attrs: &[KeyValue], key: &str) -> String {
    match attr(attrs, key) {
        Some(Any::Str(s)) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> i64 {
    match attr(attrs, key) {
        Some(Any::Int(i)) => *i,
        other => panic!("{key}: {other:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- the receiver ----

#[derive(Default)]
struct Received {
    /// Every decoded span with its batch's resource attributes.
    spans: Vec<(Vec<KeyValue>, Span)>,
    /// Headers of the last export request.
    headers: Option<HeaderMap>,
    bad_bodies: usize,
}

type Shared = Arc<Mutex<Received>>;

async fn receive(State(rx): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut rx = rx.lock().unwrap();
    let ok_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/x-protobuf");
    match ExportTraceServiceRequest::decode(body) {
        Ok(req) if ok_type => {
            for rs in req.resource_spans {
                let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
                for ss in rs.scope_spans {
                    assert_eq!(
                        ss.scope.as_ref().map(|s| s.name.as_str()),
                        Some("sagellm-gateway")
                    );
                    for span in ss.spans {
                        rx.spans.push((resource.clone(), span));
                    }
                }
            }
            rx.headers = Some(headers);
            StatusCode::OK
        }
        _ => {
            rx.bad_bodies += 1;
            StatusCode::BAD_REQUEST
        }
    }
}

struct Collector {
    url: String,
    received: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Collector {
        let received = Shared::default();
        let app = axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Collector {
            url,
            received,
            server,
        }
    }

    /// Wait until a span with `trace_id` arrived, and return it with its resource.
    async fn span_of(&self, trace_id: &str) -> (Vec<KeyValue>, Span) {
        let find = || {
            let rx = self.received.lock().unwrap();
            assert_eq!(rx.bad_bodies, 0, "undecodable export bodies");
            rx.spans
                .iter()
                .find(|(_, s)| hex(&s.trace_id) == trace_id)
                .cloned()
        };
        eventually(&format!("span of trace {trace_id} exported"), 10, || {
            find().is_some()
        })
        .await;
        find().unwrap()
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().spans.len()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const MODEL: &str = "traced-model";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

async fn traced_fleet(
    collector: &Collector,
    tweak: impl FnOnce(&mut sagellm_gateway::config::Config),
) -> Fleet {
    let url = collector.url.clone();
    Fleet::start(vec![sim("a", MODEL), sim("b", MODEL)], move |c| {
        c.telemetry.traces_endpoint = Some(url);
        c.telemetry.export_interval_ms = 50;
        c.telemetry.service_name = "gw-under-test".into();
        c.telemetry
            .headers
            .insert("x-collector-key".into(), "collector-secret".into());
        tweak(c);
    })
    .await
}

/// The sim's noted `traceparent` (the one of the sim that served the last request).
fn worker_traceparents(fleet: &Fleet) -> Vec<Option<String>> {
    fleet
        .sims
        .iter()
        .map(|s| s.control().last_traceparent())
        .collect()
}

#[tokio::test]
async fn a_request_span_with_genai_attributes_continued_by_the_worker() {
    let collector = Collector::start().await;
    let fleet = traced_fleet(&collector, |_| {}).await;

    // A plain request under the client's trace.
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "vendor=opaque")
        .json(&chat_body(MODEL, "trace me"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let served: Value = resp.json().await.unwrap();
    let (resource, span) = collector.span_of(TRACE).await;

    assert_eq!(str_attr(&resource, "service.name"), "gw-under-test");
    assert_eq!(
        hex(&span.parent_span_id),
        PARENT,
        "the client's span is the parent"
    );
    assert_eq!(span.trace_state, "vendor=opaque");
    assert_eq!(span.kind, KIND_SERVER);
    assert_eq!(span.name, format!("chat {MODEL}"));
    assert!(span.end_time_unix_nano > span.start_time_unix_nano);
    let a = &span.attributes;
    assert_eq!(str_attr(a, "gen_ai.operation.name"), "chat");
    assert_eq!(str_attr(a, "gen_ai.request.model"), MODEL);
    assert_eq!(
        int_attr(a, "gen_ai.usage.input_tokens"),
        served["usage"]["prompt_tokens"].as_i64().unwrap()
    );
    assert_eq!(
        int_attr(a, "gen_ai.usage.output_tokens"),
        served["usage"]["completion_tokens"].as_i64().unwrap()
    );
    let Some(Any::Array(reasons)) = attr(a, "gen_ai.response.finish_reasons") else {
        panic!("no finish reasons: {a:?}");
    };
    assert_eq!(
        reasons.values[0].value,
        Some(Any::Str(
            served["choices"][0]["finish_reason"]
                .as_str()
                .unwrap()
                .into()
        ))
    );
    assert_eq!(int_attr(a, "http.response.status_code"), 200);
    assert_eq!(int_attr(a, "sagellm.attempts"), 1);
    assert_eq!(int_attr(a, "sagellm.routing.candidates"), 2);
    assert_eq!(str_attr(a, "sagellm.routing.reason"), "policy");
    let strategy = str_attr(a, "sagellm.routing.strategy");
    assert!(!strategy.is_empty());
    let attempt = span
        .events
        .iter()
        .find(|e| e.name == "attempt")
        .expect("attempt event");
    assert_eq!(int_attr(&attempt.attributes, "sagellm.attempt"), 1);
    assert_eq!(
        str_attr(&attempt.attributes, "sagellm.routing.strategy"),
        strategy
    );
    assert!(span.status.as_ref().is_none_or(|s| s.code != STATUS_ERROR));

    // The worker that served it got the trace with the gateway's span as parent.
    let address = str_attr(a, "server.address");
    let served_by = fleet.sims.iter().position(|s| s.url() == address).unwrap();
    assert_eq!(
        worker_traceparents(&fleet)[served_by].as_deref(),
        Some(format!("00-{TRACE}-{}-01", hex(&span.span_id)).as_str())
    );
    // The collector's key went with the export.
    let rx = collector.received.lock().unwrap().headers.clone().unwrap();
    assert_eq!(rx["x-collector-key"], "collector-secret");
    // … and is not shown by the management API.
    let shown: Value = fleet.get_json("/api/config").await;
    assert!(!shown.to_string().contains("collector-secret"), "{shown}");

    // A stream: time to first token and the first-token event; usage from the last chunk.
    let trace2 = "0af7651916cd43dd8448eb211c80319c";
    let mut body = chat_body(MODEL, "stream me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{trace2}-b7ad6b7169203331-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.contains("[DONE]"));
    let (_, span) = collector.span_of(trace2).await;
    let a = &span.attributes;
    assert_eq!(attr(a, "sagellm.stream"), Some(&Any::Bool(true)));
    let Some(Any::Double(ttft)) = attr(a, "sagellm.ttft_seconds") else {
        panic!("no ttft: {a:?}");
    };
    assert!(*ttft > 0.0 && *ttft < 10.0, "{ttft}");
    assert!(span.events.iter().any(|e| e.name == "first_token"));
    assert!(int_attr(a, "gen_ai.usage.output_tokens") >= 1);

    fleet.stop().await;
}

#[tokio::test]
async fn new_traces_unsampled_callers_and_malformed_headers() {
    let collector = Collector::start().await;
    let fleet = traced_fleet(&collector, |c| {
        c.routing.strategy = sagellm_gateway::config::Strategy::RoundRobin;
    })
    .await;
    let send = |tp: Option<&'static str>| {
        let mut req = fleet
            .http
            .post(fleet.url("/v1/chat/completions"))
            .json(&chat_body(MODEL, "hello"));
        if let Some(tp) = tp {
            req = req.header("traceparent", tp);
        }
        req.send()
    };
    let served_traceparent = |fleet: &Fleet| {
        worker_traceparents(fleet)
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    };

    // No traceparent: a new root trace, which the worker continues.
    assert_eq!(send(None).await.unwrap().status(), 200);
    let seen = served_traceparent(&fleet);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let trace_id = seen[0].split('-').nth(1).unwrap().to_string();
    let (_, span) = collector.span_of(&trace_id).await;
    assert!(span.parent_span_id.is_empty(), "a root span");
    assert_eq!(seen[0], format!("00-{trace_id}-{}-01", hex(&span.span_id)));

    // A malformed traceparent is ignored: the request works and starts its own trace.
    let before = collector.count();
    let resp = send(Some("00-XYZ-not-a-trace")).await.unwrap();
    assert_eq!(resp.status(), 200);
    eventually("the malformed request's span", 10, || {
        collector.count() > before
    })
    .await;
    {
        let rx = collector.received.lock().unwrap();
        let (_, last) = rx.spans.last().unwrap();
        assert!(last.parent_span_id.is_empty());
        assert_ne!(hex(&last.trace_id), trace_id);
    }

    // The caller decided not to sample: no span, and its header reaches the worker unchanged.
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    let before = collector.count();
    for _ in 0..2 {
        assert_eq!(send(Some(unsampled)).await.unwrap().status(), 200);
    }
    let seen = served_traceparent(&fleet);
    assert!(seen.iter().all(|t| t == unsampled), "{seen:?}");
    // A later sampled request is exported; the unsampled ones never were.
    assert_eq!(
        send(Some(
            "00-33333333333333333333333333333333-4444444444444444-01"
        ))
        .await
        .unwrap()
        .status(),
        200
    );
    collector.span_of("33333333333333333333333333333333").await;
    assert_eq!(collector.count(), before + 1);
    fleet.stop().await;
}

#[tokio::test]
async fn retries_are_events_and_a_failed_request_is_an_error_span() {
    let collector = Collector::start().await;
    let fleet = traced_fleet(&collector, |c| {
        c.retry.max_attempts = 2;
        c.retry.initial_backoff_ms = 1;
        c.retry.max_backoff_ms = 2;
        c.circuit_breaker.enabled = false;
    })
    .await;
    for s in &fleet.sims {
        s.control().set_status(Some(503));
    }
    let trace = "5b8efff798038103d269b633813fc60c";
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{trace}-eee19b7ec3c1b174-01"))
        .json(&chat_body(MODEL, "fail twice"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let (_, span) = collector.span_of(trace).await;
    let names: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "attempt",
            "attempt.failed",
            "retry",
            "attempt",
            "attempt.failed"
        ],
        "{names:?}"
    );
    let workers: Vec<String> = span
        .events
        .iter()
        .filter(|e| e.name == "attempt")
        .map(|e| str_attr(&e.attributes, "sagellm.worker.id"))
        .collect();
    assert_ne!(workers[0], workers[1], "the retry went to the other worker");
    assert_eq!(
        int_attr(&span.events[1].attributes, "http.response.status_code"),
        503
    );
    assert_eq!(int_attr(&span.attributes, "sagellm.attempts"), 2);
    assert_eq!(int_attr(&span.attributes, "http.response.status_code"), 503);
    assert_eq!(str_attr(&span.attributes, "error.type"), "503");
    assert_eq!(span.status.as_ref().map(|s| s.code), Some(STATUS_ERROR));
    assert!(attr(&span.attributes, "gen_ai.usage.output_tokens").is_none());
    fleet.stop().await;
}

#[tokio::test]
async fn an_unreachable_collector_never_fails_requests() {
    // A port with nothing behind it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let fleet = Fleet::start(vec![sim("a", MODEL)], move |c| {
        c.telemetry.traces_endpoint = Some(format!("http://127.0.0.1:{closed}/v1/traces"));
        c.telemetry.export_interval_ms = 20;
        c.telemetry.max_batch_spans = 4;
        c.telemetry.max_queue_spans = 8;
    })
    .await;
    let bodies: Vec<Value> = (0..40)
        .map(|i| chat_body(MODEL, &format!("q{i}")))
        .collect();
    let answers = futures_util::future::join_all(bodies.iter().map(|b| fleet.chat(b))).await;
    assert!(answers.iter().all(|r| r.status() == 200));
    let metric = |fleet: &Fleet, result: &str| {
        let fleet_url = fleet.url("/metrics");
        let http = fleet.http.clone();
        let key = format!("llm_gateway_trace_spans_total{{result=\"{result}\"}}");
        async move {
            let text = http
                .get(fleet_url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(&key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        }
    };
    // Every span is accounted for: failed exports or dropped from the full queue.
    let mut total = 0;
    for _ in 0..200 {
        total = metric(&fleet, "failed").await + metric(&fleet, "dropped").await;
        if total == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(total, 40, "failed + dropped spans");
    assert!(metric(&fleet, "failed").await > 0);
    assert_eq!(metric(&fleet, "exported").await, 0);
    fleet.stop().await;
}
