//! Recovery at the speed of the health checks: a worker that was killed and restarted gets
//! traffic again as soon as an active health check passes (its open breaker goes half-open at
//! once, `circuit_breaker.health_check_uneject`), not after the breaker's timeout. Real sims,
//! the real gateway, loopback.

mod common;

use std::time::{Duration, Instant};

use common::{breaker, chat_body, eventually, served_by, sim, Fleet};
use sagellm_gateway::config::Strategy;
use sagellm_gateway::views::BreakerState;

/// A fleet of `a` and `b` whose breakers would stay open for ten minutes on their own, and
/// whose health checks never take a worker out of routing (so only the breaker does).
async fn fleet(uneject: bool) -> Fleet {
    Fleet::start(vec![sim("a", "m"), sim("b", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.circuit_breaker.timeout_seconds = 600;
        c.circuit_breaker.health_check_uneject = uneject;
        c.health.failure_threshold = 1_000_000;
    })
    .await
}

/// Send `n` requests one after another; all must succeed. Returns how many `b` served.
async fn served_by_b(fleet: &Fleet, n: usize) -> usize {
    let mut by_b = 0;
    for i in 0..n {
        let resp = fleet.chat(&chat_body("m", &format!("request {i}"))).await;
        assert_eq!(resp.status(), 200, "every request succeeds (failover to a)");
        by_b += usize::from(served_by(&resp) == "b");
    }
    by_b
}

/// Kill `b` and send traffic until its breaker opens (failed attempts are retried on `a`).
async fn kill_b_until_its_breaker_opens(fleet: &mut Fleet) {
    fleet.sims[1].kill_and_wait().await;
    for _ in 0..100 {
        if breaker(fleet, 1) == BreakerState::Open {
            return;
        }
        served_by_b(fleet, 1).await;
    }
    panic!("b's breaker did not open after 100 requests");
}

/// `b` is back and one active health check of it has passed since.
async fn restart_b_until_a_health_check_passes(fleet: &mut Fleet) {
    eventually("a health check of the dead b fails", 10, || {
        fleet.gw.state.pool.load().workers[1]
            .health
            .check_error()
            .is_some()
    })
    .await;
    fleet.sims[1].restart().await.expect("b restarts");
    eventually("a health check of the restarted b passes", 10, || {
        fleet.gw.state.pool.load().workers[1]
            .health
            .check_error()
            .is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_health_check_brings_a_restarted_worker_back_at_once() {
    let mut fleet = fleet(true).await;
    assert!(served_by_b(&fleet, 4).await > 0, "b serves before the kill");
    kill_b_until_its_breaker_opens(&mut fleet).await;
    let restarted = Instant::now();
    restart_b_until_a_health_check_passes(&mut fleet).await;
    assert_ne!(
        breaker(&fleet, 1),
        BreakerState::Open,
        "the passing check half-opened the breaker"
    );
    // Trial requests reach b and close its breaker (success_threshold = 3).
    let mut by_b = 0;
    for _ in 0..50 {
        by_b += served_by_b(&fleet, 2).await;
        if breaker(&fleet, 1) == BreakerState::Closed {
            break;
        }
    }
    assert_eq!(breaker(&fleet, 1), BreakerState::Closed);
    assert!(by_b >= 3, "b served its trial requests ({by_b})");
    eprintln!(
        "restarted b served again after {:?} (breaker timeout 600 s)",
        restarted.elapsed()
    );
    assert!(
        restarted.elapsed() < Duration::from_secs(60),
        "recovery came from the health check, not from the 600 s breaker timeout"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_uneject_the_breaker_waits_for_its_timeout() {
    let mut fleet = fleet(false).await;
    kill_b_until_its_breaker_opens(&mut fleet).await;
    restart_b_until_a_health_check_passes(&mut fleet).await;
    assert_eq!(served_by_b(&fleet, 20).await, 0, "b stays out of routing");
    assert_eq!(breaker(&fleet, 1), BreakerState::Open);
    fleet.stop().await;
}

/// Only a worker the checks saw down is let in early: a worker whose chat requests fail while
/// its health checks pass all along keeps its breaker open for the full timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_worker_whose_checks_pass_keeps_its_breaker_open() {
    let fleet = fleet(true).await;
    fleet.sims[1].control().set_fail_rate(1.0);
    for i in 0..100 {
        if breaker(&fleet, 1) == BreakerState::Open {
            break;
        }
        fleet.chat(&chat_body("m", &format!("fail {i}"))).await;
    }
    assert_eq!(breaker(&fleet, 1), BreakerState::Open);
    fleet.sims[1].control().set_fail_rate(0.0);
    // Three more passing health checks of b (each asks its /v1/models).
    let checks = fleet.sims[1].control().models_requests_total();
    eventually("three more health checks of b", 10, || {
        fleet.sims[1].control().models_requests_total() >= checks + 3
    })
    .await;
    assert!(fleet.gw.state.pool.load().workers[1]
        .health
        .check_error()
        .is_none());
    assert_eq!(breaker(&fleet, 1), BreakerState::Open, "not un-ejected");
    assert_eq!(served_by_b(&fleet, 10).await, 0, "b stays out of routing");
    fleet.stop().await;
}

/// At the defaults a restarted worker is back within about two health-check intervals: the
/// first passing check half-opens its breaker (the README's "within 15 s").
#[test]
fn at_the_defaults_recovery_takes_two_health_check_intervals_at_most_15_s() {
    let c = sagellm_gateway::config::Config::default();
    assert!(c.circuit_breaker.health_check_uneject);
    assert!(c.circuit_breaker.enabled);
    assert!(
        2 * c.health.check_interval_ms <= 15_000,
        "{}",
        c.health.check_interval_ms
    );
}
