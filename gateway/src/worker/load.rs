//! Load signals of one worker: the gateway's own in-flight count and the worker's scraped
//! queue gauges, corrected by what this gateway dispatched and completed since the scrape.
//!
//! Scraped gauges lag by up to a scrape interval. Between scrapes the estimate is
//! `scraped + dispatched_since − completed_since`, so two requests arriving in the same
//! millisecond see each other and do not herd onto one worker.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::atomic_f64::AtomicF64;
use super::Worker;

#[derive(Debug, Default)]
pub struct Load {
    inflight: AtomicU32,
    /// Prompt + decode tokens of this gateway's requests in flight (cache-aware routing).
    work: AtomicU64,
    dispatched: AtomicU64,
    completed: AtomicU64,
    scraped: AtomicBool,
    running: AtomicU32,
    waiting: AtomicU32,
    kv_cache: AtomicF64,
    dispatched_at_scrape: AtomicU64,
    completed_at_scrape: AtomicU64,
    /// The worker's prefix-cache hit rate (hits / queries since it started), as scraped,
    /// valid while `prefix_known`.
    prefix_hit_rate: AtomicF64,
    prefix_hits: AtomicF64,
    prefix_queries: AtomicF64,
    prefix_known: AtomicBool,
}

/// A point-in-time view of a worker's load, as routing policies use it.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadView {
    /// Requests this gateway has in flight on the worker.
    pub inflight: u32,
    /// Estimated running requests (scraped, corrected), or `inflight` without metrics.
    pub running: f64,
    /// Estimated waiting requests (scraped, corrected), 0 without metrics.
    pub waiting: f64,
    /// KV-cache usage 0..1 as scraped (0 without metrics).
    pub kv_cache: f64,
    /// Whether the worker exposes load metrics.
    pub scraped: bool,
    /// Prefix-cache hit rate 0..1 (tokens found cached / looked up, since the worker
    /// started), when the worker exports `vllm:prefix_cache_*_total`.
    #[serde(default)]
    pub prefix_cache_hit_rate: Option<f64>,
    /// The scraped counters behind it (tokens, since the worker started).
    #[serde(default)]
    pub prefix_cache_hits: Option<f64>,
    #[serde(default)]
    pub prefix_cache_queries: Option<f64>,
}

impl LoadView {
    /// `running + waiting`: the queue the worker reports, corrected (JSQ's measure).
    pub fn queue(&self) -> f64 {
        self.running + self.waiting
    }
}

/// Counters captured before a scrape request is sent, so requests dispatched while the
/// scrape is in flight are still counted as "since the scrape".
#[derive(Clone, Copy, Debug)]
pub struct ScrapeMark {
    dispatched: u64,
    completed: u64,
}

