//! `cache_aware`: send a prompt where its prefix is already cached, unless that worker is
//! saturated ("sticky until saturated"); otherwise the worker with the least work wins.
//!
//! For each eligible worker, from the [`PrefixIndex`] of the prompts this policy routed:
//!
//! ```text
//! matched   = prompt tokens the worker most likely still has cached (longest indexed prefix)
//! uncached  = prompt tokens − matched                     (what it would have to prefill)
//! pending   = prompt + decode tokens this gateway has in flight there
//!           + request_tokens × the scraped running/waiting requests that are not ours
//! slow_dec  = its EWMA time per output token / the candidates' mean (1 when unknown)
//! slow_pre  = its EWMA prefill time per 1k uncached tokens / the candidates' mean
//!             (slow_dec while no candidate has a prefill sample yet)
//! cost      = slow_pre × prefill_weight·uncached
//!           + slow_dec × (decode + pending_weight·pending)
//!           + kv_cache_weight·kv_cache_usage + error_rate_weight·error_rate
//! ```
//!
//! `decode` is the request's own `max_tokens` (or the configured default). A batching engine
//! works on its running sequences together, so the work already in flight delays a new
//! request by only a fraction of it: `pending_weight` defaults to 1/8.
//!
//! The worker with the longest match is taken when the match covers at least
//! `min_match_ratio` of the prompt and its `pending ≤ balance_factor × min pending +
//! balance_slack_tokens` (the bounded load); otherwise the lowest cost wins (ties rotate).
//! The chosen worker is recorded as holding the prompt's prefix, and its `uncached` estimate
//! is noted in the hints, so the worker's prefill-rate EWMA learns from the request's time to
//! first token. Weights and the bound are `[routing.cache_aware]` keys.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

use super::prefix_index::{PrefixIndex, Prompt};
use super::{argmin_rotating, Policy, RouteHints, Strategy};
use crate::config::CacheAwareConfig;
use crate::worker::load::LoadView;
use crate::worker::pool::Pool;
use crate::worker::stats::StatsView;
use crate::worker::Worker;

/// What the decision knows of one candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Candidate {
    pub matched: u32,
    pub uncached: u32,
    pub pending: f64,
    pub cost: f64,
}

#[derive(Debug)]
pub struct CacheAware {
    cfg: CacheAwareConfig,
    index: PrefixIndex,
    members: Members,
    turn: AtomicUsize,
}

impl CacheAware {
    pub fn new(cfg: CacheAwareConfig) -> Self {
        Self {
            index: PrefixIndex::new(cfg.max_entries),
            cfg,
            members: Members::default(),
            turn: AtomicUsize::new(0),
        }
    }

    /// The candidates as the decision sees them.
    pub fn candidates(
        &self,
        pool: &Pool,
        candidates: &[usize],
        prompt: Option<&Prompt>,
    ) -> Vec<Candidate> {
        let uids: Vec<u64> = candidates.iter().map(|&i| pool.workers[i].uid).collect();
        let depth = match prompt {
            Some(p) => self.index.lookup(&p.chunks, &uids),
            None => vec![0; uids.len()],
        };
        let stats: Vec<StatsView> = candidates
            .iter()
            .map(|&i| pool.workers[i].stats.view())
            .collect();
        let slowness = relative_slowness(&stats);
        let total = prompt.map_or(0, |p| p.tokens);
        candidates
            .iter()
            .zip(depth)
            .zip(slowness.iter().zip(&stats))
            .map(|((&i, d), (slow, stats))| {
                let w = &pool.workers[i];
                let load = w.load.view();
                let matched = prompt.map_or(0, |p| p.tokens_in(d));
                let uncached = total - matched;
                let pending = pending_tokens(w, &load, self.cfg.request_tokens);
                let c = &self.cfg;
                let decode = prompt.map_or(0.0, |p| f64::from(p.decode_tokens));
                let cost = slow.prefill * c.prefill_weight * f64::from(uncached)
                    + slow.decode * (decode + c.pending_weight * pending)
                    + c.kv_cache_weight * load.kv_cache
                    + c.error_rate_weight * stats.error_rate;
                Candidate {
                    matched,
                    uncached,
                    pending,
                    cost,
                }
            })
            .collect()
    }
}

/// Work in flight on `w`, in tokens: this gateway's dispatches, plus `request_tokens` for each
/// request the worker reports running or waiting beyond those.
fn pending_tokens(w: &Worker, load: &LoadView, request_tokens: f64) -> f64 {
    let foreign = (load.running + load.waiting - f64::from(load.inflight)).max(0.0);
    w.load.work() as f64 + foreign * request_tokens
}

/// Differences in measured speed below this share are noise, not a slower GPU: equal
/// workers keep sharing an idle fleet instead of all traffic going to the one that measured
/// a little faster.
const SPEED_DEAD_BAND: f64 = 0.2;

/// How much slower than the candidates' mean one candidate is (1.0 = average).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slowness {
    /// From the EWMA time per output token.
    pub decode: f64,
    /// From the EWMA prefill time per 1k uncached tokens (`decode` while no candidate has a
    /// prefill sample: a slower GPU is slower at both).
    pub prefill: f64,
}

