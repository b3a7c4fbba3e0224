//! `weighted_round_robin`: nginx's smooth weighted round robin. Each pick adds every
//! candidate's weight to its running score, takes the highest, and subtracts the total from
//! it: over one cycle of `Σ weights` picks every worker gets exactly its weight, interleaved
//! (5,1,1 gives a a b a c a a, not a a a a a b c).
//!
//! The scores need a consistent multi-worker update, so they sit behind one short mutex
//! (as in nginx); nothing else on the request path locks.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::{Policy, RouteHints, Strategy};
use crate::worker::pool::Pool;

#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    /// Running score per worker uid.
    scores: Mutex<HashMap<u64, i64>>,
}

impl Policy for WeightedRoundRobin {
    fn strategy(&self) -> Strategy {
        Strategy::WeightedRoundRobin
    }

    fn select(&self, pool: &Pool, candidates: &[usize], _hints: &RouteHints) -> usize {
        let mut scores = self.scores.lock();
        if scores.len() > pool.workers.len() + 64 {
            scores.retain(|uid, _| pool.workers.iter().any(|w| w.uid == *uid));
        }
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for &c in candidates {
            let w = &pool.workers[c];
            let weight = w.weight() as i64;
            total += weight;
            let score = scores.entry(w.uid).or_insert(0);
            *score += weight;
            if best.is_none_or(|(_, s)| *score > s) {
                best = Some((c, *score));
            }
        }
        let (chosen, _) = best.unwrap_or((candidates[0], 0));
        if let Some(s) = scores.get_mut(&pool.workers[chosen].uid) {
            *s -= total;
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::test_support::{all, pool};

    #[test]
    fn honours_weights_exactly_over_a_cycle() {
        let p = pool(3, &[5, 1, 2]);
        let wrr = WeightedRoundRobin::default();
        for _cycle in 0..4 {
            let mut counts = [0; 3];
            for _ in 0..8 {
                counts[wrr.select(&p, &all(&p), &RouteHints::default())] += 1;
            }
            assert_eq!(counts, [5, 1, 2]);
        }
    }

    #[test]
    fn is_smooth() {
        let p = pool(3, &[5, 1, 1]);
        let wrr = WeightedRoundRobin::default();
        let seq: Vec<usize> = (0..7)
            .map(|_| wrr.select(&p, &all(&p), &RouteHints::default()))
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn skips_ineligible_workers() {
        let p = pool(3, &[1, 1, 1]);
        let wrr = WeightedRoundRobin::default();
        for _ in 0..10 {
            assert_ne!(wrr.select(&p, &[0, 2], &RouteHints::default()), 1);
        }
    }
}
