//! Queueing, fault knobs and the crash/restart life cycle.

use std::time::Duration;

use super::client::{get, post};
use super::{eventually, fast};
use crate::{spawn, SimConfig};

const CHAT: &str = r#"{"model":"sim-model","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn max_running_queues_the_rest_and_metrics_show_it() {
    let mut sim = spawn(SimConfig {
        max_running: 1,
        ttft: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await
    .expect("spawn");
    let addr = sim.addr();
    let clients: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { post(addr, "/v1/chat/completions", CHAT).await }))
        .collect();
    let control = sim.control_arc();
    eventually("one running, one waiting", || {
        control.running() == 1 && control.waiting() == 1
    })
    .await;
    let text = get(addr, "/metrics").await.text();
    for line in [
        "vllm:num_requests_running{model_name=\"sim-model\"} 1.0",
        "vllm:num_requests_waiting{model_name=\"sim-model\"} 1.0",
        "vllm:kv_cache_usage_perc{model_name=\"sim-model\"} 0.05",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // A crash drops both requests; their slots are released.
    sim.kill_and_wait().await;
    for client in clients {
        client.abort();
    }
    eventually("slots released", || {
        control.running() == 0 && control.waiting() == 0
    })
    .await;
}

#[tokio::test]
async fn forced_status_fail_rate_and_hang() {
    let sim = spawn(SimConfig {
        status: Some(503),
        ..fast()
    })
    .await
    .expect("spawn");
    let res = post(sim.addr(), "/v1/chat/completions", CHAT).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.header("x-sim-name"), Some("sim"));
    assert_eq!(res.json()["error"]["code"], 503);
    sim.control().set_status(Some(429));
    assert_eq!(post(sim.addr(), "/v1/completions", "{}").await.status, 429);
    sim.control().set_status(None);
    assert_eq!(
        post(sim.addr(), "/v1/chat/completions", CHAT).await.status,
        200
    );

    sim.control().set_fail_rate(1.0);
    let res = post(sim.addr(), "/v1/chat/completions", CHAT).await;
    assert_eq!(res.status, 500);
    assert_eq!(res.json()["error"]["type"], "InternalServerError");
    sim.control().set_fail_rate(0.0);

    sim.control().set_hang(true);
    let addr = sim.addr();
    let hung = tokio::time::timeout(
        Duration::from_millis(150),
        post(addr, "/v1/chat/completions", CHAT),
    )
    .await;
    assert!(hung.is_err(), "a hanging sim answered");
    assert_eq!(sim.control().requests_total(), 5);
    // A graceful shutdown does not wait for hung requests.
    let started = std::time::Instant::now();
    sim.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn kill_then_restart_serves_again_on_the_same_port() {
    let mut sim = spawn(fast()).await.expect("spawn");
    let addr = sim.addr();
    assert_eq!(post(addr, "/v1/chat/completions", CHAT).await.status, 200);
    sim.kill();
    sim.restart().await.expect("restart");
    assert_eq!(sim.addr(), addr);
    assert!(sim.is_running());
    assert_eq!(post(addr, "/v1/chat/completions", CHAT).await.status, 200);
    assert_eq!(sim.control().requests_total(), 2);

    sim.kill_and_wait().await;
    assert!(!sim.is_running());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port still open"
    );
    sim.restart().await.expect("restart");
    assert_eq!(get(addr, "/health").await.status, 200);
}

#[tokio::test]
async fn sim_die_in_library_mode_kills_the_server() {
    let mut sim = spawn(fast()).await.expect("spawn");
    let addr = sim.addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        &super::client::request_bytes(addr, "POST", "/sim/die", b""),
    )
    .await
    .expect("write");
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
    eventually("the server to die", || !sim.is_running()).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port still open"
    );
    sim.restart().await.expect("restart");
    assert_eq!(get(addr, "/health").await.status, 200);
}
