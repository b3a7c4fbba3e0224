//! Making mistral.rs's engine thread a worker of the rayon pool that runs candle's kernels.
//!
//! mistral.rs runs every forward pass on its own engine thread, which is not a rayon worker:
//! each parallel candle operation (hundreds per decoded token) is then injected into the
//! global pool while the engine thread blocks on a latch (`Registry::in_worker_cold`), a
//! round trip through the kernel scheduler every time. rayon's
//! `ThreadPoolBuilder::use_current_thread` turns the calling thread into worker 0 of a new
//! pool, after which candle's operations on that thread take rayon's hot path: the engine
//! thread works on its share instead of sleeping, and only the other workers are woken.
//!
//! The only code of ours that mistral.rs runs on its engine thread is a logits processor of a
//! single-sequence step (multi-sequence steps sample on rayon workers). [`processor`] returns
//! one that builds the pool on the first call from a thread that is not yet a rayon worker;
//! the loader sends a one-token warm-up request with it (see [`crate::warmup`]) and requests
//! carry it until the pin has taken.
//!
//! The pool has at least two threads: mistral.rs samples a multi-sequence step with
//! `rayon::spawn`, which from a worker thread pushes onto that worker's own deque, and the
//! engine thread then waits outside rayon, so another worker must be there to steal the job.
//! With `--threads 1` nothing is pinned (a second thread would exceed what was asked for).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use mistralrs::{CustomLogitsProcessor, Tensor};

const PENDING: u8 = 0;
const PINNED: u8 = 1;
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(PENDING);
/// Threads of the pool, set once by [`enable`]; unset means pinning is off.
static THREADS: OnceLock<usize> = OnceLock::new();
/// Serialises the build, so two threads never both try.
static BUILD: Mutex<()> = Mutex::new(());

/// Where pinning stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinState {
    /// Not asked for (`--pin-engine-thread false` or one thread).
    Off,
    /// Asked for, waiting for the engine thread's first single-sequence step.
    Pending,
    /// The engine thread is worker 0 of a pool of `threads`.
    Pinned,
    /// The pool could not be built (logged); candle uses the global pool as before.
    Failed,
}

/// Ask for pinning with a pool of `threads` (clamped to ≥ 2; 1 turns it off). Later calls
/// are ignored.
pub fn enable(threads: usize) {
    if threads >= 2 {
        let _ = THREADS.set(threads);
    }
}

pub fn state() -> PinState {
    if THREADS.get().is_none() {
        return PinState::Off;
    }
    match STATE.load(Ordering::Acquire) {
        PINNED => PinState::Pinned,
        FAILED => PinState::Failed,
        _ => PinState::Pending,
    }
}

/// The pinning processor while pinning is enabled and has not happened yet.
pub fn processor() -> Option<Arc<dyn CustomLogitsProcessor>> {
    (state() == PinState::Pending).then(|| Arc::new(Pin) as Arc<dyn CustomLogitsProcessor>)
}

/// Pin the calling thread if pinning is pending and it is not a rayon worker already.
/// Returns whether this call pinned it.
pub fn pin_current_thread() -> bool {
    let Some(&threads) = THREADS.get() else {
        return false;
    };
    if STATE.load(Ordering::Acquire) != PENDING || rayon::current_thread_index().is_some() {
        return false;
    }
    let Ok(_guard) = BUILD.try_lock() else {
        return false;
    };
    if STATE.load(Ordering::Acquire) != PENDING {
        return false;
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .thread_name(|i| format!("sagellm-kernels-{i}"))
        .build();
    match built {
        Ok(pool) => {
            // Dropping the pool would stop its other workers; it lives as long as the process.
            std::mem::forget(pool);
            STATE.store(PINNED, Ordering::Release);
            tracing::info!(threads, "engine thread pinned as rayon worker 0");
            true
        }
        Err(e) => {
            STATE.store(FAILED, Ordering::Release);
            tracing::warn!(error = %e, "cannot make the engine thread a rayon worker; running unpinned");
            false
        }
    }
}

/// The logits processor: pins, then returns the logits unchanged.
struct Pin;

impl CustomLogitsProcessor for Pin {
    fn apply(&self, logits: &Tensor, _context: &[u32]) -> mistralrs::Result<Tensor> {
        pin_current_thread();
        Ok(logits.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the state is process-wide.
    #[test]
    fn pins_a_plain_thread_once_and_never_a_rayon_worker() {
        assert_eq!(state(), PinState::Off);
        assert!(processor().is_none());
        assert!(!pin_current_thread(), "off: nothing happens");
        enable(1);
        assert_eq!(state(), PinState::Off, "one thread is not pinned");
        enable(2);
        assert_eq!(state(), PinState::Pending);
        assert!(processor().is_some());
        // A worker of the global pool is never taken over.
        let other = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert!(!other.install(pin_current_thread));
        assert_eq!(state(), PinState::Pending);
        let pinned = std::thread::spawn(|| {
            let first = pin_current_thread();
            let index = rayon::current_thread_index();
            // Parallel work from the pinned thread runs in its pool and completes.
            let sum: u64 = rayon::prelude::ParallelIterator::sum(
                rayon::prelude::IntoParallelIterator::into_par_iter(0..10_000u64),
            );
            // Work spawned onto its own deque is stolen by the second worker.
            let (tx, rx) = std::sync::mpsc::channel();
            rayon::spawn(move || tx.send(7).unwrap());
            let stolen = rx.recv_timeout(std::time::Duration::from_secs(30)).ok();
            (first, index, sum, stolen, pin_current_thread())
        })
        .join()
        .unwrap();
        assert_eq!(pinned, (true, Some(0), 49_995_000, Some(7), false));
        assert_eq!(state(), PinState::Pinned);
        assert!(processor().is_none());
        assert!(!pin_current_thread(), "a second thread is not pinned");
    }
}
