//! Unit tests of [`super::pick`]: exclusions, the concurrency cap, the soft per-worker rate
//! limit, preferred workers and half-open trial slots, on hand-made pool snapshots.

use super::*;
use crate::config::{RateLimitConfig, RoutingConfig};
use crate::routing::test_support::pool;
use crate::routing::{self, Strategy};
use crate::worker::breaker::BreakerState;
use crate::worker::WorkerMeta;

fn round_robin() -> Box<dyn Policy> {
    routing::build(&RoutingConfig {
        strategy: Strategy::RoundRobin,
        ..Default::default()
    })
}

fn no_limits() -> RateLimits {
    RateLimits::new(&RateLimitConfig {
        enabled: false,
        ..Default::default()
    })
}

/// The selection inputs over `p` (shorthand for the tests below).
fn choice<'a>(
    p: &'a Pool,
    policy: &'a dyn Policy,
    limits: &'a RateLimits,
    breaker: &'a BreakerSettings,
    cap: u32,
) -> Choice<'a> {
    Choice {
        pool: p,
        policy,
        limits,
        breaker,
        cap,
    }
}

/// Run `pick` `n` times over `p` and return the chosen worker indices.
fn picks(
    p: &Pool,
    policy: &dyn Policy,
    limits: &RateLimits,
    cap: u32,
    want: &Want,
    n: usize,
) -> Vec<usize> {
    let breaker = BreakerSettings::default();
    let c = choice(p, policy, limits, &breaker, cap);
    (0..n)
        .map(|_| {
            let w = pick(&c, want).unwrap().worker;
            p.workers.iter().position(|x| x.uid == w.uid).unwrap()
        })
        .collect()
}

fn want<'a>(tried: &'a [u64], hints: &'a RouteHints) -> Want<'a> {
    Want {
        model: None,
        tried,
        hints,
    }
}

#[test]
fn tried_draining_and_unhealthy_workers_are_never_picked() {
    let p = pool(4, &[]);
    let policy = round_robin();
    let limits = no_limits();
    let hints = RouteHints::default();
    p.workers[1].health.set_draining(true);
    let tried = [p.workers[2].uid];
    let chosen = picks(&p, policy.as_ref(), &limits, 0, &want(&tried, &hints), 40);
    assert!(chosen.iter().all(|&i| i == 0 || i == 3), "{chosen:?}");
    assert!(chosen.contains(&0) && chosen.contains(&3), "{chosen:?}");

    // Nobody left: the request's own attempts failed.
    let all: Vec<u64> = [0, 2, 3].iter().map(|&i| p.workers[i].uid).collect();
    let breaker = BreakerSettings::default();
    let c = choice(&p, policy.as_ref(), &limits, &breaker, 0);
    let e = pick(&c, &want(&all, &hints)).unwrap_err();
    assert_eq!(e.status(), 502, "{e}");
    let e = pick(&c, &want(&[], &hints)).map(|_| ()).err();
    assert!(e.is_none(), "worker 0 and 3 are still there");
}

#[test]
fn an_open_breaker_excludes_its_worker() {
    let p = pool(2, &[]);
    let policy = round_robin();
    let limits = no_limits();
    let hints = RouteHints::default();
    let s = BreakerSettings::default();
    for _ in 0..s.failure_threshold {
        let a = p.workers[0].breaker.try_acquire(&s).unwrap();
        p.workers[0].breaker.record(&s, a, false);
    }
    assert_eq!(p.workers[0].breaker.state(), BreakerState::Open);
    let chosen = picks(&p, policy.as_ref(), &limits, 0, &want(&[], &hints), 10);
    assert!(chosen.iter().all(|&i| i == 1), "{chosen:?}");
}

#[test]
fn only_workers_serving_the_model_are_candidates() {
    let p = pool(3, &[]);
    for (i, w) in p.workers.iter().enumerate() {
        w.set_meta(WorkerMeta {
            models: vec![if i == 1 { "big".into() } else { "small".into() }],
            ..Default::default()
        });
    }
    let policy = round_robin();
    let limits = no_limits();
    let hints = RouteHints::default();
    let w = Want {
        model: Some("big"),
        tried: &[],
        hints: &hints,
    };
    assert!(picks(&p, policy.as_ref(), &limits, 0, &w, 10)
        .iter()
        .all(|&i| i == 1));
    let breaker = BreakerSettings::default();
    let c = choice(&p, policy.as_ref(), &limits, &breaker, 0);
    let unknown = Want {
        model: Some("huge"),
        tried: &[],
        hints: &hints,
    };
    assert_eq!(pick(&c, &unknown).unwrap_err().status(), 404);
    p.workers[1].health.set_draining(true);
    assert_eq!(
        pick(&c, &w).unwrap_err().status(),
        503,
        "known model, nobody free"
    );
}

