//! `least_connections`: the worker with the fewest requests in flight from this gateway.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{argmin_rotating, Policy, RouteHints, Strategy};
use crate::worker::pool::Pool;

#[derive(Debug, Default)]
pub struct LeastConnections {
    turn: AtomicUsize,
}

impl Policy for LeastConnections {
    fn strategy(&self) -> Strategy {
        Strategy::LeastConnections
    }

    fn select(&self, pool: &Pool, candidates: &[usize], _hints: &RouteHints) -> usize {
        let turn = self.turn.fetch_add(1, Relaxed);
        argmin_rotating(candidates, turn, |i| pool.workers[i].load.inflight() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::test_support::{all, pool};
    use crate::worker::load::LoadGuard;

    #[test]
    fn picks_fewest_in_flight() {
        let p = pool(3, &[]);
        let _g: Vec<_> = [0, 0, 0, 2]
            .iter()
            .map(|&i| LoadGuard::new(p.workers[i].clone()))
            .collect();
        let lc = LeastConnections::default();
        for _ in 0..5 {
            assert_eq!(lc.select(&p, &all(&p), &RouteHints::default()), 1);
        }
        assert_eq!(lc.select(&p, &[0, 2], &RouteHints::default()), 2);
    }

    #[test]
    fn spreads_ties() {
        let p = pool(3, &[]);
        let lc = LeastConnections::default();
        let mut seen = [false; 3];
        for _ in 0..3 {
            seen[lc.select(&p, &all(&p), &RouteHints::default())] = true;
        }
        assert_eq!(seen, [true; 3]);
    }
}
