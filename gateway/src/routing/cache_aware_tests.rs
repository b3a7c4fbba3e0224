//! Unit tests of `routing/cache_aware.rs`: stickiness, the load bound, eligibility, speed, and
//! workers leaving the pool.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::routing::test_support::{all, context, pool};
use crate::worker::load::LoadGuard;
use crate::worker::stats::Outcome;

fn policy() -> CacheAware {
    CacheAware::new(CacheAwareConfig::default())
}

fn hints(text: &str) -> RouteHints {
    RouteHints {
        prompt: Some(Prompt::new("m", text.as_bytes(), 256, 4.0, 16)),
        ..Default::default()
    }
}

#[test]
fn a_repeated_context_goes_where_it_went_before() {
    let p = pool(4, &[]);
    let a = policy();
    let ctx = context("ctx", 8_000);
    let first = a.select(&p, &all(&p), &hints(&format!("{ctx} question 0")));
    for q in 1..20 {
        let got = a.select(&p, &all(&p), &hints(&format!("{ctx} question {q}")));
        assert_eq!(got, first, "question {q}");
    }
    // Another context is not pinned to the same worker by that history: with equal load it
    // takes the rotating tie-break, so four contexts use more than one worker.
    let chosen: std::collections::HashSet<usize> = (0..4)
        .map(|c| a.select(&p, &all(&p), &hints(&context(&format!("other{c}-"), 8_000))))
        .collect();
    assert!(chosen.len() > 1, "{chosen:?}");
}

#[test]
fn the_cached_worker_is_left_once_it_passes_the_load_bound() {
    let p = pool(3, &[]);
    let a = policy();
    let ctx = context("ctx", 8_000);
    let home = a.select(&p, &all(&p), &hints(&ctx));
    let cfg = CacheAwareConfig::default();
    // Work in flight on the home worker beyond the bound (the others are idle).
    let heavy = (cfg.balance_slack_tokens as u64) + 1;
    // Just within the bound it is still the one.
    let some = LoadGuard::with_work(p.workers[home].clone(), heavy - 2);
    assert_eq!(a.select(&p, &all(&p), &hints(&format!("{ctx} more"))), home);
    drop(some);
    // Past the bound the cost decides; the others would prefill the whole ~2,000-token
    // context, so the home worker loses once its in-flight work outweighs that (⅛ of it
    // counts, batching).
    let _busy = LoadGuard::with_work(p.workers[home].clone(), heavy * 8);
    let got = a.select(&p, &all(&p), &hints(&format!("{ctx} again")));
    assert_ne!(got, home, "a saturated worker is passed over");
}

#[test]
fn only_candidates_are_chosen() {
    let p = pool(4, &[]);
    let a = policy();
    let ctx = context("ctx", 4_000);
    let home = a.select(&p, &all(&p), &hints(&ctx));
    // The home worker is not eligible (draining, tried, breaker…): someone else, from the list.
    let others: Vec<usize> = all(&p).into_iter().filter(|&i| i != home).collect();
    for q in 0..20 {
        let got = a.select(&p, &others, &hints(&format!("{ctx} {q}")));
        assert!(others.contains(&got), "{got} not in {others:?}");
    }
    assert_eq!(a.select(&p, &[2], &hints(&ctx)), 2);
}

#[test]
fn a_slower_worker_gets_a_smaller_share_of_plain_traffic() {
    let p = pool(2, &[]);
    let outcome = |tpot_ms: u64| Outcome {
        success: true,
        latency: Duration::from_millis(10 + 9 * tpot_ms),
        ttft: Some(Duration::from_millis(10)),
        completion_tokens: Some(10),
        prefill_tokens: None,
    };
    for _ in 0..10 {
        p.workers[0].stats.record(&outcome(20));
        p.workers[1].stats.record(&outcome(5));
    }
    slow_worker_0_gets_less(&p, 100, |a, i| {
        a.select(&p, &all(&p), &hints(&format!("unique prompt {i}")))
    });
}

/// Make `n` decisions with `decide` (each pick then held in flight with 100 tokens of work)
/// and check that worker 0, the slow one, gets under a third of them, but some.
fn slow_worker_0_gets_less(
    p: &Pool,
    n: usize,
    mut decide: impl FnMut(&CacheAware, usize) -> usize,
) {
    let a = policy();
    let mut held = Vec::new();
    let mut count = [0usize; 2];
    for i in 0..n {
        let k = decide(&a, i);
        count[k] += 1;
        held.push(LoadGuard::with_work(p.workers[k].clone(), 100));
    }
    assert!(
        count[0] * 2 < count[1],
        "slow {} fast {}",
        count[0],
        count[1]
    );
    assert!(count[0] > 0, "the slow worker still gets some");
}

