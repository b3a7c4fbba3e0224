//! The gateway-side queue end to end: one slow `sagellm-sim` worker behind a gateway with a
//! concurrency cap of 1, so requests are served one at a time in the queue's order. Each test
//! fills the queue in a known order (waiting until each request is really queued) and reads
//! the order in which the answers come back.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, expect_error, Fleet};
use sagellm_gateway::config::{Config, QueuePolicy};
use sagellm_gateway::views::StatusInfo;
use sagellm_sim::SimConfig;
use serde_json::json;
use tokio::task::JoinHandle;

/// A worker that takes about `ms` per request.
fn slow_sim(ms: u64) -> SimConfig {
    SimConfig {
        name: "slow".into(),
        models: vec!["m".into()],
        ttft: Duration::from_millis(ms / 2),
        tpot: Duration::from_millis(ms / 6),
        output_tokens: 4,
        ..Default::default()
    }
}

async fn fleet(sim_ms: u64, tweak: impl FnOnce(&mut Config)) -> Arc<Fleet> {
    let fleet = Fleet::start(vec![slow_sim(sim_ms)], |c| {
        c.scheduler.max_inflight_per_worker = 1;
        tweak(c);
    })
    .await;
    Arc::new(fleet)
}

type Done = Arc<Mutex<Vec<(String, u16)>>>;

/// Send one chat request in the background; its name and status go to `done` when answered.
fn send(fleet: &Arc<Fleet>, done: &Done, name: &str, headers: &[(&str, String)]) -> JoinHandle<()> {
    let mut req = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": name}]}));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let (done, name) = (done.clone(), name.to_string());
    tokio::spawn(async move {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        resp.bytes().await.expect("body");
        done.lock().unwrap().push((name, status));
    })
}

/// Occupy the one slot, then queue `queued` one by one (each really in the queue before the
/// next is sent), wait for every answer and return the names in answer order.
async fn serve_in_order(
    fleet: &Arc<Fleet>,
    queued: &[(&str, Vec<(&str, String)>)],
) -> Vec<(String, u16)> {
    let done: Done = Default::default();
    let mut tasks = vec![send(fleet, &done, "first", &[])];
    let worker = fleet.gw.state.pool.load().workers[0].clone();
    eventually("the first request holds the slot", 10, || {
        worker.load.inflight() == 1
    })
    .await;
    for (i, (name, headers)) in queued.iter().enumerate() {
        tasks.push(send(fleet, &done, name, headers));
        eventually("the request is queued", 10, || {
            fleet.gw.state.scheduler.depth() == i + 1 || !done.lock().unwrap().is_empty()
        })
        .await;
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("every request is answered")
            .unwrap();
    }
    let order = done.lock().unwrap().clone();
    order
}

fn names(order: &[(String, u16)]) -> Vec<&str> {
    order.iter().map(|(n, _)| n.as_str()).collect()
}

