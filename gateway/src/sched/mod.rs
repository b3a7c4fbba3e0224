//! Scheduling at the gateway: when every worker that could serve a request is at its
//! concurrency cap (`scheduler.max_inflight_per_worker`), the request waits in a queue here
//! instead of piling onto the workers, and gets a worker slot in the order of the configured
//! [`QueuePolicy`]: `fifo`, `priority` (higher first, with aging) or `slo` (earliest deadline
//! first; hopeless requests are refused early).
//!
//! How a slot is handed over: [`Scheduler::admit`] either lets a request through at once
//! (free capacity and nobody waiting) or queues it; whenever an attempt releases its worker
//! ([`Scheduler::kick`]) the best waiting request that a free slot can serve is *granted*.
//! A granted request holds a [`Grant`], counted against the free capacity until it is dropped
//! — right after the request took its worker's in-flight token, or when the request went
//! away — so two requests are never granted one slot and a vanished one takes none.
//! Waiters also re-check every [`RECHECK`] (a worker that became healthy adds capacity) and
//! give up at their deadline. With no cap (the default) nothing ever waits and `admit` is a
//! config read.

pub mod config;
pub mod order;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use config::{QueuePolicy, SchedulerConfig};
use order::Key;

use crate::error::GatewayError;
use crate::state::AppState;
use crate::worker::pool::Pool;

/// How often a waiting request looks again for capacity nobody announced.
pub const RECHECK: Duration = Duration::from_millis(250);

/// What one request asks of the queue.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub model: Option<&'a str>,
    pub priority: i64,
    /// Time-to-first-token objective, from the request's arrival.
    pub slo_ms: Option<u64>,
    pub arrived: Instant,
}

/// Why a request left the queue without a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Full,
    Timeout,
    Deadline,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::Full, Refusal::Timeout, Refusal::Deadline];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "queue_full",
            Refusal::Timeout => "timeout",
            Refusal::Deadline => "deadline",
        }
    }
}

struct Waiter {
    key: Key,
    model: Option<String>,
    tx: oneshot::Sender<Result<Grant, GatewayError>>,
}

#[derive(Default)]
struct Inner {
    waiters: Vec<Waiter>,
}

/// A worker slot handed to one request; drop it once the request holds its worker's
/// in-flight token (or gave up).
#[derive(Debug)]
pub struct Grant(Arc<AtomicUsize>);

impl Grant {
    fn new(outstanding: &Arc<AtomicUsize>) -> Self {
        outstanding.fetch_add(1, Relaxed);
        Grant(outstanding.clone())
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// `GET /api/status` → `queue`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub policy: String,
    /// 0 = no cap: requests never wait.
    pub max_inflight_per_worker: u32,
    pub depth: usize,
    pub max_queue: usize,
    /// How long the oldest waiting request has waited.
    pub oldest_wait_ms: u64,
    /// Requests that waited and got a worker, since start.
    pub queued_total: u64,
    /// Refusals since start, by reason (`queue_full`, `timeout`, `deadline`).
    pub refused: HashMap<String, u64>,
}

#[derive(Default)]
pub struct Scheduler {
    inner: Mutex<Inner>,
    /// Grants not yet dropped (requests about to take a worker's token).
    outstanding: Arc<AtomicUsize>,
    depth: AtomicUsize,
    seq: AtomicU64,
    queued: AtomicU64,
    refused: [AtomicU64; 3],
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

/// Free slots and expected TTFT per model, from one pool snapshot (one dispatch pass).
struct Capacity<'a> {
    pool: &'a Pool,
    breaker: crate::worker::breaker::BreakerSettings,
    cap: usize,
    free: HashMap<Option<String>, usize>,
}

impl<'a> Capacity<'a> {
    fn new(state: &AppState, pool: &'a Pool, cap: usize) -> Self {
        Self {
            pool,
            breaker: state.config.load().circuit_breaker.settings(),
            cap,
            free: HashMap::new(),
        }
    }

