//! `adaptive`: ε-greedy over a learned per-worker cost. With probability ε (0.1) a random
//! eligible worker is explored; otherwise the one with the lowest estimated cost is used.
//! Unexplored workers count as cheapest, so each is tried early.
//!
//! The cost estimate is an EWMA (learning rate 0.1) of milliseconds per output token
//! (end-to-end latency ÷ completion tokens; plain latency when the response has no token
//! count); a failed request counts as [`FAILURE_COST_MS`]. Estimates live on the workers, so
//! they survive a strategy switch and a membership change.

use super::rng::SeededRng;
use super::{Policy, RouteHints, Strategy};
use crate::config::AdaptiveConfig;
use crate::worker::pool::Pool;
use crate::worker::stats::Outcome;
use crate::worker::Worker;

/// The per-token cost a failure counts as (a very slow worker).
pub const FAILURE_COST_MS: f64 = 1_000.0;

#[derive(Debug)]
pub struct Adaptive {
    cfg: AdaptiveConfig,
    rng: SeededRng,
}

impl Adaptive {
    pub fn new(cfg: AdaptiveConfig, seed: Option<u64>) -> Self {
        Self {
            cfg,
            rng: SeededRng::from_seed_or_clock(seed),
        }
    }

    /// The cost sample of one outcome.
    pub fn sample(outcome: &Outcome) -> f64 {
        if !outcome.success {
            return FAILURE_COST_MS;
        }
        let ms = outcome.latency.as_secs_f64() * 1000.0;
        match outcome.completion_tokens {
            Some(n) if n > 0 => ms / n as f64,
            _ => ms,
        }
    }
}

impl Policy for Adaptive {
    fn strategy(&self) -> Strategy {
        Strategy::Adaptive
    }

    fn select(&self, pool: &Pool, candidates: &[usize], _hints: &RouteHints) -> usize {
        if candidates.len() > 1 && self.rng.unit() < self.cfg.epsilon {
            return candidates[self.rng.below(candidates.len())];
        }
        let cost = |c: usize| {
            let v = pool.workers[c].stats.adaptive_cost.get();
            if v.is_nan() {
                f64::NEG_INFINITY
            } else {
                v
            }
        };
        let mut best = candidates[0];
        for &c in &candidates[1..] {
            if cost(c) < cost(best) {
                best = c;
            }
        }
        best
    }

    fn observe(&self, worker: &Worker, outcome: &Outcome) {
        let x = Self::sample(outcome);
        let lr = self.cfg.learning_rate;
        worker.stats.adaptive_cost.update(|old| {
            if old.is_nan() {
                x
            } else {
                old + lr * (x - old)
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::test_support::{all, pool};
    use std::time::Duration;

    /// A simulated fleet: worker i needs `per_token_ms[i]` per token; 20 tokens per request.
    fn simulate(per_token_ms: &[u64], rounds: usize, seed: u64) -> Vec<usize> {
        let p = pool(per_token_ms.len(), &[]);
        let a = Adaptive::new(AdaptiveConfig::default(), Some(seed));
        let jitter = SeededRng::new(seed ^ 0xABCD);
        let mut picks = Vec::new();
        for _ in 0..rounds {
            let c = a.select(&p, &all(&p), &RouteHints::default());
            let noise = 0.8 + 0.4 * jitter.unit();
            let latency = Duration::from_secs_f64(per_token_ms[c] as f64 * 20.0 * noise / 1000.0);
            a.observe(
                &p.workers[c],
                &Outcome {
                    success: true,
                    latency,
                    ttft: None,
                    completion_tokens: Some(20),
                    prefill_tokens: None,
                },
            );
            picks.push(c);
        }
        picks
    }

    #[test]
    fn converges_to_the_fastest_worker() {
        for seed in [1, 2, 3] {
            let picks = simulate(&[30, 10, 20, 40], 1000, seed);
            let late = &picks[500..];
            let fastest = late.iter().filter(|&&c| c == 1).count();
            // (1-ε) + ε/4 ≈ 0.925 expected; require a clear majority.
            assert!(fastest > 400, "seed {seed}: fastest got {fastest}/500");
        }
    }

    /// No exploration: every pick is the current best estimate.
    fn greedy() -> Adaptive {
        Adaptive::new(
            AdaptiveConfig {
                epsilon: 0.0,
                learning_rate: 0.1,
            },
            Some(1),
        )
    }

    #[test]
    fn failures_push_a_worker_away() {
        let p = pool(2, &[]);
        let a = greedy();
        let ok = Outcome {
            success: true,
            latency: Duration::from_millis(100),
            ttft: None,
            completion_tokens: Some(10),
            prefill_tokens: None,
        };
        a.observe(&p.workers[0], &ok);
        a.observe(
            &p.workers[1],
            &Outcome {
                latency: Duration::from_millis(200),
                ..ok
            },
        );
        assert_eq!(a.select(&p, &all(&p), &RouteHints::default()), 0);
        for _ in 0..3 {
            a.observe(&p.workers[0], &Outcome::default());
        }
        assert_eq!(a.select(&p, &all(&p), &RouteHints::default()), 1);
    }

    #[test]
    fn unexplored_workers_are_tried_first() {
        let p = pool(3, &[]);
        let a = greedy();
        let ok = Outcome {
            success: true,
            latency: Duration::from_millis(10),
            ..Default::default()
        };
        let mut seen = Vec::new();
        for _ in 0..3 {
            let c = a.select(&p, &all(&p), &RouteHints::default());
            a.observe(&p.workers[c], &ok);
            seen.push(c);
        }
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