fn header(name: &'static str, v: i64) -> Vec<(&'static str, String)> {
    vec![(name, v.to_string())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_requests_overtake_earlier_low_priority_ones() {
    let fleet = fleet(120, |c| {
        c.scheduler.policy = QueuePolicy::Priority;
        c.scheduler.priority_aging_ms = 3_600_000; // no aging within this test
    })
    .await;
    let order = serve_in_order(
        &fleet,
        &[
            ("low-1", vec![]),
            ("low-2", header("x-priority", -1)),
            ("high-1", header("x-priority", 10)),
            ("low-3", vec![]),
            ("high-2", header("x-priority", 10)),
            ("mid", header("x-priority", 5)),
        ],
    )
    .await;
    assert_eq!(
        names(&order),
        ["first", "high-1", "high-2", "mid", "low-1", "low-3", "low-2"]
    );
    assert!(order.iter().all(|(_, s)| *s == 200), "{order:?}");

    // A priority that is not a number is a client mistake.
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .header("x-priority", "urgent")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let e = expect_error(resp, 400).await;
    assert_eq!(e["error"]["param"], "x-priority");

    let status: StatusInfo = fleet.get_json("/api/status").await;
    assert_eq!(status.queue.policy, "priority");
    assert_eq!(status.queue.depth, 0);
    assert_eq!(status.queue.queued_total, 6, "{:?}", status.queue);
    let text = fleet.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("llm_scheduler_queue_depth 0"), "{text}");
    let waits = text
        .lines()
        .find_map(|l| l.strip_prefix("llm_scheduler_wait_seconds_count "))
        .unwrap();
    assert_eq!(waits.parse::<u64>().unwrap(), 6, "{waits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_priority_field_orders_too() {
    let fleet = fleet(120, |c| {
        c.scheduler.policy = QueuePolicy::Priority;
        c.scheduler.priority_aging_ms = 3_600_000;
    })
    .await;
    let done: Done = Default::default();
    let worker = fleet.gw.state.pool.load().workers[0].clone();
    let mut tasks = vec![send(&fleet, &done, "first", &[])];
    eventually("the first request holds the slot", 10, || {
        worker.load.inflight() == 1
    })
    .await;
    tasks.push(send(&fleet, &done, "low", &[]));
    eventually("queued", 10, || fleet.gw.state.scheduler.depth() == 1).await;
    let body =
        json!({"model": "m", "priority": 3, "messages": [{"role": "user", "content": "high"}]});
    let (d, f) = (done.clone(), fleet.clone());
    tasks.push(tokio::spawn(async move {
        let resp = f
            .http
            .post(f.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        d.lock()
            .unwrap()
            .push(("high".into(), resp.status().as_u16()));
    }));
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(names(&done.lock().unwrap()), ["first", "high", "low"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earliest_deadline_first_and_hopeless_requests_are_refused_early() {
    let fleet = fleet(300, |c| c.scheduler.policy = QueuePolicy::Slo).await;
    let slo = |ms| header("x-slo-ttft-ms", ms);
    let order = serve_in_order(
        &fleet,
        &[
            ("slo-60s", slo(60_000)),
            ("no-slo", vec![]),
            ("slo-30s", slo(30_000)),
            ("slo-45s", slo(45_000)),
        ],
    )
    .await;
    assert_eq!(
        names(&order),
        ["first", "slo-30s", "slo-45s", "slo-60s", "no-slo"]
    );

    // 50 ms to the first token while the only worker is busy (its learnt time to first token
    // is ~150 ms): refused at once with 429 and Retry-After rather than answered late. The
    // busy request holds the slot for seconds, so a slow machine cannot free it first.
    let done: Done = Default::default();
    let worker = fleet.gw.state.pool.load().workers[0].clone();
    fleet.sims[0].control().set_ttft(Duration::from_secs(3));
    let busy = send(&fleet, &done, "busy", &[]);
    eventually("the slot is taken", 10, || worker.load.inflight() == 1).await;
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .header("x-slo-ttft-ms", "50")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hurry"}]}))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    let e = expect_error(resp, 429).await;
    assert!(
        e["error"]["message"].as_str().unwrap().contains("50 ms"),
        "{e}"
    );
    assert!(
        done.lock().unwrap().is_empty(),
        "refused before the busy request ended"
    );
    busy.await.unwrap();
    let status: StatusInfo = fleet.get_json("/api/status").await;
    assert_eq!(status.queue.refused["deadline"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aging_keeps_low_priority_from_starving() {
    // Five clients keep a high-priority request waiting at all times; one low-priority
    // request waits behind them. Without aging it would wait until they stop.
    for (aging_ms, starves) in [(3_600_000, true), (100, false)] {
        let fleet = fleet(30, |c| {
            c.scheduler.policy = QueuePolicy::Priority;
            c.scheduler.priority_aging_ms = aging_ms;
        })
        .await;
        let done: Done = Default::default();
        let worker = fleet.gw.state.pool.load().workers[0].clone();
        let first = send(&fleet, &done, "first", &[]);
        eventually("the slot is taken", 10, || worker.load.inflight() == 1).await;
        let mut highs = Vec::new();
        for c in 0..5 {
            let (f, d) = (fleet.clone(), done.clone());
            highs.push(tokio::spawn(async move {
                for i in 0..8 {
                    let name = format!("high-{c}-{i}");
                    send(&f, &d, &name, &header("x-priority", 5)).await.unwrap();
                }
            }));
        }
        eventually("the high clients are queued", 10, || {
            fleet.gw.state.scheduler.depth() == 5
        })
        .await;
        let low = send(&fleet, &done, "low", &[]);
        for t in highs.into_iter().chain([first, low]) {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .unwrap()
                .unwrap();
        }
        let order = done.lock().unwrap().clone();
        let at = names(&order).iter().position(|n| *n == "low").unwrap();
        let after = order.len() - 1 - at;
        if starves {
            assert_eq!(
                after, 0,
                "without aging the low request is served last: {order:?}"
            );
        } else {
            assert!(
                after >= 10,
                "with aging it overtakes the stream of high ones: {after} after it, {order:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_bounds_hold() {
    let fleet = fleet(1_200, |c| {
        c.scheduler.max_queue = 2;
        c.scheduler.max_wait_ms = 200;
    })
    .await;
    let done: Done = Default::default();
    let worker = fleet.gw.state.pool.load().workers[0].clone();
    let first = send(&fleet, &done, "first", &[]);
    eventually("the slot is taken", 10, || worker.load.inflight() == 1).await;
    let waiting = [
        send(&fleet, &done, "q1", &[]),
        send(&fleet, &done, "q2", &[]),
    ];
    eventually("two queued", 10, || fleet.gw.state.scheduler.depth() == 2).await;
    // The queue is full: the next one is refused at once.
    let resp = fleet.chat(&common::chat_body("m", "q3")).await;
    assert!(resp.headers().contains_key("retry-after"));
    let e = expect_error(resp, 429).await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue is full"),
        "{e}"
    );
    // The two waiting ones give up after max_wait_ms, long before the worker frees up.
    for t in waiting {
        t.await.unwrap();
    }
    {
        let d = done.lock().unwrap();
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d.iter().all(|(n, s)| n.starts_with('q') && *s == 429),
            "{d:?}"
        );
    }
    first.await.unwrap();
    assert_eq!(
        done.lock().unwrap().last().unwrap(),
        &("first".to_string(), 200)
    );
    let status: StatusInfo = fleet.get_json("/api/status").await;
    assert_eq!(
        (
            status.queue.refused["queue_full"],
            status.queue.refused["timeout"]
        ),
        (1, 2)
    );
    assert_eq!(status.queue.depth, 0);
    let text = fleet.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("llm_scheduler_refused_total{reason=\"queue_full\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("llm_scheduler_refused_total{reason=\"timeout\"} 2"),
        "{text}"
    );

    // Without a cap nothing waits: many requests at once all go through.
    let resp = fleet
        .http
        .put(fleet.url("/api/config"))
        .json(&json!({"scheduler": {"max_inflight_per_worker": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tasks: Vec<_> = (0..4)
        .map(|i| send(&fleet, &done, &format!("free-{i}"), &[]))
        .collect();
    eventually("all four run at once", 10, || worker.load.inflight() == 4).await;
    assert_eq!(fleet.gw.state.scheduler.depth(), 0);
    for t in tasks {
        t.await.unwrap();
    }
}
