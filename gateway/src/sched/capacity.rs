//! What the scheduler hands out and counts: a [`Grant`] is one worker slot held for one
//! request until it takes its worker's in-flight token; [`Capacity`] is the free slots and
//! expected time to first token per model, read from one pool snapshot per dispatch pass.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::worker::breaker::BreakerSettings;
use crate::worker::pool::Pool;

/// A worker slot handed to one request; drop it once the request holds its worker's
/// in-flight token (or gave up).
#[derive(Debug)]
pub struct Grant(Arc<AtomicUsize>);

impl Grant {
    pub(super) fn new(outstanding: &Arc<AtomicUsize>) -> Self {
        outstanding.fetch_add(1, Relaxed);
        Grant(outstanding.clone())
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Free slots and expected TTFT per model, from one pool snapshot (one dispatch pass).
pub(super) struct Capacity<'a> {
    pool: &'a Pool,
    breaker: BreakerSettings,
    cap: usize,
    free: HashMap<Option<String>, usize>,
}

impl<'a> Capacity<'a> {
    pub(super) fn new(pool: &'a Pool, config: &Config) -> Self {
        Self {
            pool,
            breaker: config.circuit_breaker.settings(),
            cap: config.scheduler.max_inflight_per_worker as usize,
            free: HashMap::new(),
        }
    }

    /// Free slots of the workers that could serve `model` now.
    pub(super) fn free(&mut self, model: Option<&str>) -> &mut usize {
        let (pool, breaker, cap) = (self.pool, &self.breaker, self.cap);
        self.free
            .entry(model.map(str::to_string))
            .or_insert_with(|| {
                pool.eligible(model, &[], breaker)
                    .iter()
                    .map(|&i| cap.saturating_sub(pool.workers[i].load.inflight() as usize))
                    .sum()
            })
    }

    /// The lowest EWMA time to first token among those workers (0 when unknown).
    pub(super) fn expected_ttft(&self, model: Option<&str>) -> Duration {
        let ms = self
            .pool
            .eligible(model, &[], &self.breaker)
            .iter()
            .filter_map(|&i| self.pool.workers[i].stats.view().ttft_ms)
            .fold(f64::INFINITY, f64::min);
        if ms.is_finite() {
            Duration::from_secs_f64(ms.max(0.0) / 1000.0)
        } else {
            Duration::ZERO
        }
    }
}
