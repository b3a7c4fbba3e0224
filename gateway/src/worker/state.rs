//! Worker lifecycle: the health side (`STARTING → READY ⇄ ERROR`, driven by active checks and
//! passive connect failures) and the operator side (active, `DRAINING`, `STOPPED`). The state
//! shown to operators combines both; only READY, active, awake workers take new requests.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// The lifecycle state shown by the API, CLI and dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Lifecycle {
    Starting,
    Ready,
    Draining,
    Stopped,
    Error,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Starting => "STARTING",
            Lifecycle::Ready => "READY",
            Lifecycle::Draining => "DRAINING",
            Lifecycle::Stopped => "STOPPED",
            Lifecycle::Error => "ERROR",
        }
    }
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const ERROR: u8 = 2;

const ACTIVE: u8 = 0;
const DRAINING: u8 = 1;
const STOPPED: u8 = 2;

/// Thresholds of the health state machine.
#[derive(Clone, Copy, Debug)]
pub struct HealthThresholds {
    /// Consecutive failures before READY/STARTING becomes ERROR.
    pub failures: u32,
    /// Consecutive successes before ERROR becomes READY.
    pub recoveries: u32,
}

#[derive(Debug, Default)]
pub struct Health {
    health: AtomicU8,
    admin: AtomicU8,
    asleep: AtomicBool,
    consecutive_failures: AtomicU32,
    consecutive_successes: AtomicU32,
    /// Why the last health check failed (`None` once one passes).
    check_error: parking_lot::Mutex<Option<String>>,
}

impl Health {
    /// Record the result of one check (or a passive signal). Returns `Some((from, to))` when
    /// the health state changed.
    pub fn record(&self, ok: bool, t: HealthThresholds) -> Option<(Lifecycle, Lifecycle)> {
        let before = self.health.load(Relaxed);
        let after = if ok {
            self.consecutive_failures.store(0, Relaxed);
            let n = self
                .consecutive_successes
                .fetch_add(1, Relaxed)
                .saturating_add(1);
            match before {
                STARTING => READY,
                ERROR if n >= t.recoveries => READY,
                s => s,
            }
        } else {
            self.consecutive_successes.store(0, Relaxed);
            let n = self
                .consecutive_failures
                .fetch_add(1, Relaxed)
                .saturating_add(1);
            if n >= t.failures {
                ERROR
            } else {
                before
            }
        };
        if after == before {
            return None;
        }
        let old = self.lifecycle();
        self.health.store(after, Relaxed);
        Some((old, self.lifecycle()))
    }

    pub fn set_asleep(&self, asleep: bool) {
        self.asleep.store(asleep, Relaxed);
    }

    pub fn is_asleep(&self) -> bool {
        self.asleep.load(Relaxed)
    }

    pub fn set_draining(&self, draining: bool) {
        let _ = self.admin.compare_exchange(
            if draining { ACTIVE } else { DRAINING },
            if draining { DRAINING } else { ACTIVE },
            Relaxed,
            Relaxed,
        );
    }

    pub fn set_stopped(&self) {
        self.admin.store(STOPPED, Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.admin.load(Relaxed) == DRAINING
    }

    /// Whether new requests may be sent (READY, not drained or stopped, not asleep).
    pub fn is_routable(&self) -> bool {
        self.health.load(Relaxed) == READY
            && self.admin.load(Relaxed) == ACTIVE
            && !self.asleep.load(Relaxed)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Relaxed)
    }

    /// Keep why the last check failed (or clear it after a pass), for `GET /api/workers`.
    pub fn set_check_error(&self, error: Option<&str>) {
        let mut slot = self.check_error.lock();
        if slot.as_deref() != error {
            *slot = error.map(str::to_string);
        }
    }

    pub fn check_error(&self) -> Option<String> {
        self.check_error.lock().clone()
    }

    pub fn lifecycle(&self) -> Lifecycle {
        match (self.admin.load(Relaxed), self.health.load(Relaxed)) {
            (STOPPED, _) => Lifecycle::Stopped,
            (DRAINING, _) => Lifecycle::Draining,
            (_, READY) => Lifecycle::Ready,
            (_, ERROR) => Lifecycle::Error,
            _ => Lifecycle::Starting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: HealthThresholds = HealthThresholds {
        failures: 3,
        recoveries: 2,
    };

    #[test]
    fn starting_ready_error_ready() {
        let h = Health::default();
        assert_eq!(h.lifecycle(), Lifecycle::Starting);
        assert!(!h.is_routable());
        assert_eq!(
            h.record(true, T),
            Some((Lifecycle::Starting, Lifecycle::Ready))
        );
        assert!(h.is_routable());
        assert_eq!(h.record(false, T), None);
        assert_eq!(h.record(false, T), None);
        assert_eq!(
            h.record(false, T),
            Some((Lifecycle::Ready, Lifecycle::Error))
        );
        assert!(!h.is_routable());
        assert_eq!(
            h.record(true, T),
            None,
            "one success is not enough to recover"
        );
        assert_eq!(
            h.record(true, T),
            Some((Lifecycle::Error, Lifecycle::Ready))
        );
    }

    #[test]
    fn draining_and_sleep_block_routing() {
        let h = Health::default();
        h.record(true, T);
        h.set_draining(true);
        assert_eq!(h.lifecycle(), Lifecycle::Draining);
        assert!(!h.is_routable());
        h.set_draining(false);
        assert!(h.is_routable());
        h.set_asleep(true);
        assert!(!h.is_routable());
        h.set_asleep(false);
        h.set_stopped();
        h.set_draining(false);
        assert_eq!(h.lifecycle(), Lifecycle::Stopped);
    }
}
