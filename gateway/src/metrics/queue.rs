//! The gateway-side queue's series (see [`crate::sched`]): depth and refusals re-set from the
//! scheduler at every scrape, the wait of each queued request observed when it got its slot.

use std::time::Duration;

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::sched::{Refusal, Scheduler};

pub struct QueueMetrics {
    depth: IntGauge,
    refused: IntCounterVec,
    wait: Histogram,
}

impl QueueMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            depth: IntGauge::with_opts(Opts::new(
                "llm_scheduler_queue_depth",
                "Requests waiting in the gateway's queue for a worker slot",
            ))?,
            refused: IntCounterVec::new(
                Opts::new(
                    "llm_scheduler_refused_total",
                    "Requests the queue refused (503), by reason: queue_full, timeout, deadline",
                ),
                &["reason"],
            )?,
            wait: Histogram::with_opts(
                HistogramOpts::new(
                    "llm_scheduler_wait_seconds",
                    "Time queued requests waited for a worker slot",
                )
                .buckets(exponential_buckets(0.001, 2.0, 16)?), // 1 ms … 33 s
            )?,
        };
        r.register(Box::new(m.depth.clone()))?;
        r.register(Box::new(m.refused.clone()))?;
        r.register(Box::new(m.wait.clone()))?;
        Ok(m)
    }

    /// A request that waited in the queue got its slot after `waited`.
    pub fn waited(&self, waited: Duration) {
        self.wait.observe(waited.as_secs_f64());
    }

    pub fn refresh(&self, s: &Scheduler) {
        self.depth.set(s.depth() as i64);
        for (why, n) in Refusal::ALL.iter().zip(s.refused()) {
            let c = self.refused.with_label_values(&[why.as_str()]);
            c.reset();
            c.inc_by(n);
        }
    }
}
