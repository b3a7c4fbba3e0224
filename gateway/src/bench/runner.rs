//! Driving the load: a closed loop of `concurrency` workers, or an open loop of Poisson arrivals
//! capped at `concurrency` in flight; and collecting every outcome into [`Stats`] while the
//! progress bar is redrawn.
//!
//! Outcomes travel over a channel to the one collecting task, so counting needs no lock; the
//! channel closes when the last request task is done, which is how the run knows it has
//! drained. No new request starts after the deadline; requests in flight at the deadline run
//! to completion (bounded by the per-request timeout) and are counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep_until, timeout_at, Instant, MissedTickBehavior};

use super::driver::{execute, Outcome};
use super::progress::{Progress, Snapshot};
use super::schedule::Arrivals;
use super::stats::Stats;
use super::target::Target;
use super::workload::Workload;

/// What every request task shares.
pub struct Plan {
    pub target: Target,
    pub workload: Workload,
    pub timeout: Duration,
    /// Requests sent so far; also the index of the next one.
    sent: AtomicU64,
}

impl Plan {
    pub fn new(target: Target, workload: Workload, timeout: Duration) -> Self {
        Self {
            target,
            workload,
            timeout,
            sent: AtomicU64::new(0),
        }
    }

    /// Takes the next request index, unless `limit` requests were sent already.
    fn claim(&self, limit: Option<u64>) -> Option<u64> {
        self.sent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                limit.is_none_or(|l| n < l).then_some(n + 1)
            })
            .ok()
    }

    async fn execute(&self, index: u64) -> Outcome {
        execute(&self.target, &self.workload, index, self.timeout).await
    }
}

/// Arrival accounting of the open loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArrivalCounts {
    /// Arrivals that found every slot busy and waited for one.
    pub delayed: u64,
    /// Arrivals not sent because the deadline passed while they waited.
    pub unsent: u64,
}

/// How a run sends requests.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub concurrency: u32,
    /// Poisson arrivals per second and their seed; `None` for a closed loop.
    pub rate: Option<(f64, u64)>,
    pub duration: Option<Duration>,
    pub limit: Option<u64>,
}

/// Runs the load to the end and returns what was counted, the arrival accounting and the wall
/// time (start → last request finished).
pub async fn drive(
    plan: Arc<Plan>,
    load: Load,
    progress: &Progress,
) -> (Stats, ArrivalCounts, Duration) {
    let start = Instant::now();
    let deadline = load.duration.map(|d| start + d);
    let (tx, rx) = mpsc::unbounded_channel();
    let open_loop = match load.rate {
        None => {
            closed_loop(&plan, load.concurrency, deadline, load.limit, &tx);
            None
        }
        Some((rate, seed)) => {
            let arrivals = Arrivals::new(rate, seed, load.duration, load.limit);
            let slots = Arc::new(Semaphore::new(load.concurrency as usize));
            Some(tokio::spawn(open_loop(
                Arc::clone(&plan),
                slots,
                arrivals,
                start,
                deadline,
                tx.clone(),
            )))
        }
    };
    drop(tx);
    let stats = collect(rx, &plan, progress, start).await;
    let wall = start.elapsed();
    let counts = match open_loop {
        Some(task) => task.await.unwrap_or_default(),
        None => ArrivalCounts::default(),
    };
    (stats, counts, wall)
}

fn closed_loop(
    plan: &Arc<Plan>,
    concurrency: u32,
    deadline: Option<Instant>,
    limit: Option<u64>,
    tx: &mpsc::UnboundedSender<Outcome>,
) {
    for _ in 0..concurrency {
        let plan = Arc::clone(plan);
        let tx = tx.clone();
        tokio::spawn(async move {
            while deadline.is_none_or(|d| Instant::now() < d) {
                let Some(index) = plan.claim(limit) else {
                    break;
                };
                let outcome = plan.execute(index).await;
                if tx.send(outcome).is_err() {
                    break;
                }
            }
        });
    }
}

async fn open_loop(
    plan: Arc<Plan>,
    slots: Arc<Semaphore>,
    mut arrivals: Arrivals,
    start: Instant,
    deadline: Option<Instant>,
    tx: mpsc::UnboundedSender<Outcome>,
) -> ArrivalCounts {
    let mut counts = ArrivalCounts::default();
    while let Some(offset) = arrivals.next() {
        sleep_until(start + offset).await;
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                counts.delayed += 1;
                let wait = Arc::clone(&slots).acquire_owned();
                let acquired = match deadline {
                    Some(d) => timeout_at(d, wait).await.ok(),
                    None => Some(wait.await),
                };
                match acquired {
                    Some(Ok(permit)) => permit,
                    _ => {
                        // This arrival and every later one before the deadline are not sent.
                        counts.unsent = 1 + arrivals.count() as u64;
                        break;
                    }
                }
            }
        };
        let Some(index) = plan.claim(None) else { break };
        let plan = Arc::clone(&plan);
        let tx = tx.clone();
        tokio::spawn(async move {
            let outcome = plan.execute(index).await;
            drop(permit);
            let _ = tx.send(outcome);
        });
    }
    counts
}

/// Counts outcomes until every sender is gone, redrawing the progress bar ten times a second.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    plan: &Plan,
    progress: &Progress,
    start: Instant,
) -> Stats {
    let mut stats = Stats::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            outcome = rx.recv() => match outcome {
                Some(outcome) => stats.record(&outcome),
                None => break,
            },
            _ = tick.tick(), if progress.enabled() => progress.draw(&Snapshot {
                elapsed: start.elapsed(),
                sent: plan.sent.load(Ordering::Relaxed),
                ok: stats.ok,
                errors: stats.error_count(),
            }),
        }
    }
    progress.clear();
    stats
}