#[test]
fn a_worker_slow_at_prefill_gets_fewer_long_uncached_prompts() {
    let p = pool(2, &[]);
    // Same decode speed; worker 0 takes 4x as long to prefill 1k tokens.
    let outcome = |ttft_ms: u64| Outcome {
        success: true,
        latency: Duration::from_millis(ttft_ms + 90),
        ttft: Some(Duration::from_millis(ttft_ms)),
        completion_tokens: Some(10),
        prefill_tokens: Some(1000),
    };
    for _ in 0..10 {
        p.workers[0].stats.record(&outcome(400));
        p.workers[1].stats.record(&outcome(100));
    }
    let stats: Vec<_> = p.workers.iter().map(|w| w.stats.view()).collect();
    let slow = relative_slowness(&stats);
    assert_eq!((slow[0].decode, slow[1].decode), (1.0, 1.0));
    assert!((slow[0].prefill - 1.6).abs() < 1e-9, "{slow:?}");
    assert!((slow[1].prefill - 0.4).abs() < 1e-9, "{slow:?}");
    slow_worker_0_gets_less(&p, 60, |a, i| {
        let h = hints(&context(&format!("fresh {i}"), 2_000));
        let k = a.select(&p, &all(&p), &h);
        // The decision notes what the chosen worker must prefill: the whole fresh prompt.
        assert_eq!(h.uncached.take(), Some(h.prompt.as_ref().unwrap().tokens));
        k
    });
}

#[test]
fn equal_workers_share_an_idle_fleet_whatever_their_measured_noise() {
    let p = pool(3, &[]);
    for (w, tpot) in p.workers.iter().zip([5, 5, 6]) {
        w.stats.record(&Outcome {
            success: true,
            latency: Duration::from_millis(10 + 9 * tpot),
            ttft: Some(Duration::from_millis(10)),
            completion_tokens: Some(10),
            prefill_tokens: None,
        });
    }
    let stats: Vec<_> = p.workers.iter().map(|w| w.stats.view()).collect();
    let even = Slowness {
        decode: 1.0,
        prefill: 1.0,
    };
    assert_eq!(relative_slowness(&stats), vec![even; 3]);
    let a = policy();
    let chosen: std::collections::HashSet<usize> = (0..6)
        .map(|i| a.select(&p, &all(&p), &hints(&format!("prompt {i}"))))
        .collect();
    assert_eq!(chosen.len(), 3);
}

#[test]
fn the_decision_follows_the_bound_and_the_match_ratio() {
    let cfg = CacheAwareConfig::default();
    let c = |matched: u32, pending: f64, cost: f64| Candidate {
        matched,
        uncached: 1000 - matched,
        pending,
        cost,
    };
    // Longest match within the bound wins over a lower cost.
    assert_eq!(
        decide(&cfg, &[c(0, 0.0, 10.0), c(900, 100.0, 500.0)], 1000, 0),
        1
    );
    // A match below min_match_ratio does not count.
    let tiny = (cfg.min_match_ratio * 1000.0) as u32 - 1;
    assert_eq!(
        decide(&cfg, &[c(0, 0.0, 10.0), c(tiny, 0.0, 500.0)], 1000, 0),
        0
    );
    // Past the bound: the cost decides.
    let over = cfg.balance_slack_tokens + 1.0;
    assert_eq!(
        decide(&cfg, &[c(0, 0.0, 10.0), c(900, over, 500.0)], 1000, 0),
        0
    );
    // The bound is relative too: 1.5 × the least pending + slack.
    let base = 10_000.0;
    let ok = cfg.balance_factor * base + cfg.balance_slack_tokens;
    assert_eq!(
        decide(&cfg, &[c(0, base, 10.0), c(900, ok, 500.0)], 1000, 0),
        1
    );
    // No prompt at all: the cost decides, ties rotate.
    let tie = [c(0, 0.0, 1.0), c(0, 0.0, 1.0)];
    assert_ne!(decide(&cfg, &tie, 0, 0), decide(&cfg, &tie, 0, 1));
}

#[test]
fn a_worker_that_left_the_pool_is_dropped_from_the_index() {
    let p = pool(2, &[]);
    let a = policy();
    let ctx = context("ctx", 2_000);
    let prompt = hints(&ctx).prompt.unwrap();
    let home = a.select(&p, &all(&p), &hints(&ctx));
    let uid = p.workers[home].uid;
    assert!(a.index.lookup(&prompt.chunks, &[uid])[0] > 0);
    // The next pool snapshot lacks that worker.
    let handle = crate::worker::pool::PoolHandle::new(vec![p.workers[1 - home].spec.clone()]);
    let next: Arc<Pool> = handle.load_full();
    a.select(&next, &all(&next), &hints("something else"));
    assert_eq!(a.index.lookup(&prompt.chunks, &[uid]), vec![0]);
}
