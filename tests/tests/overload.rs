//! Overload signals end to end: a worker's `429`/`503` with `Retry-After` takes it out of
//! routing for that long (capped), without counting against its breaker; the gateway's own
//! refusals are `429` for back-pressure and `503` for no usable worker, both with
//! `Retry-After`. Real sims, the real gateway, loopback.

mod common;

use std::time::{Duration, Instant};

use common::{breaker, chat_body, expect_error, served_by, sim, Fleet};
use sagellm_gateway::config::Strategy;
use sagellm_gateway::views::BreakerState;

async fn fleet(tweak: impl FnOnce(&mut sagellm_gateway::config::Config)) -> Fleet {
    Fleet::start(vec![sim("a", "m"), sim("b", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        tweak(c);
    })
    .await
}

/// Send `n` requests; all must succeed. Returns how many `b` served.
async fn by_b(fleet: &Fleet, n: usize) -> usize {
    let mut count = 0;
    for i in 0..n {
        let resp = fleet.chat(&chat_body("m", &format!("r{i}"))).await;
        assert_eq!(resp.status(), 200, "retried on a");
        count += usize::from(served_by(&resp) == "b");
    }
    count
}

/// Keep sending pairs of requests, 50 ms apart, until `b` serves one (at most ~5 s).
async fn b_serves_again(fleet: &Fleet) -> bool {
    for _ in 0..100 {
        if by_b(fleet, 2).await > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_takes_a_worker_out_for_that_long() {
    let fleet = fleet(|c| c.circuit_breaker.failure_threshold = 2).await;
    let b = fleet.sims[1].control();
    b.set_status(Some(503));
    b.set_retry_after_secs(Some(1));
    let asked_at = Instant::now();
    by_b(&fleet, 20).await;
    let seen = b.requests_total();
    assert_eq!(seen, 1, "b is asked once, then skipped while it cools down");
    assert_eq!(
        breaker(&fleet, 1),
        BreakerState::Closed,
        "an overload answer is no failure"
    );
    b.set_status(None);
    // After the second it asked for, b gets traffic again.
    assert!(b_serves_again(&fleet).await, "b is routed to again");
    assert!(asked_at.elapsed() >= Duration::from_secs(1));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_is_capped_and_zero_ignores_it() {
    let fleet = fleet(|c| c.retry.max_retry_after_ms = 300).await;
    let b = fleet.sims[1].control();
    b.set_status(Some(429));
    b.set_retry_after_secs(Some(86_400));
    by_b(&fleet, 6).await;
    assert_eq!(b.requests_total(), 1);
    b.set_status(None);
    assert!(
        b_serves_again(&fleet).await,
        "back after the 300 ms cap, not a day"
    );
    fleet.stop().await;

    // max_retry_after_ms = 0: Retry-After is ignored, b keeps being tried (and retried away).
    let fleet = fleet_ignoring().await;
    let b = fleet.sims[1].control();
    b.set_status(Some(503));
    b.set_retry_after_secs(Some(60));
    by_b(&fleet, 6).await;
    assert!(b.requests_total() >= 2, "{}", b.requests_total());
    fleet.stop().await;
}

async fn fleet_ignoring() -> Fleet {
    fleet(|c| {
        c.retry.max_retry_after_ms = 0;
        c.circuit_breaker.enabled = false;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_cooling_down_is_a_503_with_retry_after() {
    let fleet = fleet(|_| {}).await;
    for s in &fleet.sims {
        s.control().set_status(Some(503));
        s.control().set_retry_after_secs(Some(30));
    }
    // Both answer 503 + Retry-After: the request ran out of workers.
    let first = fleet.chat(&chat_body("m", "both busy")).await;
    assert!(first.status().is_server_error(), "{}", first.status());
    let resp = fleet.chat(&chat_body("m", "both cooling")).await;
    assert!(resp.headers().contains_key("retry-after"));
    let e = expect_error(resp, 503).await;
    assert_eq!(e["error"]["code"], "no_worker_available", "{e}");
    let asked: u64 = fleet
        .sims
        .iter()
        .map(|s| s.control().requests_total())
        .sum();
    assert_eq!(asked, 2, "no worker is asked while both cool down");
    fleet.stop().await;
}

/// vLLM's early refusal when its queue is full (`--max-num-queued-reqs`: `503`, its error
/// body, no `Retry-After`) is retried on another worker: a burst larger than `a`'s queue is
/// served whole, streams and plain answers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vllm_queue_full_refusal_is_retried_elsewhere() {
    let full = sagellm_sim::SimConfig {
        ttft: Duration::from_millis(200),
        max_running: 1,
        max_queued_reqs: 2,
        ..sim("a", "m")
    };
    let roomy = sagellm_sim::SimConfig {
        max_running: 64,
        ..sim("b", "m")
    };
    let fleet = Fleet::start(vec![full, roomy], |c| {
        c.routing.strategy = Strategy::RoundRobin;
    })
    .await;
    let answers = futures_util::future::join_all((0..16).map(|i| {
        let mut body = chat_body("m", &format!("burst {i}"));
        body["stream"] = serde_json::json!(i % 2 == 0);
        let fleet = &fleet;
        async move {
            let resp = fleet.chat(&body).await;
            (resp.status(), resp.text().await.unwrap())
        }
    }))
    .await;
    for (status, text) in &answers {
        assert_eq!(*status, 200, "{text}");
        assert!(!text.contains("\"error\""), "{text}");
    }
    let a = fleet.sims[0].control();
    assert!(a.queue_full_total() > 0, "a's queue overflowed");
    assert!(a.completed_total() <= 16 - a.queue_full_total());
    assert_eq!(
        fleet.sims[1].control().completed_total() + a.completed_total(),
        16,
        "each request answered once"
    );
    fleet.stop().await;
}
