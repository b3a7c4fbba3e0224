//! `p2c_kv`: power of two choices with a KV-cache-aware cost. Two distinct
//! eligible workers are drawn at random; the one with the lower cost wins:
//!
//! ```text
//! cost = 1.0·waiting + 0.5·running + 2.0·kv_cache_usage + 0.3·latency + 5.0·error_rate
//!        − 2.0·prefix_match
//! ```
//!
//! Normalisation (weights are configurable under `[routing.p2c]`):
//! - `waiting`, `running`: request counts as the worker reports them, corrected by this
//!   gateway's dispatches since the last scrape (in-flight count when a worker has no metrics);
//! - `kv_cache_usage`: 0..1 as scraped;
//! - `latency`: the worker's EWMA end-to-end latency divided by the mean of the two
//!   candidates' EWMAs (1.0 = as fast as the pair's average; a worker without samples counts
//!   1.0), so the term compares the pair whatever the absolute request length;
//! - `error_rate`: 0..1, the time-decayed windowed error rate;
//! - `prefix_match`: 0..1, the share of the prompt the worker most likely has cached, from
//!   the prefix index of the prompts this policy routed (see `prefix_index`); the chosen
//!   worker is recorded there. A full match is worth two waiting requests by default.

use super::cache_aware::Members;
use super::prefix_index::PrefixIndex;
use super::rng::SeededRng;
use super::{Policy, RouteHints, Strategy};
use crate::config::P2cConfig;
use crate::worker::pool::Pool;
use crate::worker::Worker;

#[derive(Debug)]
pub struct P2cKv {
    weights: P2cConfig,
    rng: SeededRng,
    index: PrefixIndex,
    members: Members,
}

impl P2cKv {
    /// `max_entries`: the size of its prefix index (`routing.cache_aware.max_entries`).
    pub fn new(weights: P2cConfig, max_entries: usize, seed: Option<u64>) -> Self {
        Self {
            weights,
            rng: SeededRng::from_seed_or_clock(seed),
            index: PrefixIndex::new(max_entries),
            members: Members::default(),
        }
    }

    /// The cost of `w` given the normalised latency term.
    pub fn cost(&self, w: &Worker, latency: f64) -> f64 {
        let load = w.load.view();
        let k = &self.weights;
        k.waiting_weight * load.waiting
            + k.running_weight * load.running
            + k.kv_cache_weight * load.kv_cache
            + k.latency_weight * latency
            + k.error_rate_weight * w.stats.error_rate()
    }

    /// Draw two distinct positions in `0..n` (`n >= 2`).
    pub fn draw_pair(&self, n: usize) -> (usize, usize) {
        let a = self.rng.below(n);
        let b = (a + 1 + self.rng.below(n - 1)) % n;
        (a, b)
    }
}

/// Latencies of the pair relative to their mean (1.0 each when unknown).
fn relative_latency(a: f64, b: f64) -> (f64, f64) {
    match (a.is_nan(), b.is_nan()) {
        (false, false) if a + b > 0.0 => {
            let mean = (a + b) / 2.0;
            (a / mean, b / mean)
        }
        _ => (1.0, 1.0),
    }
}

impl Policy for P2cKv {
    fn strategy(&self) -> Strategy {
        Strategy::P2cKv
    }

    fn select(&self, pool: &Pool, candidates: &[usize], hints: &RouteHints) -> usize {
        let prompt = hints
            .prompt
            .as_deref()
            .filter(|_| self.weights.prefix_weight > 0.0);
        if prompt.is_some() {
            self.members.sync(pool, &self.index);
        }
        let mut matched = None;
        let chosen = if candidates.len() == 1 {
            candidates[0]
        } else {
            let (a, b) = self.draw_pair(candidates.len());
            let (wa, wb) = (&pool.workers[candidates[a]], &pool.workers[candidates[b]]);
            let (la, lb) = relative_latency(wa.stats.latency_ms(), wb.stats.latency_ms());
            let (mut ca, mut cb) = (self.cost(wa, la), self.cost(wb, lb));
            if let Some(p) = prompt.filter(|p| p.tokens > 0) {
                let depth = self.index.lookup(&p.chunks, &[wa.uid, wb.uid]);
                let share = |d: u32| f64::from(p.tokens_in(d)) / f64::from(p.tokens);
                ca -= self.weights.prefix_weight * share(depth[0]);
                cb -= self.weights.prefix_weight * share(depth[1]);
                matched = Some(if cb < ca { depth[1] } else { depth[0] });
            }
            tracing::trace!(a = %wa.id, cost_a = ca, b = %wb.id, cost_b = cb, "p2c_kv pair");
            if cb < ca {
                candidates[b]
            } else {
                candidates[a]
            }
        };
        if let Some(p) = prompt {
            let uid = pool.workers[chosen].uid;
            let depth = matched.unwrap_or_else(|| self.index.lookup(&p.chunks, &[uid])[0]);
            self.index.record_route(p.tokens_in(depth), p.tokens);
            self.index.insert(&p.chunks, uid);
            hints.uncached.set(p.tokens - p.tokens_in(depth));
        }
        chosen
    }

