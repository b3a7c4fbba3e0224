//! `[scheduler]`: when requests wait at the gateway, and in which order.

use serde::{Deserialize, Serialize};

use crate::config::{check, ConfigError};

/// The order in which waiting requests get a worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// First come, first served.
    #[default]
    Fifo,
    /// Higher `X-Priority` / `priority` first, FIFO within a class; waiting raises a request's
    /// priority over time (aging), so nothing starves.
    Priority,
    /// Earliest deadline (arrival + TTFT objective) first; a request that can no longer meet
    /// its deadline is refused early.
    Slo,
}

impl QueuePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            QueuePolicy::Fifo => "fifo",
            QueuePolicy::Priority => "priority",
            QueuePolicy::Slo => "slo",
        }
    }
}

/// A TTFT objective for one API key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeySlo {
    pub api_key: String,
    pub ttft_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    pub policy: QueuePolicy,
    /// Requests a worker may have in flight from this gateway; when every worker serving a
    /// request's model is at the cap, the request waits in the queue. 0 = no cap (nothing
    /// ever waits).
    pub max_inflight_per_worker: u32,
    /// Requests waiting at most; one more is refused (429).
    pub max_queue: usize,
    /// Longest wait in the queue before a request is refused (429).
    pub max_wait_ms: u64,
    /// `priority`: each this long spent waiting raises a request's priority by one.
    pub priority_aging_ms: u64,
    /// `slo`: TTFT objective of requests without `X-SLO-TTFT-MS` and without a per-key one
    /// (0 = none: such requests sort after every request with a deadline).
    pub default_slo_ttft_ms: u64,
    /// `slo`: TTFT objectives per API key.
    pub slo: Vec<KeySlo>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            policy: QueuePolicy::Fifo,
            max_inflight_per_worker: 0,
            max_queue: 1024,
            max_wait_ms: 30_000,
            priority_aging_ms: 1_000,
            default_slo_ttft_ms: 0,
            slo: Vec::new(),
        }
    }
}

impl SchedulerConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.max_inflight_per_worker <= 1_000_000,
            "scheduler.max_inflight_per_worker",
            "must be 0 (no cap) ..= 1000000",
        )?;
        check(
            (1..=1_000_000).contains(&self.max_queue),
            "scheduler.max_queue",
            "must be 1..=1000000",
        )?;
        check(
            (1..=3_600_000).contains(&self.max_wait_ms),
            "scheduler.max_wait_ms",
            "must be 1..=3600000",
        )?;
        check(
            self.priority_aging_ms >= 1,
            "scheduler.priority_aging_ms",
            "must be >= 1",
        )?;
        for (i, s) in self.slo.iter().enumerate() {
            check(
                !s.api_key.trim().is_empty(),
                &format!("scheduler.slo[{i}].api_key"),
                "must not be empty",
            )?;
            check(
                s.ttft_ms >= 1,
                &format!("scheduler.slo[{i}].ttft_ms"),
                "must be >= 1",
            )?;
        }
        Ok(())
    }

    /// The TTFT objective of a request: its header, else its key's, else the default.
    pub fn slo_ms(&self, header: Option<u64>, api_key: Option<&str>) -> Option<u64> {
        header
            .or_else(|| {
                let key = api_key?.trim();
                self.slo
                    .iter()
                    .find(|s| s.api_key.trim() == key)
                    .map(|s| s.ttft_ms)
            })
            .or((self.default_slo_ttft_ms > 0).then_some(self.default_slo_ttft_ms))
    }
}