#[test]
fn workers_at_the_cap_are_passed_over_while_others_have_room() {
    let p = pool(3, &[]);
    let policy = round_robin();
    let limits = no_limits();
    let hints = RouteHints::default();
    // Worker 0 holds 2 in-flight tokens, worker 1 one: with a cap of 2 only 1 and 2 have room.
    let _held: Vec<LoadGuard> = [0, 0, 1]
        .iter()
        .map(|&i| LoadGuard::new(p.workers[i].clone()))
        .collect();
    let chosen = picks(&p, policy.as_ref(), &limits, 2, &want(&[], &hints), 20);
    assert!(chosen.iter().all(|&i| i == 1 || i == 2), "{chosen:?}");
    // Everyone at the cap (the queue let this one through): any worker is still picked.
    let _more = [
        LoadGuard::new(p.workers[1].clone()),
        LoadGuard::new(p.workers[2].clone()),
        LoadGuard::new(p.workers[2].clone()),
    ];
    let chosen = picks(&p, policy.as_ref(), &limits, 2, &want(&[], &hints), 6);
    assert_eq!(chosen.len(), 6);
    // No cap: load does not matter to round robin.
    let chosen = picks(&p, policy.as_ref(), &limits, 0, &want(&[], &hints), 30);
    assert!((0..3).all(|i| chosen.contains(&i)), "{chosen:?}");
}

#[test]
fn the_per_worker_rate_limit_is_soft() {
    let p = pool(2, &[]);
    let policy = round_robin();
    // One request per second per worker; the clock does not move within the test.
    let limits = RateLimits::new(&RateLimitConfig {
        enabled: true,
        global_rps: 0,
        per_user_rpm: 0,
        per_worker_qps: 1,
        ..Default::default()
    });
    let hints = RouteHints::default();
    let chosen = picks(&p, policy.as_ref(), &limits, 0, &want(&[], &hints), 2);
    let mut sorted = chosen.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 1], "each worker's one cell is used first");
    // Both at their limit: the request is still served (by the last one passed over).
    let chosen = picks(&p, policy.as_ref(), &limits, 0, &want(&[], &hints), 3);
    assert_eq!(chosen.len(), 3);
}

#[test]
fn a_preferred_worker_wins_whenever_it_is_eligible() {
    let p = pool(3, &[]);
    let policy = round_robin();
    let limits = no_limits();
    let hints = RouteHints {
        prefer: Some(p.workers[2].uid),
        ..Default::default()
    };
    assert!(
        picks(&p, policy.as_ref(), &limits, 0, &want(&[], &hints), 10)
            .iter()
            .all(|&i| i == 2)
    );
    // Tried already (its attempt failed): the policy decides among the others.
    let tried = [p.workers[2].uid];
    let chosen = picks(&p, policy.as_ref(), &limits, 0, &want(&tried, &hints), 10);
    assert!(chosen.iter().all(|&i| i != 2), "{chosen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_half_open_breaker_admits_only_its_trial_requests() {
    let p = pool(2, &[]);
    let policy = round_robin();
    let limits = no_limits();
    let hints = RouteHints::default();
    let s = BreakerSettings {
        half_open_requests: 1,
        success_threshold: 1,
        ..Default::default()
    };
    for _ in 0..s.failure_threshold {
        let a = p.workers[0].breaker.try_acquire(&s).unwrap();
        p.workers[0].breaker.record(&s, a, false);
    }
    tokio::time::advance(s.timeout).await;
    let c = choice(&p, policy.as_ref(), &limits, &s, 0);
    let got: Vec<Picked> = (0..4)
        .map(|_| pick(&c, &want(&[], &hints)).unwrap())
        .collect();
    let trials: Vec<&Picked> = got
        .iter()
        .filter(|x| x.admission == Admission::Trial)
        .collect();
    assert_eq!(trials.len(), 1, "one trial slot: {got:?}");
    assert_eq!(trials[0].worker.uid, p.workers[0].uid);
    assert_eq!(
        got.iter()
            .filter(|x| x.worker.uid == p.workers[1].uid)
            .count(),
        3,
        "the other picks went to the closed worker"
    );
}
