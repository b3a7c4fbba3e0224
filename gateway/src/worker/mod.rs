//! Workers: what the gateway knows about each upstream (identity, models, kind, lifecycle,
//! load, statistics) and the [`pool::Pool`] snapshot the request path reads.
//!
//! Everything a request reads is an atomic or an `ArcSwap` load: the hot path takes no lock.

pub mod atomic_f64;
pub mod breaker;
pub mod cooldown;
pub mod kind;
pub mod load;
pub mod pool;
pub mod source;
pub mod spec;
pub mod state;
pub mod stats;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;

use breaker::{BreakerSettings, CircuitBreaker};
pub use kind::WorkerKind;
use load::Load;
pub use source::WorkerSource;
use spec::WorkerSpec;
use state::Health;
use stats::Stats;

use crate::routing::{Strategy, STRATEGIES};

/// What discovery learned about a worker (replaced wholesale, read lock-free).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerMeta {
    pub models: Vec<String>,
    /// `owned_by` per model as the worker reported it (same order as `models`).
    pub owners: Vec<String>,
    pub kind: WorkerKind,
    pub version: Option<String>,
}

#[derive(Debug)]
pub struct Worker {
    /// Unique for the process lifetime; identifies the worker across pool snapshots.
    pub uid: u64,
    /// Stable, human-readable id: the worker's `host:port`.
    pub id: String,
    /// `id` and `host:port` as ready-made header values (no per-request parsing).
    pub id_header: http::HeaderValue,
    pub host_header: http::HeaderValue,
    pub spec: WorkerSpec,
    weight: AtomicU32,
    pub load: Load,
    pub stats: Stats,
    pub health: Health,
    pub breaker: CircuitBreaker,
    /// The worker's own `Retry-After`: skipped by routing until it runs out.
    pub cooldown: cooldown::Cooldown,
    meta: ArcSwap<WorkerMeta>,
    /// Requests this worker answered with a 2xx/4xx vs connect errors, resets and 5xx.
    served: AtomicU64,
    /// Times routing chose this worker, per strategy (index of `Strategy::ALL`).
    selections: [AtomicU64; STRATEGIES],
}

/// `host:port` is validated ASCII, so this never falls back in practice.
fn header_value(s: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(s).unwrap_or_else(|_| http::HeaderValue::from_static("invalid"))
}

impl Worker {
    pub fn new(spec: WorkerSpec) -> Self {
        static NEXT_UID: AtomicU64 = AtomicU64::new(1);
        let meta = WorkerMeta {
            owners: vec![String::new(); spec.models.len()],
            models: spec.models.clone(),
            ..Default::default()
        };
        Self {
            uid: NEXT_UID.fetch_add(1, Relaxed),
            id: spec.authority.clone(),
            id_header: header_value(&spec.authority),
            host_header: header_value(spec.host_header()),
            weight: AtomicU32::new(spec.weight),
            spec,
            load: Load::default(),
            stats: Stats::default(),
            health: Health::default(),
            breaker: CircuitBreaker::default(),
            cooldown: cooldown::Cooldown::default(),
            meta: ArcSwap::from_pointee(meta),
            served: AtomicU64::new(0),
            selections: Default::default(),
        }
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    pub fn set_weight(&self, w: u32) {
        self.weight.store(w.max(1), Relaxed)
    }

    pub fn meta(&self) -> arc_swap::Guard<Arc<WorkerMeta>> {
        self.meta.load()
    }

    /// Replace discovered metadata. Models from the config always win over discovery.
    pub fn set_meta(&self, mut meta: WorkerMeta) {
        if !self.spec.models.is_empty() {
            meta.owners = vec![meta.kind.as_str().to_string(); self.spec.models.len()];
            meta.models = self.spec.models.clone();
        }
        self.meta.store(Arc::new(meta));
    }

    /// Whether this worker serves `model` (as discovered or configured).
    pub fn serves(&self, model: &str) -> bool {
        self.meta.load().models.iter().any(|m| m == model)
    }

    pub fn count_served(&self) {
        self.served.fetch_add(1, Relaxed);
    }

    pub fn served(&self) -> u64 {
        self.served.load(Relaxed)
    }

    /// Count one choice of this worker by the policy `strategy`.
    pub fn count_selection(&self, strategy: Strategy) {
        self.selections[strategy.index()].fetch_add(1, Relaxed);
    }

    /// Choices of this worker per strategy, in `Strategy::ALL` order.
    pub fn selections(&self) -> [u64; STRATEGIES] {
        std::array::from_fn(|i| self.selections[i].load(Relaxed))
    }

    /// Whether new requests may be sent: routable and admitted by the breaker (no side effects).
    pub fn is_eligible(&self, breaker: &BreakerSettings) -> bool {
        self.health.is_routable() && self.breaker.allows(breaker)
    }
}
