//! Series of the state shared with other replicas (see [`crate::shared`]), re-set from it at
//! every scrape: which backend holds it, how many replicas are live, and Redis calls by result.

use std::sync::atomic::Ordering::Relaxed;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::shared::{Backend, Shared};

pub struct SharedMetrics {
    backend: IntGaugeVec,
    replicas: IntGauge,
    calls: IntCounterVec,
}

impl SharedMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            backend: IntGaugeVec::new(
                Opts::new(
                    "llm_gateway_shared_backend",
                    "Where shared state (limits) lives: 1 for the current backend (local: no Redis configured, redis, degraded: Redis configured but not answering)",
                ),
                &["backend"],
            )?,
            replicas: IntGauge::with_opts(Opts::new(
                "llm_gateway_replicas",
                "Live gateway replicas sharing limits through Redis, this one included",
            ))?,
            calls: IntCounterVec::new(
                Opts::new(
                    "llm_gateway_redis_calls_total",
                    "Calls to Redis by result (ok, error, timeout)",
                ),
                &["result"],
            )?,
        };
        r.register(Box::new(m.backend.clone()))?;
        r.register(Box::new(m.replicas.clone()))?;
        r.register(Box::new(m.calls.clone()))?;
        Ok(m)
    }

    pub fn refresh(&self, s: &Shared) {
        let now = s.backend();
        for b in Backend::ALL {
            self.backend
                .with_label_values(&[b.as_str()])
                .set(i64::from(b == now));
        }
        self.replicas
            .set(i64::try_from(s.live_replicas()).unwrap_or(i64::MAX));
        if let Some(c) = s.client() {
            for (result, n) in [
                ("ok", &c.calls.ok),
                ("error", &c.calls.error),
                ("timeout", &c.calls.timeout),
            ] {
                let counter = self.calls.with_label_values(&[result]);
                counter.reset();
                counter.inc_by(n.load(Relaxed));
            }
        }
    }
}
