//! Admission into the simulated running batch: a FIFO queue (tokio `Semaphore`) with RAII
//! guards that keep the `running` / `waiting` counters right on every exit path — normal end,
//! client disconnect (the future or body stream is dropped) and server kill.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::control::SimControl;

/// Counts one request as waiting while it lives.
struct WaitingGuard<'a>(&'a SimControl);

impl<'a> WaitingGuard<'a> {
    fn new(control: &'a SimControl) -> Self {
        control.waiting.fetch_add(1, Ordering::Relaxed);
        Self(control)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A batch slot: counts one request as running and frees the slot when dropped.
pub(crate) struct RunningGuard {
    control: Arc<SimControl>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.control.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits (FIFO) for a batch slot, counting as waiting meanwhile.
pub(crate) async fn admit(control: &Arc<SimControl>) -> RunningGuard {
    let waiting = WaitingGuard::new(control);
    // The semaphore is never closed, so this only fails in theory; run unthrottled then.
    let permit = control.slots.clone().acquire_owned().await.ok();
    control.running.fetch_add(1, Ordering::Relaxed);
    drop(waiting);
    RunningGuard {
        control: Arc::clone(control),
        _permit: permit,
    }
}
