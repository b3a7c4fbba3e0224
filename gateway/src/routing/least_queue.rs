//! `least_queue` (join-shortest-queue): the worker with the fewest `running + waiting`
//! requests as it reports them on `/metrics`, corrected by this gateway's dispatches and
//! completions since the last scrape (see [`crate::worker::load`]). Workers without metrics
//! count their in-flight requests from this gateway.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{argmin_rotating, Policy, RouteHints, Strategy};
use crate::worker::pool::Pool;

#[derive(Debug, Default)]
pub struct LeastQueue {
    turn: AtomicUsize,
}

impl Policy for LeastQueue {
    fn strategy(&self) -> Strategy {
        Strategy::LeastQueue
    }

    fn select(&self, pool: &Pool, candidates: &[usize], _hints: &RouteHints) -> usize {
        let turn = self.turn.fetch_add(1, Relaxed);
        argmin_rotating(candidates, turn, |i| pool.workers[i].load.view().queue())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::test_support::{all, pool};

    #[test]
    fn picks_the_shortest_reported_queue() {
        let p = pool(3, &[]);
        for (w, (running, waiting)) in p.workers.iter().zip([(4.0, 2.0), (1.0, 0.0), (2.0, 5.0)]) {
            w.load.record_scrape(w.load.mark(), running, waiting, 0.0);
        }
        let jsq = LeastQueue::default();
        for _ in 0..5 {
            let c = jsq.select(&p, &all(&p), &RouteHints::default());
            let min = all(&p)
                .into_iter()
                .map(|i| p.workers[i].load.view().queue())
                .fold(f64::MAX, f64::min);
            assert_eq!(
                p.workers[c].load.view().queue(),
                min,
                "JSQ picks the minimum"
            );
        }
        assert_eq!(jsq.select(&p, &all(&p), &RouteHints::default()), 1);
        assert_eq!(jsq.select(&p, &[0, 2], &RouteHints::default()), 0);
    }

    #[test]
    fn local_dispatches_prevent_herding() {
        let p = pool(2, &[]);
        for w in &p.workers {
            w.load.record_scrape(w.load.mark(), 0.0, 0.0, 0.0);
        }
        let jsq = LeastQueue::default();
        let mut guards = Vec::new();
        let mut picks = [0; 2];
        for _ in 0..10 {
            let c = jsq.select(&p, &all(&p), &RouteHints::default());
            picks[c] += 1;
            guards.push(crate::worker::load::LoadGuard::new(p.workers[c].clone()));
        }
        assert_eq!(
            picks,
            [5, 5],
            "stale scrapes must not send a burst to one worker"
        );
    }
}