    fn prefix_index(&self) -> Option<&PrefixIndex> {
        Some(&self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::test_support::{all, pool};
    use crate::worker::stats::Outcome;

    #[test]
    fn pair_is_always_two_distinct_candidates() {
        let p = P2cKv::new(P2cConfig::default(), 10_000, Some(42));
        for n in 2..8 {
            for _ in 0..500 {
                let (a, b) = p.draw_pair(n);
                assert!(a < n && b < n && a != b, "n={n} a={a} b={b}");
            }
        }
    }

    #[test]
    fn the_cheaper_of_the_pair_wins() {
        let pool = pool(4, &[]);
        let loads = [
            (0.0, 9.0, 0.9),
            (1.0, 0.0, 0.1),
            (3.0, 3.0, 0.5),
            (0.0, 2.0, 0.2),
        ];
        for (w, (running, waiting, kv)) in pool.workers.iter().zip(loads) {
            w.load.record_scrape(w.load.mark(), running, waiting, kv);
        }
        let p = P2cKv::new(P2cConfig::default(), 10_000, Some(7));
        // A twin with the same seed draws the same pairs, so each choice can be checked.
        let twin = P2cKv::new(P2cConfig::default(), 10_000, Some(7));
        let cands = all(&pool);
        let cost = |i: usize| p.cost(&pool.workers[i], 1.0);
        for _ in 0..200 {
            let (a, b) = twin.draw_pair(cands.len());
            let chosen = p.select(&pool, &cands, &RouteHints::default());
            assert!(
                chosen == cands[a] || chosen == cands[b],
                "picked from the pair"
            );
            let rival = if chosen == cands[a] {
                cands[b]
            } else {
                cands[a]
            };
            assert!(cost(chosen) <= cost(rival), "the cheaper of the pair wins");
            assert_ne!(chosen, 0, "the costliest worker can never win a pair");
        }
        assert_eq!(p.select(&pool, &[0, 1], &RouteHints::default()), 1);
        assert_eq!(p.select(&pool, &[2, 0], &RouteHints::default()), 2);
    }

    #[test]
    fn a_cached_prefix_is_worth_its_weight() {
        let pool = pool(2, &[]);
        let p = P2cKv::new(P2cConfig::default(), 10_000, Some(3));
        let prompt = crate::routing::prefix_index::Prompt::new(
            "m",
            "a long shared system prompt ".repeat(100).as_bytes(),
            256,
            4.0,
            16,
        );
        let hints = RouteHints {
            prompt: Some(prompt.clone()),
            ..Default::default()
        };
        let home = p.select(&pool, &all(&pool), &hints);
        // One waiting request more on the home worker: the full match (2.0) still wins.
        let w = &pool.workers[home];
        w.load.record_scrape(w.load.mark(), 0.0, 1.0, 0.0);
        let other = &pool.workers[1 - home];
        other.load.record_scrape(other.load.mark(), 0.0, 0.0, 0.0);
        for _ in 0..20 {
            assert_eq!(p.select(&pool, &all(&pool), &hints), home);
        }
        // Three more waiting requests outweigh it.
        w.load.record_scrape(w.load.mark(), 0.0, 3.0, 0.0);
        assert_eq!(p.select(&pool, &all(&pool), &hints), 1 - home);
        // Without the weight the prompt is ignored (and not indexed).
        let plain = P2cKv::new(
            P2cConfig {
                prefix_weight: 0.0,
                ..Default::default()
            },
            10_000,
            Some(3),
        );
        plain.select(&pool, &all(&pool), &hints);
        assert_eq!(plain.index.entries(), 0);
    }

    #[test]
    fn latency_and_errors_count() {
        let pool = pool(2, &[]);
        let slow = Outcome {
            success: true,
            latency: std::time::Duration::from_millis(900),
            ..Default::default()
        };
        let fast = Outcome {
            success: true,
            latency: std::time::Duration::from_millis(100),
            ..Default::default()
        };
        pool.workers[0].stats.record(&slow);
        pool.workers[1].stats.record(&fast);
        let p = P2cKv::new(P2cConfig::default(), 10_000, Some(1));
        assert_eq!(p.select(&pool, &all(&pool), &RouteHints::default()), 1);
        let fail = Outcome::default();
        for _ in 0..5 {
            pool.workers[1].stats.record(&fail);
        }
        assert_eq!(
            p.select(&pool, &all(&pool), &RouteHints::default()),
            0,
            "errors outweigh latency"
        );
    }
}