    /// Free slots of the workers that could serve `model` now.
    fn free(&mut self, model: Option<&str>) -> &mut usize {
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
    fn expected_ttft(&self, model: Option<&str>) -> Duration {
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

fn refusal_error(why: Refusal, cfg: &SchedulerConfig, slo_ms: Option<u64>) -> GatewayError {
    GatewayError::NoWorker(match why {
        Refusal::Full => format!(
            "every worker for this request is busy and the gateway's queue is full ({} waiting); retry shortly",
            cfg.max_queue
        ),
        Refusal::Timeout => format!(
            "no worker slot became free within {} ms in the gateway's queue; retry shortly",
            cfg.max_wait_ms
        ),
        Refusal::Deadline => format!(
            "the time-to-first-token objective of {} ms can no longer be met; refused early, retry later",
            slo_ms.unwrap_or(0)
        ),
    })
}

impl Scheduler {
    pub fn depth(&self) -> usize {
        self.depth.load(Relaxed)
    }

    /// Refusals since start, in [`Refusal::ALL`] order.
    pub fn refused(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.refused[i].load(Relaxed))
    }

    /// Requests that waited and then got a worker, since start.
    pub fn queued_total(&self) -> u64 {
        self.queued.load(Relaxed)
    }

    fn refuse(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// Wait for a worker slot. `Some(grant)`: keep it until the worker is picked; `None`: no
    /// cap, go ahead. `Err`: refused (queue full, waited too long, deadline out of reach).
    pub async fn admit(
        &self,
        state: &AppState,
        ask: Ask<'_>,
    ) -> Result<Option<Grant>, GatewayError> {
        let config = state.config.load();
        if config.scheduler.max_inflight_per_worker == 0 {
            return Ok(None); // the common case: no cap, no queue, nothing cloned
        }
        let cfg = config.scheduler.clone();
        drop(config);
        let cap = cfg.max_inflight_per_worker as usize;
        let key = Key {
            seq: self.seq.fetch_add(1, Relaxed),
            priority: ask.priority,
            deadline: ask.slo_ms.map(|ms| ask.arrived + Duration::from_millis(ms)),
            since: ask.arrived,
        };
        let rx = {
            let pool = state.pool.load();
            let mut capacity = Capacity::new(state, &pool, cap);
            let mut inner = self.inner.lock();
            if inner.waiters.is_empty() && *capacity.free(ask.model) > self.outstanding() {
                return Ok(Some(Grant::new(&self.outstanding)));
            }
            if inner.waiters.len() >= cfg.max_queue {
                self.refuse(Refusal::Full);
                return Err(refusal_error(Refusal::Full, &cfg, ask.slo_ms));
            }
            let (tx, rx) = oneshot::channel();
            inner.waiters.push(Waiter {
                key,
                model: ask.model.map(str::to_string),
                tx,
            });
            self.depth.store(inner.waiters.len(), Relaxed);
            self.dispatch(&mut inner, &mut capacity, &cfg);
            rx
        };
        let queued_at = Instant::now();
        let granted = self.wait(state, rx, key, ask, &cfg).await;
        if granted.is_ok() {
            state.metrics.queue.waited(queued_at.elapsed());
        }
        granted
    }

    async fn wait(
        &self,
        state: &AppState,
        mut rx: oneshot::Receiver<Result<Grant, GatewayError>>,
        key: Key,
        ask: Ask<'_>,
        cfg: &SchedulerConfig,
    ) -> Result<Option<Grant>, GatewayError> {
        let give_up_waiting = key.since + Duration::from_millis(cfg.max_wait_ms);
        loop {
            let now = Instant::now();
            let expected = {
                let pool = state.pool.load();
                Capacity::new(state, &pool, 0).expected_ttft(ask.model)
            };
            // Hopeless once even an immediate dispatch would answer after the deadline.
            let hopeless_at = key.deadline.map(|d| d.checked_sub(expected).unwrap_or(now));
            let until = [Some(give_up_waiting), hopeless_at, Some(now + RECHECK)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now);
            tokio::select! {
                granted = &mut rx => return match granted {
                    Ok(Ok(grant)) => Ok(Some(grant)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(GatewayError::Internal("the scheduler dropped a request".into())),
                },
                _ = tokio::time::sleep_until(until.into()) => {}
            }
            let now = Instant::now();
            let why = if hopeless_at.is_some_and(|h| now >= h) {
                Some(Refusal::Deadline)
            } else if now >= give_up_waiting {
                Some(Refusal::Timeout)
            } else {
                None
            };
            let mut inner = self.inner.lock();
            match why {
                Some(why) => {
                    let Some(at) = inner.waiters.iter().position(|w| w.key.seq == key.seq) else {
                        continue; // granted meanwhile: the answer is in `rx`
                    };
                    inner.waiters.remove(at);
                    self.depth.store(inner.waiters.len(), Relaxed);
                    drop(inner);
                    self.refuse(why);
                    return Err(refusal_error(why, cfg, ask.slo_ms));
                }
                None => {
                    let pool = state.pool.load();
                    let mut capacity =
                        Capacity::new(state, &pool, cfg.max_inflight_per_worker as usize);
                    self.dispatch(&mut inner, &mut capacity, cfg);
                }
            }
        }
    }

    fn outstanding(&self) -> usize {
        self.outstanding.load(Relaxed)
    }

    /// A worker slot was released: grant it to the best waiting request.
    pub fn kick(&self, state: &AppState) {
        if self.depth() == 0 {
            return;
        }
        let cfg = state.config.load().scheduler.clone();
        let pool = state.pool.load();
        let mut capacity = Capacity::new(state, &pool, cfg.max_inflight_per_worker as usize);
        let mut inner = self.inner.lock();
        self.dispatch(&mut inner, &mut capacity, &cfg);
    }

    /// Grant free slots to waiting requests in queue order. A request whose model has no
    /// free slot does not hold up the requests behind it that can be served.
    fn dispatch(&self, inner: &mut Inner, capacity: &mut Capacity<'_>, cfg: &SchedulerConfig) {
        if inner.waiters.is_empty() {
            return;
        }
        let now = Instant::now();
        // Requests that went away while waiting (the client left) free their place.
        inner.waiters.retain(|w| !w.tx.is_closed());
        if cfg.max_inflight_per_worker == 0 {
            // The cap was switched off by a reload: let everybody go.
            for w in inner.waiters.drain(..) {
                let _ = w.tx.send(Ok(Grant::new(&self.outstanding)));
            }
            self.depth.store(0, Relaxed);
            return;
        }
        let aging = cfg.priority_aging_ms;
        inner
            .waiters
            .sort_by(|a, b| order::compare(cfg.policy, &a.key, &b.key, now, aging));
        let mut i = 0;
        while i < inner.waiters.len() {
            let model = inner.waiters[i].model.clone();
            // Outstanding grants of any model count against every model's slots: a worker
            // may serve several models, and erring low only delays a grant to the next kick.
            if *capacity.free(model.as_deref()) <= self.outstanding() {
                i += 1;
                continue;
            }
            let w = inner.waiters.remove(i);
            let late = w
                .key
                .deadline
                .is_some_and(|d| now + capacity.expected_ttft(model.as_deref()) > d);
            if late {
                self.refuse(Refusal::Deadline);
                let _ = w.tx.send(Err(refusal_error(
                    Refusal::Deadline,
                    cfg,
                    w.key
                        .deadline
                        .map(|d| d.duration_since(w.key.since).as_millis() as u64),
                )));
                continue;
            }
            // The slot is spoken for until the grant is dropped. A request that gave up
            // meanwhile (its receiver is gone) drops it at once and takes nothing.
            if w.tx.send(Ok(Grant::new(&self.outstanding))).is_ok() {
                self.queued.fetch_add(1, Relaxed);
            }
        }
        self.depth.store(inner.waiters.len(), Relaxed);
    }

    /// The queue as `GET /api/status` shows it.
    pub fn status(&self, cfg: &SchedulerConfig) -> QueueStatus {
        let inner = self.inner.lock();
        let oldest = inner
            .waiters
            .iter()
            .map(|w| w.key.since.elapsed().as_millis() as u64)
            .max()
            .unwrap_or(0);
        QueueStatus {
            policy: cfg.policy.as_str().into(),
            max_inflight_per_worker: cfg.max_inflight_per_worker,
            depth: inner.waiters.len(),
            max_queue: cfg.max_queue,
            oldest_wait_ms: oldest,
            queued_total: self.queued_total(),
            refused: Refusal::ALL
                .iter()
                .zip(self.refused())
                .map(|(r, n)| (r.as_str().to_string(), n))
                .collect(),
        }
    }
}
