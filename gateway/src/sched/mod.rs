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
//!
//! The scheduler reads only the live pool and the live config ([`Fleet`]), never the whole
//! gateway state; its clock is tokio's, so the tests below run on paused time.

mod capacity;
mod order;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::SchedulerConfig;
use capacity::Capacity;
pub use capacity::Grant;
use order::Key;

use crate::config::Config;
use crate::error::GatewayError;
use crate::worker::pool::PoolHandle;

/// How often a waiting request looks again for capacity nobody announced.
pub const RECHECK: Duration = Duration::from_millis(250);

/// What the scheduler reads: the live pool and the live configuration (a reload that switches
/// the cap off lets every waiting request go).
#[derive(Clone, Copy)]
pub struct Fleet<'a> {
    pub pool: &'a PoolHandle,
    pub config: &'a ArcSwap<Config>,
}

/// What a request got from [`Scheduler::admit`].
#[derive(Debug)]
pub struct Admitted {
    /// The worker slot held for the request (`None`: no cap, nothing is held); drop it once
    /// the request holds its worker's in-flight token.
    pub grant: Option<Grant>,
    /// How long the request waited in the queue, when it did.
    pub waited: Option<Duration>,
}

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

fn refusal_error(why: Refusal, cfg: &SchedulerConfig, slo_ms: Option<u64>) -> GatewayError {
    GatewayError::Overloaded(match why {
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

    /// Wait for a worker slot. `grant: None`: no cap, go ahead. `Err`: refused (queue full,
    /// waited too long, deadline out of reach).
    pub async fn admit(&self, fleet: Fleet<'_>, ask: Ask<'_>) -> Result<Admitted, GatewayError> {
        let config = fleet.config.load();
        if config.scheduler.max_inflight_per_worker == 0 {
            // The common case: no cap, no queue, nothing cloned.
            return Ok(Admitted {
                grant: None,
                waited: None,
            });
        }
        let cfg = config.scheduler.clone();
        let key = Key {
            seq: self.seq.fetch_add(1, Relaxed),
            priority: ask.priority,
            deadline: ask.slo_ms.map(|ms| ask.arrived + Duration::from_millis(ms)),
            since: ask.arrived,
        };
        let rx = {
            let pool = fleet.pool.load();
            let mut capacity = Capacity::new(&pool, &config);
            let mut inner = self.inner.lock();
            if inner.waiters.is_empty() && *capacity.free(ask.model) > self.outstanding() {
                return Ok(Admitted {
                    grant: Some(Grant::new(&self.outstanding)),
                    waited: None,
                });
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
        drop(config);
        let queued_at = Instant::now();
        let grant = self.wait(fleet, rx, key, ask, &cfg).await?;
        Ok(Admitted {
            grant,
            waited: Some(queued_at.elapsed()),
        })
    }

    async fn wait(
        &self,
        fleet: Fleet<'_>,
        mut rx: oneshot::Receiver<Result<Grant, GatewayError>>,
        key: Key,
        ask: Ask<'_>,
        cfg: &SchedulerConfig,
    ) -> Result<Option<Grant>, GatewayError> {
        let give_up_waiting = key.since + Duration::from_millis(cfg.max_wait_ms);
        loop {
            let now = Instant::now();
            let expected = {
                let pool = fleet.pool.load();
                Capacity::new(&pool, &fleet.config.load()).expected_ttft(ask.model)
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
                _ = tokio::time::sleep_until(until) => {}
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
                    let pool = fleet.pool.load();
                    let config = fleet.config.load();
                    let mut capacity = Capacity::new(&pool, &config);
                    self.dispatch(&mut inner, &mut capacity, &config.scheduler);
                }
            }
        }
    }

    fn outstanding(&self) -> usize {
        self.outstanding.load(Relaxed)
    }

    /// A worker slot was released: grant it to the best waiting request.
    pub fn kick(&self, fleet: Fleet<'_>) {
        if self.depth() == 0 {
            return;
        }
        let config = fleet.config.load();
        let pool = fleet.pool.load();
        let mut capacity = Capacity::new(&pool, &config);
        let mut inner = self.inner.lock();
        self.dispatch(&mut inner, &mut capacity, &config.scheduler);
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
