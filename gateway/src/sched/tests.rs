//! The queue on paused tokio time: immediate admission, grant accounting, the three orders
//! (with aging), refusals (full, timeout, deadline) and a cap switched off by a reload.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::*;
use crate::config::{Config, QueuePolicy};
use crate::worker::load::LoadGuard;
use crate::worker::pool::PoolHandle;
use crate::worker::spec::WorkerSpec;
use crate::worker::state::HealthThresholds;

/// The parts the scheduler reads, owned by the test.
struct Parts {
    sched: Arc<Scheduler>,
    pool: Arc<PoolHandle>,
    config: Arc<ArcSwap<Config>>,
}

impl Parts {
    /// `workers` READY workers, `cap` requests each, queue order `policy`.
    fn new(workers: usize, cap: u32, policy: QueuePolicy, tweak: impl FnOnce(&mut Config)) -> Self {
        let specs = (0..workers)
            .map(|i| {
                WorkerSpec::new(&format!("http://127.0.0.1:{}", 20_000 + i), 1, vec![]).unwrap()
            })
            .collect();
        let pool = PoolHandle::new(specs);
        for w in &pool.load().workers {
            let t = HealthThresholds {
                failures: 1,
                recoveries: 1,
            };
            w.health.record(true, t);
        }
        let mut config = Config::default();
        config.scheduler.max_inflight_per_worker = cap;
        config.scheduler.policy = policy;
        tweak(&mut config);
        Self {
            sched: Arc::new(Scheduler::default()),
            pool: Arc::new(pool),
            config: Arc::new(ArcSwap::from_pointee(config)),
        }
    }

    fn fleet(&self) -> Fleet<'_> {
        Fleet {
            pool: &self.pool,
            config: &self.config,
        }
    }

    /// Take worker `i`'s in-flight token, as a picked request does.
    fn occupy(&self, i: usize) -> LoadGuard {
        LoadGuard::new(self.pool.load().workers[i].clone())
    }

    /// Queue a request in a task; when granted, it takes worker 0's token, drops its grant and
    /// reports `(name, guard)` (or `(name, Err)` when refused) on `done`.
    fn spawn(
        &self,
        name: &'static str,
        priority: i64,
        slo_ms: Option<u64>,
        done: &mpsc::UnboundedSender<(&'static str, Result<LoadGuard, GatewayError>)>,
    ) {
        let (sched, pool, config, done) = (
            self.sched.clone(),
            self.pool.clone(),
            self.config.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            let fleet = Fleet {
                pool: &pool,
                config: &config,
            };
            let ask = Ask {
                model: None,
                priority,
                slo_ms,
                arrived: Instant::now(),
            };
            let result = sched.admit(fleet, ask).await.map(|admitted| {
                assert!(admitted.grant.is_some(), "a capped request holds a grant");
                assert!(admitted.waited.is_some(), "{name} waited in the queue");
                let guard = LoadGuard::new(pool.load().workers[0].clone());
                drop(admitted);
                guard
            });
            let _ = done.send((name, result));
        });
    }

    /// Let the spawned tasks run until `n` requests wait (bounded).
    async fn until_depth(&self, n: usize) {
        for _ in 0..10_000 {
            if self.sched.depth() == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("queue depth {} never became {n}", self.sched.depth());
    }
}

