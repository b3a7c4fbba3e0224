//! Workers found in DNS (`[discovery] mode = "dns"`) from a real DNS server (`dnsmasq`) on
//! loopback, in front of sims bound on 127.0.0.2–4 (one port, as pods behind a headless
//! Service): records added and removed follow the pool, a removed worker's stream finishes,
//! DNS gone keeps the last good set, an empty answer empties it, SRV records give ports and
//! weights (backups ignored), static workers are never duplicated nor dropped.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::dnsmasq::{a, srv, DnsServer, Record};
use common::{chat_body, client, expect_error, served_by, sim, stop_gateway, test_config};
use futures_util::StreamExt;
use sagellm_gateway::config::{Config, DiscoveryMode, Strategy};
use sagellm_gateway::server::{spawn as spawn_gateway, RunningGateway};
use sagellm_gateway::views::{StatusInfo, WorkerInfo, WorkerSource};
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
    let mut v: Vec<_> = ws.into_iter().map(|w| (w.url, w.source, w.weight)).collect();
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
    // b streams a long answer (600 tokens, 10 ms each) when asked for one.
    let slow_b = SimConfig {
        tpot: Duration::from_millis(10),
        output_tokens: 600,
        ..sim("b", "m")
    };
    let (port, _sims) = sims_on_one_port(vec![sim("a", "m"), slow_b, sim("c", "m")]).await;
    let records = |ips: &[&str]| -> Vec<Record> { ips.iter().map(|ip| a(NAME, ip)).collect() };
    let mut dns = DnsServer::start(&records(&["127.0.0.2", "127.0.0.3"]));
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
    assert_eq!((st.discovery.mode.as_str(), st.discovery.workers), ("dns", 2));
    assert!(st.discovery.lookups_ok >= 1 && st.discovery.last_error.is_none());
    assert_eq!(metric(&gw, "llm_gateway_discovered_workers").await, 2.0);

    // A long stream on b, then b's record goes and c's comes: the pool follows, and b's
    // stream still finishes on b.
    let stream = loop {
        let mut body = chat_body("m", "a long answer");
        body["stream"] = json!(true);
        body["max_tokens"] = json!(600);
        let resp = client()
            .post(format!("{}/v1/chat/completions", gw.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        if served_by(&resp) == "b" {
            break resp;
        }
    };
    let finishing = tokio::spawn(async move {
        let mut text = String::new();
        let mut chunks = stream.bytes_stream();
        while let Some(c) = chunks.next().await {
            text.push_str(&String::from_utf8_lossy(&c.unwrap()));
        }
        text
    });
    dns.restart(&records(&["127.0.0.2", "127.0.0.4"]));
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
    tokio::time::timeout(Duration::from_secs(15), gw.state.wait_routable(2))
        .await
        .expect("c becomes routable");
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
    dns.restart(&[a("other.sagellm.test", "127.0.0.9")]);
    pool_becomes(&gw, &[], "an empty answer").await;
    let st: StatusInfo = get(&gw, "/api/status").await;
    assert!(st.discovery.last_error.is_none(), "an empty answer is an answer");
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&chat_body("m", "anyone?"))
        .send()
        .await
        .unwrap();
    let e = expect_error(resp, 404).await;
    assert_eq!(e["error"]["code"], "model_not_found");
    dns.restart(&records(&["127.0.0.3"]));
    pool_becomes(&gw, &[url("127.0.0.3", port)], "a record again").await;
    tokio::time::timeout(Duration::from_secs(15), gw.state.wait_routable(1))
        .await
        .expect("b is back");
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
    dns.restart(&[a("pods.sagellm.test", "127.0.0.1")]);
    pool_becomes(&gw, &[x.url()], "SRV records removed").await;
    let v: Value = get(&gw, "/api/status").await;
    assert_eq!(v["discovery"]["workers"], 0);
    assert_eq!(answered_by(&gw, 3).await, ["x"]);
    stop_gateway(gw).await;
}
