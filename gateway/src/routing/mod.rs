//! Routing: eight policies behind one small trait, built by one factory from the config tag.
//!
//! The pool decides *which workers may* take a request ([`crate::worker::pool::Pool::eligible`]:
//! routable, serves the model, not yet tried); a policy only decides *which one of those*.
//!
//! | tag | file | rule |
//! |---|---|---|
//! | `round_robin` | [`round_robin`] | rotate over eligible workers |
//! | `weighted_round_robin` | [`weighted_round_robin`] | smooth weighted RR (nginx) |
//! | `least_queue` | [`least_queue`] | JSQ: fewest running + waiting (scraped, corrected) |
//! | `least_connections` | [`least_connections`] | fewest in-flight from this gateway |
//! | `p2c_kv` | [`p2c_kv`] | two random candidates, lower load/KV/latency/error cost wins |
//! | `consistent_hash` | [`consistent_hash`] | hash ring with virtual nodes over an affinity key |
//! | `adaptive` | [`adaptive`] | ε-greedy over learned per-token latency |
//! | `cache_aware` | [`cache_aware`] | longest cached prompt prefix within a load bound, else least work |
//!
//! `cache_aware` and `p2c_kv` learn where prompt prefixes went in a [`prefix_index`].

pub mod adaptive;
pub mod cache_aware;
pub mod consistent_hash;
pub mod least_connections;
pub mod least_queue;
pub mod p2c_kv;
pub mod prefix_index;
pub mod rng;
pub mod round_robin;
pub mod weighted_round_robin;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use crate::config::RoutingConfig;
use crate::worker::pool::Pool;
use crate::worker::stats::Outcome;
use crate::worker::Worker;

/// The number of strategies: the size of every per-strategy counter array.
pub const STRATEGIES: usize = Strategy::ALL.len();

/// The config tags of the policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    RoundRobin,
    WeightedRoundRobin,
    LeastQueue,
    LeastConnections,
    P2cKv,
    ConsistentHash,
    Adaptive,
    CacheAware,
}

impl Strategy {
    /// Every strategy, in declaration order.
    pub const ALL: &'static [Strategy] = &[
        Strategy::RoundRobin,
        Strategy::WeightedRoundRobin,
        Strategy::LeastQueue,
        Strategy::LeastConnections,
        Strategy::P2cKv,
        Strategy::ConsistentHash,
        Strategy::Adaptive,
        Strategy::CacheAware,
    ];

    /// Position in [`Strategy::ALL`] (declaration order, tested).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::WeightedRoundRobin => "weighted_round_robin",
            Strategy::LeastQueue => "least_queue",
            Strategy::LeastConnections => "least_connections",
            Strategy::P2cKv => "p2c_kv",
            Strategy::ConsistentHash => "consistent_hash",
            Strategy::Adaptive => "adaptive",
            Strategy::CacheAware => "cache_aware",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Strategy::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Strategy::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown routing strategy `{s}` (one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// Request facts a policy may use.
#[derive(Clone, Debug, Default)]
pub struct RouteHints {
    /// Hash of the affinity key (session, user, API key or prompt prefix), if any.
    pub affinity: Option<u64>,
    /// A worker (uid) to take whenever it is eligible, before any policy: a session's worker,
    /// whose prefix cache holds the conversation.
    pub prefer: Option<u64>,
    /// The prompt's chunk hashes and size, for the cache-aware policies (computed only when
    /// the strategy uses them).
    pub prompt: Option<Arc<prefix_index::Prompt>>,
    /// Written by a policy that estimated it: the prompt tokens the chosen worker will have to
    /// prefill (not cached there). The worker's prefill-rate EWMA learns from it.
    pub uncached: Noted,
}

/// A `u32` a policy may note while deciding, through the shared `&RouteHints`.
#[derive(Debug, Default)]
pub struct Noted(AtomicU32);

impl Noted {
    const NONE: u32 = 0;

    /// Note `v` (0 counts as nothing noted).
    pub fn set(&self, v: u32) {
        self.0.store(v, Relaxed);
    }

    /// The noted value, cleared.
    pub fn take(&self) -> Option<u32> {
        let v = self.0.swap(Self::NONE, Relaxed);
        (v != Self::NONE).then_some(v)
    }
}

impl Clone for Noted {
    fn clone(&self) -> Self {
        Noted(AtomicU32::new(self.0.load(Relaxed)))
    }
}

/// A routing policy. Implementations are cheap to call and never block.
pub trait Policy: Send + Sync + fmt::Debug {
    /// The strategy this policy implements.
    fn strategy(&self) -> Strategy;

    /// The config tag of this policy.
    fn name(&self) -> &'static str {
        self.strategy().as_str()
    }

    /// Pick one of `candidates` (indices into `pool.workers`; never empty) and return the
    /// chosen element of `candidates`.
    fn select(&self, pool: &Pool, candidates: &[usize], hints: &RouteHints) -> usize;

    /// Learn from a finished request. Default: nothing (only `adaptive` learns).
    fn observe(&self, _worker: &Worker, _outcome: &Outcome) {}

    /// The policy's prefix index, when it keeps one (`cache_aware`, `p2c_kv`).
    fn prefix_index(&self) -> Option<&prefix_index::PrefixIndex> {
        None
    }
}

