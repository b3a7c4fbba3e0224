//! `consistent_hash`: a hash ring with `virtual_nodes × weight` points per worker. The key is
//! the request's affinity hash (`X-Session-ID` header, `session_id` or `user` field, API key,
//! else the prompt prefix); the request goes to the first eligible worker clockwise from it.
//!
//! The ring is built over the whole pool, not just the eligible workers, so a worker that is
//! unhealthy, draining or already tried by this request only hands its own keys to its ring
//! successors: everything else stays put, and a retry never lands on the failed worker. The
//! ring is rebuilt only when the pool's membership changes (keyed by its generation).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::rng::{hash_bytes, mix64};
use super::{Policy, RouteHints, Strategy};
use crate::worker::pool::Pool;

#[derive(Debug)]
struct Ring {
    generation: u64,
    /// (point, worker uid), sorted by point.
    points: Vec<(u64, u64)>,
}

#[derive(Debug)]
pub struct ConsistentHash {
    virtual_nodes: u32,
    ring: ArcSwapOption<Ring>,
    /// Requests without any key are spread round-robin.
    turn: AtomicUsize,
}

impl ConsistentHash {
    pub fn new(virtual_nodes: u32) -> Self {
        Self {
            virtual_nodes: virtual_nodes.max(1),
            ring: ArcSwapOption::empty(),
            turn: AtomicUsize::new(0),
        }
    }

    fn ring_for(&self, pool: &Pool) -> Arc<Ring> {
        if let Some(r) = self
            .ring
            .load_full()
            .filter(|r| r.generation == pool.generation)
        {
            return r;
        }
        let mut points = Vec::new();
        for w in &pool.workers {
            let base = hash_bytes(w.id.as_bytes());
            for v in 0..(self.virtual_nodes as u64 * w.weight() as u64) {
                points.push((mix64(base ^ mix64(v + 1)), w.uid));
            }
        }
        points.sort_unstable();
        let ring = Arc::new(Ring {
            generation: pool.generation,
            points,
        });
        self.ring.store(Some(ring.clone()));
        ring
    }
}

impl Policy for ConsistentHash {
    fn strategy(&self) -> Strategy {
        Strategy::ConsistentHash
    }

    fn select(&self, pool: &Pool, candidates: &[usize], hints: &RouteHints) -> usize {
        let Some(key) = hints.affinity else {
            return candidates[self.turn.fetch_add(1, Relaxed) % candidates.len()];
        };
        let ring = self.ring_for(pool);
        let n = ring.points.len();
        let start = ring.points.partition_point(|(p, _)| *p < key);
        for k in 0..n {
            let (_, uid) = ring.points[(start + k) % n];
            if let Some(&c) = candidates.iter().find(|&&c| pool.workers[c].uid == uid) {
                return c;
            }
        }
        candidates[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::rng::hash_bytes;
    use crate::routing::test_support::{all, pool};
    use crate::worker::pool::PoolHandle;
    use crate::worker::spec::WorkerSpec;
    use crate::worker::state::HealthThresholds;

    fn hint(k: u64) -> RouteHints {
        RouteHints {
            prefer: None,
            affinity: Some(hash_bytes(&k.to_le_bytes())),
            ..Default::default()
        }
    }

    #[test]
    fn a_session_stays_on_one_worker() {
        let p = pool(4, &[]);
        let ch = ConsistentHash::new(150);
        for key in 0..50 {
            let first = ch.select(&p, &all(&p), &hint(key));
            for _ in 0..5 {
                assert_eq!(ch.select(&p, &all(&p), &hint(key)), first);
            }
        }
    }

    #[test]
    fn keys_spread_over_workers() {
        let p = pool(4, &[]);
        let ch = ConsistentHash::new(150);
        let mut counts = [0; 4];
        for key in 0..4000 {
            counts[ch.select(&p, &all(&p), &hint(key))] += 1;
        }
        assert!(counts.iter().all(|&c| c > 600 && c < 1400), "{counts:?}");
    }

    #[test]
    fn only_the_leaving_workers_keys_move() {
        let specs: Vec<_> = (0..5)
            .map(|i| {
                WorkerSpec::new(&format!("http://127.0.0.1:{}", 11_000 + i), 1, vec![]).unwrap()
            })
            .collect();
        let h = PoolHandle::new(specs.clone());
        let t = HealthThresholds {
            failures: 1,
            recoveries: 1,
        };
        h.load().workers.iter().for_each(|w| {
            w.health.record(true, t);
        });
        let ch = ConsistentHash::new(150);
        let before: Vec<u64> = (0..5000)
            .map(|k| {
                let p = h.load();
                p.workers[ch.select(&p, &all(&p), &hint(k))].uid
            })
            .collect();
        let leaving = h.load().workers[2].uid;
        h.replace(
            specs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 2)
                .map(|(_, s)| s.clone())
                .collect(),
        );
        let mut moved = 0;
        for (k, old) in before.iter().enumerate() {
            let p = h.load();
            let now = p.workers[ch.select(&p, &all(&p), &hint(k as u64))].uid;
            if *old != leaving {
                assert_eq!(now, *old, "a key of a staying worker moved");
            } else {
                moved += 1;
            }
        }
        // About 1/N of the keys belonged to the leaving worker.
        assert!(moved > 700 && moved < 1300, "moved {moved} of 5000");
    }

    #[test]
    fn a_failed_worker_is_skipped_without_moving_other_keys() {
        let p = pool(3, &[]);
        let ch = ConsistentHash::new(150);
        for key in 0..200 {
            let first = ch.select(&p, &all(&p), &hint(key));
            let rest: Vec<usize> = all(&p).into_iter().filter(|&c| c != first).collect();
            let retry = ch.select(&p, &rest, &hint(key));
            assert_ne!(retry, first);
        }
    }

    #[test]
    fn weights_scale_the_share() {
        let p = pool(2, &[3, 1]);
        let ch = ConsistentHash::new(150);
        let mut counts = [0; 2];
        for key in 0..4000 {
            counts[ch.select(&p, &all(&p), &hint(key))] += 1;
        }
        assert!(counts[0] > 2 * counts[1], "{counts:?}");
    }
}