fn ask() -> Ask<'static> {
    Ask {
        model: None,
        priority: 0,
        slo_ms: None,
        arrived: Instant::now(),
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_cap_nothing_waits_or_is_held() {
    let p = Parts::new(1, 0, QueuePolicy::Fifo, |_| {});
    let _busy: Vec<LoadGuard> = (0..100).map(|_| p.occupy(0)).collect();
    let a = p.sched.admit(p.fleet(), ask()).await.unwrap();
    assert!(a.grant.is_none() && a.waited.is_none());
    assert_eq!(p.sched.depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_outstanding_grant_holds_its_slot_until_dropped() {
    let p = Parts::new(1, 1, QueuePolicy::Fifo, |_| {});
    let first = p.sched.admit(p.fleet(), ask()).await.unwrap();
    assert!(
        first.grant.is_some() && first.waited.is_none(),
        "free slot: at once"
    );
    // The worker's token is not taken yet, but the slot is spoken for: the next one waits.
    let (tx, mut rx) = mpsc::unbounded_channel();
    p.spawn("second", 0, None, &tx);
    p.until_depth(1).await;
    // The first request takes its worker and drops the grant; its slot is still in use.
    let held = p.occupy(0);
    drop(first);
    p.sched.kick(p.fleet());
    assert_eq!(p.sched.depth(), 1, "still no free slot");
    // The first request ends: the slot goes to the waiting one.
    drop(held);
    p.sched.kick(p.fleet());
    let (name, got) = rx.recv().await.unwrap();
    assert_eq!(name, "second");
    assert!(got.is_ok());
    assert_eq!(p.sched.depth(), 0);
    assert_eq!(p.sched.queued_total(), 1);
}

/// Fill the one slot, queue `asks` in order, then free the slot three times; returns the
/// order in which the queued requests got it.
async fn grant_order(
    p: &Parts,
    asks: &[(&'static str, i64, Option<u64>)],
    wait_between: Duration,
) -> Vec<&'static str> {
    let mut held = Some(p.occupy(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (n, (name, priority, slo)) in asks.iter().enumerate() {
        p.spawn(name, *priority, *slo, &tx);
        p.until_depth(n + 1).await;
        tokio::time::advance(wait_between).await;
    }
    let mut order = Vec::new();
    for _ in asks {
        drop(held.take());
        p.sched.kick(p.fleet());
        let (name, got) = rx.recv().await.unwrap();
        order.push(name);
        held = Some(got.unwrap());
    }
    order
}

#[tokio::test(start_paused = true)]
async fn fifo_serves_in_arrival_order() {
    let p = Parts::new(1, 1, QueuePolicy::Fifo, |_| {});
    let asks = [("a", 0, None), ("b", 9, None), ("c", 5, None)];
    assert_eq!(
        grant_order(&p, &asks, Duration::ZERO).await,
        ["a", "b", "c"]
    );
}

#[tokio::test(start_paused = true)]
async fn priority_serves_higher_classes_first() {
    let p = Parts::new(1, 1, QueuePolicy::Priority, |c| {
        c.scheduler.priority_aging_ms = 60_000
    });
    let asks = [("low", 0, None), ("high", 9, None), ("mid", 5, None)];
    assert_eq!(
        grant_order(&p, &asks, Duration::ZERO).await,
        ["high", "mid", "low"]
    );
}

#[tokio::test(start_paused = true)]
async fn aging_lets_a_long_waiting_request_overtake() {
    // Aging of one class per second; "old" waits 10 s before "newer" (priority 5) arrives.
    let p = Parts::new(1, 1, QueuePolicy::Priority, |c| {
        c.scheduler.priority_aging_ms = 1_000;
        c.scheduler.max_wait_ms = 3_600_000;
    });
    let asks = [("old", 0, None), ("newer", 5, None)];
    assert_eq!(
        grant_order(&p, &asks, Duration::from_secs(10)).await,
        ["old", "newer"]
    );
}

#[tokio::test(start_paused = true)]
async fn slo_serves_the_earliest_deadline_first() {
    let p = Parts::new(1, 1, QueuePolicy::Slo, |_| {});
    let asks = [
        ("none", 0, None),
        ("late", 0, Some(20_000)),
        ("soon", 0, Some(5_000)),
    ];
    assert_eq!(
        grant_order(&p, &asks, Duration::ZERO).await,
        ["soon", "late", "none"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_hopeless_deadline_is_refused_early() {
    let p = Parts::new(1, 1, QueuePolicy::Slo, |_| {});
    let _busy = p.occupy(0);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    p.spawn("tight", 0, Some(300), &tx);
    let (_, got) = rx.recv().await.unwrap();
    let e = got.unwrap_err();
    assert_eq!(e.status(), 429, "back-pressure");
    assert!(e.to_string().contains("300 ms"), "{e}");
    let took = start.elapsed();
    assert!(
        (300..302).contains(&(took.as_millis() as u64)),
        "refused at the deadline, not later: {took:?}"
    );
    assert_eq!(p.sched.refused(), [0, 0, 1], "counted as deadline");
    assert_eq!(p.sched.depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn waiting_too_long_is_refused() {
    let p = Parts::new(1, 1, QueuePolicy::Fifo, |c| c.scheduler.max_wait_ms = 2_000);
    let _busy = p.occupy(0);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    p.spawn("patient", 0, None, &tx);
    let (_, got) = rx.recv().await.unwrap();
    assert!(got.unwrap_err().to_string().contains("2000 ms"));
    let took = start.elapsed().as_millis() as u64;
    assert!((2_000..2_002).contains(&took), "{took} ms");
    assert_eq!(p.sched.refused(), [0, 1, 0], "counted as timeout");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once() {
    let p = Parts::new(1, 1, QueuePolicy::Fifo, |c| c.scheduler.max_queue = 1);
    let _busy = p.occupy(0);
    let (tx, _rx) = mpsc::unbounded_channel();
    p.spawn("queued", 0, None, &tx);
    p.until_depth(1).await;
    let e = p.sched.admit(p.fleet(), ask()).await.unwrap_err();
    assert!(e.to_string().contains("queue is full"), "{e}");
    assert_eq!(p.sched.refused(), [1, 0, 0]);
    let status = p.sched.status(&p.config.load().scheduler);
    assert_eq!((status.depth, status.refused["queue_full"]), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn switching_the_cap_off_lets_everybody_go() {
    let p = Parts::new(1, 1, QueuePolicy::Fifo, |_| {});
    let _busy = p.occupy(0);
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        p.spawn(name, 0, None, &tx);
        p.until_depth(i + 1).await;
    }
    let mut cfg = Config::clone(&p.config.load());
    cfg.scheduler.max_inflight_per_worker = 0;
    p.config.store(Arc::new(cfg));
    // Nobody kicks: the waiters' own re-check (every RECHECK) sees the new config.
    let mut names = Vec::new();
    for _ in 0..3 {
        let (name, got) = rx.recv().await.unwrap();
        assert!(got.is_ok());
        names.push(name);
    }
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(p.sched.depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_went_away_takes_no_slot() {
    let p = Parts::new(1, 1, QueuePolicy::Fifo, |_| {});
    let busy = p.occupy(0);
    // A waiter whose client left: its future is dropped while it waits.
    let fleet = p.fleet();
    let gone = tokio::time::timeout(Duration::from_millis(10), p.sched.admit(fleet, ask())).await;
    assert!(gone.is_err(), "it was still waiting");
    let (tx, mut rx) = mpsc::unbounded_channel();
    p.spawn("stays", 0, None, &tx);
    // Queueing "stays" sweeps out the waiter that went away.
    for _ in 0..10_000 {
        let settled = {
            let inner = p.sched.inner.lock();
            inner.waiters.len() == 1 && !inner.waiters[0].tx.is_closed()
        };
        if settled {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(p.sched.depth(), 1);
    drop(busy);
    p.sched.kick(p.fleet());
    let (name, got) = rx.recv().await.unwrap();
    assert_eq!(name, "stays");
    assert!(got.is_ok(), "the slot went to the request still waiting");
}
