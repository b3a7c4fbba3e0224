//! The web dashboard end to end: its files and WebSocket feed through the real gateway, and
//! the page itself in a real headless Chromium (driven by Playwright from
//! `dashboard/e2e/dashboard.test.mjs`) against three `sagellm-sim` workers.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{chat_body, repo_root, sim, Fleet};
use futures_util::{SinkExt, StreamExt};
use sagellm_gateway::config::Strategy;
use sagellm_gateway::views::{ConfigView, Hello, Lifecycle, Tick, WorkerInfo};
use sagellm_sim::SimConfig;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "dashboard-admin-key";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame as JSON (bounded wait).
async fn next_json<T: serde::de::DeserializeOwned>(ws: &mut Socket) -> T {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_feed_through_the_gateway() {
    let fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m"), sim("c", "m")], |c| {
        c.auth.admin_key = Some(ADMIN.into());
    })
    .await;

    // The page and its files, embedded; unknown files are JSON 404s.
    let page = fleet.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers().contains_key("content-security-policy"));
    assert!(page.text().await.unwrap().contains("/dashboard/app.js"));
    for (path, ty) in [
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/charts.js", "text/javascript; charset=utf-8"),
        ("/dashboard/style.css", "text/css; charset=utf-8"),
        ("/dashboard/", "text/html; charset=utf-8"),
    ] {
        let resp = fleet.get(path).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], ty, "{path}");
    }
    common::expect_error(fleet.get("/dashboard/nope.js").await, 404).await;
    assert_eq!(fleet.get("/favicon.ico").await.status(), 204);
    // Writes to the page are not a thing; the admin key rule still answers first.
    let resp = fleet.http.post(fleet.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // The socket: hello with the strategies and the key requirement, then the present tick.
    let ws_url = format!("ws://{}/ws", fleet.gw.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let hello: Hello = next_json(&mut ws).await;
    assert_eq!(hello.kind, "hello");
    assert_eq!(hello.interval_ms, 1000);
    assert_eq!(hello.strategies.len(), Strategy::ALL.len());
    assert!(hello.admin_key_required);
    let first: Tick = next_json(&mut ws).await;
    assert_eq!(first.kind, "tick");
    assert_eq!(first.status.workers.len(), 3);
    assert_eq!(first.routing.workers.len(), 3);

    // Traffic shows up in the next ticks: rate, latency percentiles, served counts, shares.
    for i in 0..30 {
        let resp = fleet.chat(&chat_body("m", &format!("{i}"))).await;
        assert_eq!(resp.status(), 200);
    }
    let mut moved = None;
    for _ in 0..5 {
        let tick: Tick = next_json(&mut ws).await;
        if tick.point.qps > 0.0 {
            moved = Some(tick);
            break;
        }
    }
    let tick = moved.expect("a tick with traffic within 5 ticks");
    assert!(tick.point.latency_p50_ms.is_some_and(|v| v > 0.0));
    assert!(tick.point.latency_p99_ms >= tick.point.latency_p50_ms);
    assert!(tick.point.tokens_per_s > 0.0);
    assert_eq!(tick.point.error_rate, 0.0);
    assert_eq!(tick.point.load.len(), 3);
    let served: u64 = tick.status.workers.iter().map(|w| w.served).sum();
    assert_eq!(served, 30);
    let shares: f64 = tick.routing.workers.iter().map(|w| w.share).sum();
    assert!((shares - 1.0).abs() < 1e-9, "{shares}");

    // A second dashboard gets the history so far; what a client sends is ignored.
    let (mut ws2, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let hello2: Hello = next_json(&mut ws2).await;
    assert!(!hello2.history.is_empty());
    assert!(hello2.history.iter().any(|p| p.qps > 0.0));
    ws2.send(Message::text("{\"nonsense\": true}"))
        .await
        .unwrap();
    let _: Tick = next_json(&mut ws2).await;
    assert_eq!(fleet.gw.state.feed.clients(), 2);
    ws2.close(None).await.unwrap();
    drop(ws2);
    common::eventually("the closed dashboard is released", 5, || {
        fleet.gw.state.feed.clients() == 1
    })
    .await;

    // Stopping the gateway closes the open dashboard instead of leaving it hanging.
    fleet.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Close(_)) {
                return;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the socket was closed on shutdown");
}

/// A worker slow enough that the browser test's load lasts through all its steps.
fn steady_sim(name: &str) -> SimConfig {
    SimConfig {
        name: name.into(),
        models: vec!["m".into()],
        ttft: Duration::from_millis(20),
        tpot: Duration::from_millis(5),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let root = repo_root();
    let e2e = root.join("dashboard/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./scripts/test.sh (or npm ci --prefix dashboard/e2e)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} not found: run ./scripts/test.sh (installs Debian's chromium)"
    );
    let fleet = Fleet::start(
        vec![steady_sim("a"), steady_sim("b"), steady_sim("c")],
        |c| {
            c.auth.admin_key = Some(ADMIN.into());
            c.routing.strategy = Strategy::RoundRobin;
        },
    )
    .await;
    let screenshot = root.join("docs/dashboard.png");
    let mut node = tokio::process::Command::new("node");
    node.arg(e2e.join("dashboard.test.mjs"))
        .env("GATEWAY_URL", fleet.gw.url())
        .env("ADMIN_KEY", ADMIN)
        .env("MODEL", "m")
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium);
    common::run_script(node, 180, "the browser test (node + Chromium)").await;

    // What the browser did is what the gateway now has.
    let view: ConfigView = fleet.get_json("/api/config").await;
    assert_ne!(
        view.config["routing"]["strategy"], "round_robin",
        "the page switched the strategy"
    );
    let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
    assert_eq!(workers.len(), 3);
    assert!(workers.iter().all(|w| w.state == Lifecycle::Ready));
    assert!(workers.iter().all(|w| w.served > 0));
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    fleet.stop().await;
}