impl Load {
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Relaxed)
    }
    /// Estimated tokens (prompt + decode) of this gateway's requests in flight here.
    pub fn work(&self) -> u64 {
        self.work.load(Relaxed)
    }

    pub fn mark(&self) -> ScrapeMark {
        ScrapeMark {
            dispatched: self.dispatched.load(Relaxed),
            completed: self.completed.load(Relaxed),
        }
    }

    /// Record a scrape taken after `mark`.
    pub fn record_scrape(&self, mark: ScrapeMark, running: f64, waiting: f64, kv_cache: f64) {
        self.running
            .store(running.max(0.0).min(u32::MAX as f64) as u32, Relaxed);
        self.waiting
            .store(waiting.max(0.0).min(u32::MAX as f64) as u32, Relaxed);
        self.kv_cache.set(if kv_cache.is_finite() {
            kv_cache.clamp(0.0, 1.0)
        } else {
            0.0
        });
        self.dispatched_at_scrape.store(mark.dispatched, Relaxed);
        self.completed_at_scrape.store(mark.completed, Relaxed);
        self.scraped.store(true, Relaxed);
    }

    /// The worker stopped exposing metrics: fall back to local counts.
    pub fn clear_scrape(&self) {
        self.scraped.store(false, Relaxed);
        self.prefix_known.store(false, Relaxed);
    }

    /// Record the scraped prefix-cache counters (`None`: the worker has none).
    pub fn record_prefix_cache(&self, hits: Option<f64>, queries: Option<f64>) {
        let rate = match (hits, queries) {
            (Some(h), Some(q)) if q > 0.0 && h.is_finite() => Some((h / q).clamp(0.0, 1.0)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        if let (Some(r), Some(h), Some(q)) = (rate, hits, queries) {
            self.prefix_hit_rate.set(r);
            self.prefix_hits.set(h);
            self.prefix_queries.set(q);
        }
        self.prefix_known.store(rate.is_some(), Relaxed);
    }

    /// `(rate, hits, queries)` when the worker exports the counters.
    fn prefix_cache(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
        if self.prefix_known.load(Relaxed) {
            (
                Some(self.prefix_hit_rate.get()),
                Some(self.prefix_hits.get()),
                Some(self.prefix_queries.get()),
            )
        } else {
            (None, None, None)
        }
    }

    pub fn view(&self) -> LoadView {
        let inflight = self.inflight.load(Relaxed);
        let (prefix_cache_hit_rate, prefix_cache_hits, prefix_cache_queries) = self.prefix_cache();
        if !self.scraped.load(Relaxed) {
            return LoadView {
                inflight,
                running: inflight as f64,
                waiting: 0.0,
                kv_cache: 0.0,
                scraped: false,
                prefix_cache_hit_rate,
                prefix_cache_hits,
                prefix_cache_queries,
            };
        }
        let dispatched = self
            .dispatched
            .load(Relaxed)
            .saturating_sub(self.dispatched_at_scrape.load(Relaxed));
        let completed = self
            .completed
            .load(Relaxed)
            .saturating_sub(self.completed_at_scrape.load(Relaxed));
        let delta = dispatched as f64 - completed as f64;
        let mut running = self.running.load(Relaxed) as f64;
        let mut waiting = self.waiting.load(Relaxed) as f64;
        if delta >= 0.0 {
            // New arrivals queue first; the next scrape tells where they really are.
            waiting += delta;
        } else {
            // Completions of requests the scrape saw running free their slots.
            running = (running + delta).max(0.0);
        }
        LoadView {
            inflight,
            running,
            waiting,
            kv_cache: self.kv_cache.get(),
            scraped: true,
            prefix_cache_hit_rate,
            prefix_cache_hits,
            prefix_cache_queries,
        }
    }
}

/// RAII in-flight token: taken when a request is dispatched to a worker, released when the
/// response has really ended (dropped with the request context: also on client disconnect,
/// upstream error or panic).
#[derive(Debug)]
pub struct LoadGuard {
    worker: Arc<Worker>,
    work: u64,
}

impl LoadGuard {
    #[cfg(test)]
    pub fn new(worker: Arc<Worker>) -> Self {
        Self::with_work(worker, 0)
    }

    /// The token, counting `work` estimated tokens in flight on the worker until dropped.
    pub fn with_work(worker: Arc<Worker>, work: u64) -> Self {
        worker.load.inflight.fetch_add(1, Relaxed);
        worker.load.dispatched.fetch_add(1, Relaxed);
        worker.load.work.fetch_add(work, Relaxed);
        Self { worker, work }
    }

    pub fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.worker.load.inflight.fetch_sub(1, Relaxed);
        self.worker.load.work.fetch_sub(self.work, Relaxed);
        self.worker.load.completed.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_cache_hit_rate_is_known_only_from_its_counters() {
        let l = Load::default();
        assert_eq!(l.view().prefix_cache_hit_rate, None);
        l.record_prefix_cache(Some(30.0), Some(120.0));
        assert_eq!(l.view().prefix_cache_hit_rate, Some(0.25));
        l.record_prefix_cache(Some(0.0), Some(0.0));
        assert_eq!(l.view().prefix_cache_hit_rate, Some(0.0));
        l.record_prefix_cache(None, Some(5.0));
        assert_eq!(l.view().prefix_cache_hit_rate, None);
        l.record_prefix_cache(Some(9.0), Some(3.0));
        assert_eq!(l.view().prefix_cache_hit_rate, Some(1.0), "clamped");
        l.clear_scrape();
        assert_eq!(l.view().prefix_cache_hit_rate, None);
    }
    use crate::worker::spec::WorkerSpec;

    fn worker() -> Arc<Worker> {
        Arc::new(Worker::new(
            WorkerSpec::new("http://127.0.0.1:9", 1, vec![]).unwrap(),
        ))
    }

    #[test]
    fn guard_counts_and_releases() {
        let w = worker();
        let g1 = LoadGuard::new(w.clone());
        let g2 = LoadGuard::new(w.clone());
        assert_eq!(w.load.inflight(), 2);
        assert_eq!(w.load.view().running, 2.0);
        drop(g1);
        drop(g2);
        assert_eq!(w.load.inflight(), 0);
    }

    #[test]
    fn scrape_is_corrected_by_local_dispatches() {
        let w = worker();
        let mark = w.load.mark();
        w.load.record_scrape(mark, 3.0, 1.0, 0.4);
        let v = w.load.view();
        assert_eq!((v.running, v.waiting, v.kv_cache), (3.0, 1.0, 0.4));
        let g = LoadGuard::new(w.clone());
        let _g2 = LoadGuard::new(w.clone());
        assert_eq!(
            w.load.view().waiting,
            3.0,
            "two dispatches since the scrape"
        );
        drop(g);
        assert_eq!(w.load.view().waiting, 2.0);
        // A new scrape resets the correction.
        let mark = w.load.mark();
        w.load.record_scrape(mark, 5.0, 0.0, 0.5);
        assert_eq!(w.load.view().queue(), 5.0);
        // Completions of requests the scrape counted free running slots.
        let mark = w.load.mark();
        w.load.record_scrape(mark, 2.0, 0.0, 0.1);
        drop(_g2);
        assert_eq!(w.load.view().running, 1.0);
    }
}
