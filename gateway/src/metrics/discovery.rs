//! Series of worker discovery (see [`crate::discovery`]), re-set from its counters at every
//! scrape: lookups by result and how many workers of the pool it found.

use std::sync::atomic::Ordering::Relaxed;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::state::AppState;

pub struct DiscoveryMetrics {
    lookups: IntCounterVec,
    workers: IntGauge,
}

impl DiscoveryMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            lookups: IntCounterVec::new(
                Opts::new(
                    "llm_gateway_discovery_lookups_total",
                    "Worker discovery lookups by result (ok: an answer, possibly empty; error: no answer, the last good set kept)",
                ),
                &["result"],
            )?,
            workers: IntGauge::with_opts(Opts::new(
                "llm_gateway_discovered_workers",
                "Workers in the pool that discovery found (0 without discovery)",
            ))?,
        };
        r.register(Box::new(m.lookups.clone()))?;
        r.register(Box::new(m.workers.clone()))?;
        Ok(m)
    }

    pub fn refresh(&self, state: &AppState) {
        let d = &state.discovery;
        for (result, n) in [("ok", &d.lookups_ok), ("error", &d.lookups_failed)] {
            let counter = self.lookups.with_label_values(&[result]);
            counter.reset();
            counter.inc_by(n.load(Relaxed));
        }
        self.workers
            .set(i64::try_from(crate::discovery::discovered_count(state)).unwrap_or(i64::MAX));
    }
}
