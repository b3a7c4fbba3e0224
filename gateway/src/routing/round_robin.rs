//! `round_robin`: rotate over the eligible workers.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{Policy, RouteHints, Strategy};
use crate::worker::pool::Pool;

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Policy for RoundRobin {
    fn strategy(&self) -> Strategy {
        Strategy::RoundRobin
    }

    fn select(&self, _pool: &Pool, candidates: &[usize], _hints: &RouteHints) -> usize {
        candidates[self.next.fetch_add(1, Relaxed) % candidates.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::test_support::{all, pool};

    #[test]
    fn rotates_evenly() {
        let p = pool(3, &[]);
        let rr = RoundRobin::default();
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[rr.select(&p, &all(&p), &RouteHints::default())] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }
}
