//! Workers found where they run, in front of sims bound on 127.0.0.2–4 (one port, as pods).
//!
//! DNS (`[discovery] mode = "dns"`) from a real DNS server (`dnsmasq`) on loopback: records
//! added and removed follow the pool, a removed worker's stream finishes, DNS gone keeps the
//! last good set, an empty answer empties it, SRV records give ports and weights (backups
//! ignored), static workers are never duplicated nor dropped.
//!
//! Kubernetes (`mode = "k8s"`) from a fake API server speaking the list/watch protocol (no
//! real one runs offline; see `common::kube_api`): the kube client over plain HTTP with a
//! kubeconfig, ready endpoints are workers, a terminating one drains while its stream
//! finishes, a dropped watch resumes, a `410 Gone` re-lists and drops a pod deleted unseen.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::dnsmasq::{a, srv, DnsServer, Record};
use common::kube_api::KubeApi;
use common::{chat_body, client, expect_error, served_by, sim, stop_gateway, test_config};
use futures_util::StreamExt;
use sagellm_gateway::config::{Config, DiscoveryMode, Strategy};
use sagellm_gateway::server::{spawn as spawn_gateway, RunningGateway};
use sagellm_gateway::views::{Lifecycle, StatusInfo, WorkerInfo, WorkerSource};
use sagellm_sim::{SimConfig, SimHandle};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const NAME: &str = "w.sagellm.test";

/// Sims on 127.0.0.<2..> sharing one port (the first free one on 127.0.0.2 that all can bind).
async fn sims_on_one_port(cfgs: Vec<SimConfig>) -> (u16, Vec<SimHandle>) {
    'retry: for _ in 0..20 {
        let first = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0))
            .await
            .unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for i in 1..cfgs.len() {
            let ip = Ipv4Addr::new(127, 0, 0, 2 + i as u8);
            match TcpListener::bind(SocketAddr::from((ip, port))).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'retry,
            }
        }
        let mut sims = Vec::new();
        for (l, cfg) in listeners.into_iter().zip(cfgs.clone()) {
            sims.push(sagellm_sim::spawn_on(l, cfg).await.unwrap());
        }
        return (port, sims);
    }
    panic!("no port free on 127.0.0.2-4");
}

/// A gateway with these static workers and DNS discovery (1 s interval), as `tweak` sets it.
async fn gateway(workers: &[(String, u32)], tweak: impl FnOnce(&mut Config)) -> RunningGateway {
    let mut c = test_config(workers);
    c.discovery.mode = DiscoveryMode::Dns;
    c.discovery.interval_seconds = 1;
    c.discovery.dns.timeout_ms = 300;
    // Every routable worker takes turns (cache-aware routing would follow the prompts' cache).
    c.routing.strategy = Strategy::RoundRobin;
    tweak(&mut c);
    tokio::task::spawn_blocking(move || spawn_gateway(c).unwrap())
        .await
        .unwrap()
}