/// The one place a config tag becomes a policy.
pub fn build(cfg: &RoutingConfig) -> Box<dyn Policy> {
    match cfg.strategy {
        Strategy::RoundRobin => Box::new(round_robin::RoundRobin::default()),
        Strategy::WeightedRoundRobin => {
            Box::new(weighted_round_robin::WeightedRoundRobin::default())
        }
        Strategy::LeastQueue => Box::new(least_queue::LeastQueue::default()),
        Strategy::LeastConnections => Box::new(least_connections::LeastConnections::default()),
        Strategy::P2cKv => Box::new(p2c_kv::P2cKv::new(
            cfg.p2c.clone(),
            cfg.cache_aware.max_entries,
            cfg.seed,
        )),
        Strategy::ConsistentHash => Box::new(consistent_hash::ConsistentHash::new(
            cfg.consistent_hash.virtual_nodes,
        )),
        Strategy::Adaptive => Box::new(adaptive::Adaptive::new(cfg.adaptive.clone(), cfg.seed)),
        Strategy::CacheAware => Box::new(cache_aware::CacheAware::new(cfg.cache_aware.clone())),
    }
}

/// Among `candidates`, the one with the smallest `key`; ties are broken by rotating the start
/// position with `turn`, so an idle fleet is still shared instead of always hitting the first.
pub(crate) fn argmin_rotating(
    candidates: &[usize],
    turn: usize,
    key: impl Fn(usize) -> f64,
) -> usize {
    let n = candidates.len();
    let start = turn % n;
    let mut best = candidates[start];
    let mut best_key = key(best);
    for k in 1..n {
        let c = candidates[(start + k) % n];
        let v = key(c);
        if v < best_key {
            best = c;
            best_key = v;
        }
    }
    best
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::worker::pool::PoolHandle;
    use crate::worker::spec::WorkerSpec;
    use crate::worker::state::HealthThresholds;
    use std::sync::Arc;

    /// A pool of `n` READY workers with the given weights (all 1 when empty).
    pub fn pool(n: usize, weights: &[u32]) -> Arc<Pool> {
        let specs = (0..n)
            .map(|i| {
                let w = weights.get(i).copied().unwrap_or(1);
                WorkerSpec::new(&format!("http://127.0.0.1:{}", 10_000 + i), w, vec![]).unwrap()
            })
            .collect();
        let h = PoolHandle::new(specs);
        let p = h.load_full();
        for w in &p.workers {
            w.health.record(
                true,
                HealthThresholds {
                    failures: 1,
                    recoveries: 1,
                },
            );
        }
        p
    }

    pub fn all(p: &Pool) -> Vec<usize> {
        (0..p.workers.len()).collect()
    }

    /// Exactly `bytes` of prompt text: `{name}0 {name}1 …`, distinct per `name`.
    pub fn context(name: &str, bytes: usize) -> String {
        let mut s = String::new();
        let mut i = 0;
        while s.len() < bytes {
            s.push_str(&format!("{name}{i} "));
            i += 1;
        }
        s.truncate(bytes);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_factory_names_match() {
        for (i, &s) in Strategy::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(s.as_str().parse::<Strategy>().unwrap(), s);
            let cfg = RoutingConfig {
                strategy: s,
                ..Default::default()
            };
            assert_eq!(build(&cfg).strategy(), s);
            assert_eq!(build(&cfg).name(), s.as_str());
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!("fastest"
            .parse::<Strategy>()
            .unwrap_err()
            .contains("round_robin"));
    }

    #[test]
    fn argmin_rotates_ties() {
        let c = [3, 5, 7];
        assert_eq!(argmin_rotating(&c, 0, |_| 1.0), 3);
        assert_eq!(argmin_rotating(&c, 1, |_| 1.0), 5);
        assert_eq!(
            argmin_rotating(&c, 4, |i| if i == 7 { 0.0 } else { 1.0 }),
            7
        );
    }
}