/// Each candidate's [`Slowness`], from its statistics.
pub fn relative_slowness(stats: &[StatsView]) -> Vec<Slowness> {
    let decode = relative(stats.iter().map(|s| s.tpot_ms).collect());
    let prefill = if stats.iter().any(|s| s.prefill_ms_per_1k.is_some()) {
        relative(stats.iter().map(|s| s.prefill_ms_per_1k).collect())
    } else {
        decode.clone()
    };
    decode
        .into_iter()
        .zip(prefill)
        .map(|(decode, prefill)| Slowness { decode, prefill })
        .collect()
}

/// Each measurement over the mean of the known ones (1.0 when unknown, or within
/// [`SPEED_DEAD_BAND`] of the mean), clamped to 0.25..=8.
fn relative(values: Vec<Option<f64>>) -> Vec<f64> {
    let values: Vec<Option<f64>> = values.into_iter().map(|v| v.filter(|t| *t > 0.0)).collect();
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    if known.is_empty() {
        return vec![1.0; values.len()];
    }
    let mean = known.iter().sum::<f64>() / known.len() as f64;
    values
        .iter()
        .map(|t| {
            let r = t.map_or(1.0, |t| t / mean);
            if (r - 1.0).abs() < SPEED_DEAD_BAND {
                1.0
            } else {
                r.clamp(0.25, 8.0)
            }
        })
        .collect()
}

/// The position in `c` to take: the longest match within the load bound, else the lowest
/// cost (ties rotate with `turn`).
pub fn decide(cfg: &CacheAwareConfig, c: &[Candidate], prompt_tokens: u32, turn: usize) -> usize {
    let positions: Vec<usize> = (0..c.len()).collect();
    let min_pending = c.iter().map(|x| x.pending).fold(f64::INFINITY, f64::min);
    let best = positions
        .iter()
        .copied()
        .max_by(|&a, &b| {
            c[a].matched
                .cmp(&c[b].matched)
                .then(c[b].cost.total_cmp(&c[a].cost))
        })
        .unwrap_or(0);
    let enough = c[best].matched > 0
        && f64::from(c[best].matched) >= cfg.min_match_ratio * f64::from(prompt_tokens);
    let within_bound =
        c[best].pending <= cfg.balance_factor * min_pending + cfg.balance_slack_tokens;
    if enough && within_bound {
        best
    } else {
        argmin_rotating(&positions, turn, |k| c[k].cost)
    }
}

impl Policy for CacheAware {
    fn strategy(&self) -> Strategy {
        Strategy::CacheAware
    }

    fn select(&self, pool: &Pool, candidates: &[usize], hints: &RouteHints) -> usize {
        self.members.sync(pool, &self.index);
        let prompt = hints.prompt.as_deref();
        let views = self.candidates(pool, candidates, prompt);
        let turn = self.turn.fetch_add(1, Relaxed);
        let k = decide(&self.cfg, &views, prompt.map_or(0, |p| p.tokens), turn);
        let chosen = &pool.workers[candidates[k]];
        if let Some(p) = prompt {
            hints.uncached.set(views[k].uncached);
            self.index.insert(&p.chunks, chosen.uid);
            self.index.record_route(views[k].matched, p.tokens);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let each: Vec<String> = candidates
                .iter()
                .zip(&views)
                .map(|(&i, v)| {
                    format!(
                        "{}(matched={} uncached={} pending={:.0} cost={:.0})",
                        pool.workers[i].id, v.matched, v.uncached, v.pending, v.cost
                    )
                })
                .collect();
            tracing::debug!(
                prompt_tokens = prompt.map_or(0, |p| p.tokens),
                candidates = %each.join(" "),
                chosen = %chosen.id,
                "cache_aware decision"
            );
        }
        candidates[k]
    }

    fn prefix_index(&self) -> Option<&PrefixIndex> {
        Some(&self.index)
    }
}

/// The pool's members as last seen, so a worker that left is dropped from the index. The
/// pool snapshot's address tells cheaply whether anything may have changed.
#[derive(Debug, Default)]
pub struct Members {
    seen: AtomicUsize,
    uids: Mutex<Vec<u64>>,
}

impl Members {
    /// Forget in `index` the workers that are no longer in `pool`.
    pub fn sync(&self, pool: &Pool, index: &PrefixIndex) {
        let at = pool as *const Pool as usize;
        // Read first: the common case (same snapshot) writes nothing shared.
        if self.seen.load(Relaxed) == at || self.seen.swap(at, Relaxed) == at {
            return;
        }
        let now: Vec<u64> = pool.workers.iter().map(|w| w.uid).collect();
        let gone: Vec<u64> = {
            let mut uids = self.uids.lock();
            let gone = uids.iter().copied().filter(|u| !now.contains(u)).collect();
            *uids = now;
            gone
        };
        for uid in gone {
            index.forget(uid);
        }
    }
}

#[cfg(test)]
#[path = "cache_aware_tests.rs"]
mod tests;