async fn get<T: serde::de::DeserializeOwned>(gw: &RunningGateway, path: &str) -> T {
    client()
        .get(format!("{}{path}", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The pool's workers as sorted `(url, source, weight)`.
async fn pool(gw: &RunningGateway) -> Vec<(String, WorkerSource, u32)> {
    let ws: Vec<WorkerInfo> = get(gw, "/api/workers").await;
    let mut v: Vec<_> = ws
        .into_iter()
        .map(|w| (w.url, w.source, w.weight))
        .collect();
    v.sort_by(|x, y| x.0.cmp(&y.0));
    v
}

/// Poll `/api/workers` until the pool's URLs are exactly `urls` (bounded).
async fn pool_becomes(gw: &RunningGateway, urls: &[String], what: &str) {
    let mut want = urls.to_vec();
    want.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now: Vec<String> = pool(gw).await.into_iter().map(|w| w.0).collect();
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: pool is {now:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll `/api/workers` until every worker of the pool is READY (bounded).
async fn all_ready(gw: &RunningGateway, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ws: Vec<WorkerInfo> = get(gw, "/api/workers").await;
        if ws.iter().all(|w| w.state == Lifecycle::Ready) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {ws:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Start long streams until one is served by sim `name` (the others are read to their end);
/// the task reads that one to its end and returns its text.
async fn long_stream_on(gw: &RunningGateway, name: &str) -> tokio::task::JoinHandle<String> {
    let stream = loop {
        let mut body = chat_body("m", "a long answer");
        body["stream"] = json!(true);
        body["max_tokens"] = json!(2000);
        let resp = client()
            .post(format!("{}/v1/chat/completions", gw.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        if served_by(&resp) == name {
            break resp;
        }
        resp.bytes().await.unwrap();
    };
    tokio::spawn(async move {
        let mut text = String::new();
        let mut chunks = stream.bytes_stream();
        while let Some(c) = chunks.next().await {
            text.push_str(&String::from_utf8_lossy(&c.unwrap()));
        }
        text
    })
}

/// Which sims answer `n` plain requests.
async fn answered_by(gw: &RunningGateway, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let resp = client()
            .post(format!("{}/v1/chat/completions", gw.url()))
            .json(&chat_body("m", &format!("q{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        names.push(served_by(&resp));
        resp.bytes().await.unwrap();
    }
    names.sort();
    names.dedup();
    names
}

async fn metric(gw: &RunningGateway, series: &str) -> f64 {
    let text = client()
        .get(format!("{}/metrics", gw.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}

fn url(ip: &str, port: u16) -> String {
    format!("http://{ip}:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_follow_the_fleet_and_dns_faults_keep_the_last_good_set() {
    // b streams a long answer (2000 tokens, 5 ms each) when asked for one.
    let slow_b = SimConfig {
        tpot: Duration::from_millis(5),
        output_tokens: 2000,
        ..sim("b", "m")
    };
    let (port, _sims) = sims_on_one_port(vec![sim("a", "m"), slow_b, sim("c", "m")]).await;
    let records = |ips: &[&str]| -> Vec<Record> { ips.iter().map(|ip| a(NAME, ip)).collect() };
    let mut dns =
        tokio::task::block_in_place(|| DnsServer::start(&records(&["127.0.0.2", "127.0.0.3"])));
    let server = dns.addr();
    let gw = gateway(&[], |c| {
        c.discovery.dns.name = NAME.into();
        c.discovery.dns.port = port;
        c.discovery.dns.server = Some(server);
    })
    .await;

    // Both records become workers, found by DNS, with each sim's models.
    tokio::time::timeout(Duration::from_secs(15), gw.state.wait_routable(2))
        .await
        .expect("both discovered workers become routable");
    assert_eq!(
        pool(&gw).await,
        [
            (url("127.0.0.2", port), WorkerSource::Dns, 1),
            (url("127.0.0.3", port), WorkerSource::Dns, 1)
        ]
    );
    assert_eq!(answered_by(&gw, 12).await, ["a", "b"]);
    let st: StatusInfo = get(&gw, "/api/status").await;
    assert_eq!(
        (st.discovery.mode.as_str(), st.discovery.workers),
        ("dns", 2)
    );
    assert!(st.discovery.lookups_ok >= 1 && st.discovery.last_error.is_none());
    assert_eq!(metric(&gw, "llm_gateway_discovered_workers").await, 2.0);

    // A long stream on b, then b's record goes and c's comes: the pool follows, and b's
    // stream still finishes on b.
    let finishing = long_stream_on(&gw, "b").await;
    tokio::task::block_in_place(|| dns.restart(&records(&["127.0.0.2", "127.0.0.4"])));
    pool_becomes(
        &gw,
        &[url("127.0.0.2", port), url("127.0.0.4", port)],
        "b's record removed, c's added",
    )
    .await;
    assert!(!finishing.is_finished(), "b's stream outlived its record");
    let text = finishing.await.unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]") && !text.contains("\"error\""),
        "the removed worker's stream ends whole: {}",
        &text[text.len().saturating_sub(300)..]
    );
    all_ready(&gw, "c becomes ready").await;
    assert_eq!(answered_by(&gw, 12).await, ["a", "c"]);

    // DNS gone: lookups fail, the last good set stays and serves.
    let failed_before = metric(&gw, "llm_gateway_discovery_lookups_total{result=\"error\"}").await;
    dns.kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let st: StatusInfo = get(&gw, "/api/status").await;
        if st.discovery.last_error.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no failed lookup");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metric(&gw, "llm_gateway_discovery_lookups_total{result=\"error\"}").await > failed_before
    );
    assert_eq!(pool(&gw).await.len(), 2, "DNS gone keeps the workers");
    assert_eq!(answered_by(&gw, 8).await, ["a", "c"]);

    // DNS back, with no record for the name (the Service scaled to zero): the pool empties
    // and requests get a clear error (no worker serves the model); a record again brings its
    // worker back.
    tokio::task::block_in_place(|| dns.restart(&[a("other.sagellm.test", "127.0.0.9")]));
    pool_becomes(&gw, &[], "an empty answer").await;
    let st: StatusInfo = get(&gw, "/api/status").await;
    assert!(
        st.discovery.last_error.is_none(),
        "an empty answer is an answer"
    );
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&chat_body("m", "anyone?"))
        .send()
        .await
        .unwrap();
    let e = expect_error(resp, 404).await;
    assert_eq!(e["error"]["code"], "model_not_found");
    tokio::task::block_in_place(|| dns.restart(&records(&["127.0.0.3"])));
    pool_becomes(&gw, &[url("127.0.0.3", port)], "a record again").await;
    all_ready(&gw, "b is back").await;
    assert_eq!(answered_by(&gw, 3).await, ["b"]);
    stop_gateway(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_and_weights_and_static_workers_stay() {
    let x = sagellm_sim::spawn(sim("x", "m")).await.unwrap();
    let y = sagellm_sim::spawn(sim("y", "m")).await.unwrap();
    let backup = sagellm_sim::spawn(sim("z", "m")).await.unwrap();
    let port = |s: &SimHandle| s.url().rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let name = "_http._tcp.s.sagellm.test";
    let mut dns = DnsServer::start(&[
        a("pods.sagellm.test", "127.0.0.1"),
        // x is also a static worker: listed once, as static.
        srv(name, "pods.sagellm.test", port(&x), 0, 1),
        srv(name, "pods.sagellm.test", port(&y), 0, 3),
        // A lower priority: a backup, not a worker.
        srv(name, "pods.sagellm.test", port(&backup), 1, 1),
    ]);
    let server = dns.addr();
    let gw = gateway(&[(x.url(), 2)], |c| {
        c.discovery.dns.name = name.into();
        c.discovery.dns.server = Some(server);
        c.discovery.dns.models = vec!["m".into()];
    })
    .await;
    tokio::time::timeout(Duration::from_secs(15), gw.state.wait_routable(2))
        .await
        .expect("the static and the SRV worker become routable");
    let mut want = vec![
        (x.url(), WorkerSource::Static, 2),
        (url("127.0.0.1", port(&y)), WorkerSource::Dns, 3),
    ];
    want.sort_by(|p, q| p.0.cmp(&q.0));
    assert_eq!(pool(&gw).await, want);
    assert_eq!(answered_by(&gw, 12).await, ["x", "y"]);

    // A live config change keeps the discovered worker (and the static one).
    let resp = client()
        .put(format!("{}/api/config", gw.url()))
        .json(&json!({"routing": {"strategy": "least_connections"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(pool(&gw).await, want);

    // The SRV records go (NXDOMAIN for the name): the static worker stays.
    tokio::task::block_in_place(|| dns.restart(&[a("pods.sagellm.test", "127.0.0.1")]));
    pool_becomes(&gw, &[x.url()], "SRV records removed").await;
    let v: Value = get(&gw, "/api/status").await;
    assert_eq!(v["discovery"]["workers"], 0);
    assert_eq!(answered_by(&gw, 3).await, ["x"]);
    stop_gateway(gw).await;
}

/// An EndpointSlice of the `vllm` Service (port `http`), with these endpoints as
/// `(ip, ready, terminating)`; pod `vllm-<ip>` behind each.
fn vllm_slice(name: &str, port: u16, endpoints: &[(&str, bool, bool)]) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready, terminating)| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready | terminating, "terminating": terminating},
                "targetRef": {"kind": "Pod", "name": format!("vllm-{ip}")}
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "llm", "labels": {
            "app": "vllm", "kubernetes.io/service-name": "vllm"
        }},
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": 9, "protocol": "TCP"}, {"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": eps
    })
}

async fn state_of(gw: &RunningGateway, url: &str) -> Option<Lifecycle> {
    let ws: Vec<WorkerInfo> = get(gw, "/api/workers").await;
    ws.into_iter().find(|w| w.url == url).map(|w| w.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_are_watched_through_drops_and_gone() {
    let slow_b = SimConfig {
        tpot: Duration::from_millis(5),
        output_tokens: 2000,
        ..sim("b", "m")
    };
    // c also serves `other`, but its pod's annotation declares `m` only.
    let c = SimConfig {
        models: vec!["m".into(), "other".into()],
        ..sim("c", "m")
    };
    let (port, _sims) = sims_on_one_port(vec![sim("a", "m"), slow_b, c]).await;
    let (ua, ub, uc) = (
        url("127.0.0.2", port),
        url("127.0.0.3", port),
        url("127.0.0.4", port),
    );
    let api = KubeApi::start().await;
    api.put_pod("vllm-127.0.0.4", json!({"sagellm.io/model": "m"}));
    api.apply(vllm_slice(
        "vllm-1",
        port,
        &[
            ("127.0.0.2", true, false),
            ("127.0.0.3", true, false),
            ("127.0.0.9", false, false),
        ],
    ));
    // Another Service's slice: not selected.
    let mut other = vllm_slice("other-1", port, &[("127.0.0.4", true, false)]);
    other["metadata"]["labels"]["app"] = json!("other");
    api.apply(other);
    let dir = std::env::temp_dir().join(format!("sagellm-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig("llm", "sa-token")).unwrap();
    let gw = gateway(&[], |c| {
        c.discovery.mode = DiscoveryMode::K8s;
        c.discovery.k8s.selector = "app=vllm".into();
        c.discovery.k8s.port_name = "http".into();
        c.discovery.k8s.kubeconfig = Some(kubeconfig.to_string_lossy().into_owned());
    })
    .await;

    // The ready endpoints are workers (models from their `/v1/models`: their pods declare
    // none); the not-ready one and the other Service's are not.
    pool_becomes(&gw, &[ua.clone(), ub.clone()], "the initial list").await;
    tokio::time::timeout(Duration::from_secs(15), gw.state.wait_routable(2))
        .await
        .expect("both pods become routable");
    let ws: Vec<WorkerInfo> = get(&gw, "/api/workers").await;
    assert!(ws
        .iter()
        .all(|w| w.source == WorkerSource::K8s && w.models == ["m"]));
    assert_eq!(answered_by(&gw, 12).await, ["a", "b"]);
    let (paths, tokens) = api.seen();
    assert!(
        paths[0].starts_with("/namespaces/llm/endpointslices?")
            && paths[0].contains("labelSelector=app=vllm"),
        "namespace from the kubeconfig context, selector sent: {paths:?}"
    );
    assert!(tokens.iter().all(|t| t == "sa-token") && !tokens.is_empty());
    let st: StatusInfo = get(&gw, "/api/status").await;
    assert_eq!(
        (st.discovery.mode.as_str(), st.discovery.workers),
        ("k8s", 2)
    );

    // A pod scales up: MODIFIED.
    api.apply(vllm_slice(
        "vllm-1",
        port,
        &[
            ("127.0.0.2", true, false),
            ("127.0.0.3", true, false),
            ("127.0.0.4", true, false),
        ],
    ));
    pool_becomes(&gw, &[ua.clone(), ub.clone(), uc.clone()], "a pod added").await;
    all_ready(&gw, "c becomes ready").await;
    let ws: Vec<WorkerInfo> = get(&gw, "/api/workers").await;
    let c_info = ws.iter().find(|w| w.url == uc).unwrap();
    assert_eq!(c_info.models, ["m"], "the pod's annotation names its model");
    let reads = api.pod_reads();
    for pod in ["vllm-127.0.0.2", "vllm-127.0.0.3", "vllm-127.0.0.4"] {
        assert_eq!(
            reads.iter().filter(|r| *r == pod).count(),
            1,
            "each pod read once: {reads:?}"
        );
    }

    // Taken out through the management API, a discovered worker comes back at the next
    // resync (every interval_seconds): the pool converges to the slices.
    let resp = client()
        .delete(format!("{}/api/workers/127.0.0.4:{port}", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    pool_becomes(&gw, &[ua.clone(), ub.clone(), uc.clone()], "resynced").await;
    all_ready(&gw, "c is back").await;

    // b terminates during a long stream: it drains (no new requests), the stream goes on; then
    // its endpoint goes and the stream still ends whole.
    let finishing = long_stream_on(&gw, "b").await;
    api.apply(vllm_slice(
        "vllm-1",
        port,
        &[
            ("127.0.0.2", true, false),
            ("127.0.0.3", false, true),
            ("127.0.0.4", true, false),
        ],
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while state_of(&gw, &ub).await != Some(Lifecycle::Draining) {
        assert!(tokio::time::Instant::now() < deadline, "b never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answered_by(&gw, 8).await, ["a", "c"]);
    api.apply(vllm_slice(
        "vllm-1",
        port,
        &[("127.0.0.2", true, false), ("127.0.0.4", true, false)],
    ));
    pool_becomes(&gw, &[ua.clone(), uc.clone()], "the terminated pod gone").await;
    assert!(!finishing.is_finished(), "b's stream outlived its endpoint");
    let text = finishing.await.unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]") && !text.contains("\"error\""),
        "the terminated pod's stream ends whole"
    );

    // The watch drops (an API server restart): the client watches again from where it was,
    // and sees what changed meanwhile.
    let before = api.served();
    api.drop_watches();
    api.apply(vllm_slice("vllm-2", port, &[("127.0.0.3", true, false)]));
    pool_becomes(
        &gw,
        &[ua.clone(), ub.clone(), uc.clone()],
        "after a dropped watch",
    )
    .await;
    let after = api.served();
    assert!(after.watches > before.watches, "{before:?} -> {after:?}");
    assert_eq!(
        after.lists, before.lists,
        "a dropped watch resumes without a re-list"
    );

    // History compacted while the watch was down, and vllm-2 deleted without an event the
    // client could see: the resumed watch gets 410 Gone, the client re-lists, and the pod
    // that went unseen leaves (no stale worker).
    api.expire(Some("vllm-2"));
    pool_becomes(&gw, &[ua.clone(), uc.clone()], "re-listed after 410 Gone").await;
    let relisted = api.served();
    assert!(
        relisted.gone >= 1 && relisted.lists > after.lists,
        "{relisted:?}"
    );
    let st: StatusInfo = get(&gw, "/api/status").await;
    assert!(st.discovery.lookups_failed >= 1, "the 410 is counted");
    assert_eq!(answered_by(&gw, 6).await, ["a", "c"]);

    // The Service's last slice deleted: no workers.
    api.delete("vllm-1");
    pool_becomes(&gw, &[], "the slice deleted").await;
    let st: StatusInfo = get(&gw, "/api/status").await;
    assert!(st.discovery.last_error.is_none(), "watching again: {st:?}");
    stop_gateway(gw).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
