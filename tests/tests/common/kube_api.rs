//! A small fake Kubernetes API server for the Kubernetes discovery test (no real API server
//! runs offline): EndpointSlices of one namespace over plain HTTP on a loopback port, with the
//! list/watch protocol the kube client speaks — a list with a resource version, then a
//! newline-delimited JSON watch from it (ADDED / MODIFIED / DELETED), a watch the test can
//! drop, and a `410 Gone` ERROR event for a resource version older than the last compaction,
//! which makes the client re-list. Label selectors of the form `k=v,k2=v2` are honoured. Pods
//! (`GET .../pods/{name}`, for their model annotation) are what the test put there, else 404.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;

#[derive(Clone, Debug)]
enum Msg {
    Event(String),
    Drop,
}

#[derive(Default)]
struct Inner {
    slices: BTreeMap<String, Value>,
    rv: u64,
    /// Events after the last compaction: (resource version, JSON line).
    log: Vec<(u64, String)>,
    /// Watches from a resource version below this get `410 Gone`.
    compacted_at: u64,
    lists: u64,
    watches: u64,
    gone: u64,
    paths: Vec<String>,
    tokens: Vec<String>,
    pods: BTreeMap<String, Value>,
    pod_reads: Vec<String>,
}

pub struct KubeApi {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<Msg>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// What the server has served, for assertions.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Served {
    pub lists: u64,
    pub watches: u64,
    /// Watches refused with 410 Gone.
    pub gone: u64,
}

fn matches(selector: &str, slice: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        slice["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn event(kind: &str, object: &Value) -> String {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    line
}

impl KubeApi {
    pub async fn start() -> KubeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner {
            rv: 100,
            ..Default::default()
        }));
        let (tx, _) = broadcast::channel(1024);
        let app = Router::new()
            .route(
                "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                get(endpointslices),
            )
            .route("/api/v1/namespaces/{ns}/pods/{name}", get(pod))
            .with_state((inner.clone(), tx.clone()));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        KubeApi {
            inner,
            tx,
            addr,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server, context namespace `namespace`, bearer `token`.
    pub fn kubeconfig(&self, namespace: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
            self.url()
        )
    }

    /// Create or replace a slice (an ADDED or MODIFIED event).
    pub fn apply(&self, mut slice: Value) {
        let mut g = self.inner.lock().unwrap();
        g.rv += 1;
        let rv = g.rv;
        slice["metadata"]["resourceVersion"] = json!(rv.to_string());
        let name = slice["metadata"]["name"].as_str().unwrap().to_string();
        let kind = if g.slices.contains_key(&name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let line = event(kind, &slice);
        g.slices.insert(name, slice);
        g.log.push((rv, line.clone()));
        let _ = self.tx.send(Msg::Event(line));
    }

    /// Delete a slice (a DELETED event).
    pub fn delete(&self, name: &str) {
        let mut g = self.inner.lock().unwrap();
        let Some(mut slice) = g.slices.remove(name) else {
            return;
        };
        g.rv += 1;
        let rv = g.rv;
        slice["metadata"]["resourceVersion"] = json!(rv.to_string());
        let line = event("DELETED", &slice);
        g.log.push((rv, line.clone()));
        let _ = self.tx.send(Msg::Event(line));
    }

    /// End every open watch (as an API server restart or a load balancer timeout does).
    pub fn drop_watches(&self) {
        let _ = self.tx.send(Msg::Drop);
    }

    /// Compact the history and drop the watches: a watch resuming from any version seen so
    /// far gets `410 Gone`. With `lost`, that slice is also deleted without any event (the
    /// client can only learn it by re-listing).
    pub fn expire(&self, lost: Option<&str>) {
        {
            let mut g = self.inner.lock().unwrap();
            if let Some(name) = lost {
                g.slices.remove(name);
            }
            g.rv += 1;
            g.compacted_at = g.rv;
            g.log.clear();
        }
        self.drop_watches();
    }

    pub fn served(&self) -> Served {
        let g = self.inner.lock().unwrap();
        Served {
            lists: g.lists,
            watches: g.watches,
            gone: g.gone,
        }
    }

    /// A pod with these annotations (what `GET` on it returns).
    pub fn put_pod(&self, name: &str, annotations: Value) {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "llm", "annotations": annotations},
        });
        self.inner.lock().unwrap().pods.insert(name.into(), pod);
    }

    /// The pods read, in order.
    pub fn pod_reads(&self) -> Vec<String> {
        self.inner.lock().unwrap().pod_reads.clone()
    }

    /// The request paths (with queries) and bearer tokens seen.
    pub fn seen(&self) -> (Vec<String>, Vec<String>) {
        let g = self.inner.lock().unwrap();
        (g.paths.clone(), g.tokens.clone())
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = (Arc<Mutex<Inner>>, broadcast::Sender<Msg>);

async fn endpointslices(
    State((inner, tx)): State<Shared>,
    Path(ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let mut g = inner.lock().unwrap();
    let query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    g.paths.push(format!(
        "/namespaces/{ns}/endpointslices?{}",
        query.join("&")
    ));
    if let Some(t) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        g.tokens.push(t.to_string());
    }
    if !watch {
        g.lists += 1;
        let items: Vec<&Value> = g
            .slices
            .values()
            .filter(|s| matches(&selector, s))
            .collect();
        let list = json!({
            "kind": "EndpointSliceList",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": g.rv.to_string()},
            "items": items,
        });
        return (StatusCode::OK, axum::Json(list)).into_response();
    }
    g.watches += 1;
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if from < g.compacted_at {
        g.gone += 1;
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from} ({})", g.compacted_at),
            "reason": "Expired", "code": 410
        });
        return Response::new(Body::from(event("ERROR", &status)));
    }
    // The backlog and the subscription under one lock: no event is missed or repeated.
    let backlog: Vec<String> = g
        .log
        .iter()
        .filter(|(rv, line)| *rv > from && selects(&selector, line))
        .map(|(_, line)| line.clone())
        .collect();
    let rx = tx.subscribe();
    drop(g);
    let live = futures_util::stream::unfold((rx, selector), |(mut rx, selector)| async move {
        loop {
            match rx.recv().await {
                Ok(Msg::Event(line)) if selects(&selector, &line) => {
                    return Some((line, (rx, selector)))
                }
                Ok(Msg::Event(_)) => {}
                Ok(Msg::Drop) | Err(_) => return None,
            }
        }
    });
    let body = futures_util::stream::iter(backlog)
        .chain(live)
        .map(|line| Ok::<_, Infallible>(Bytes::from(line)));
    Response::new(Body::from_stream(body))
}

async fn pod(
    State((inner, _)): State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    let mut g = inner.lock().unwrap();
    g.pod_reads.push(name.clone());
    match g.pods.get(&name) {
        Some(p) => axum::Json(p.clone()).into_response(),
        None => {
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("pods \"{name}\" not found"), "reason": "NotFound", "code": 404
            });
            (StatusCode::NOT_FOUND, axum::Json(status)).into_response()
        }
    }
}

/// Whether an event line's object matches the selector.
fn selects(selector: &str, line: &str) -> bool {
    let v: Value = serde_json::from_str(line).unwrap();
    matches(selector, &v["object"])
}
