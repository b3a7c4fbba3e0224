//! The JSON bodies of the management API. The gateway serialises them; the `sagellm` CLI, the
//! dashboard and scripts deserialise the same structs, so they cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::reload::ReloadStatus;
use crate::worker::breaker::BreakerView;
use crate::worker::kind::WorkerKind;
use crate::worker::load::LoadView;
use crate::worker::state::Lifecycle;
use crate::worker::stats::StatsView;

/// One serialisable view of a worker: the management API, the CLI and the dashboard all
/// show this struct.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub index: usize,
    pub id: String,
    pub url: String,
    /// Where the worker came from: `static`, `api`, `engine` or `dns`.
    #[serde(default)]
    pub source: crate::worker::WorkerSource,
    pub weight: u32,
    pub kind: WorkerKind,
    pub version: Option<String>,
    pub models: Vec<String>,
    pub state: Lifecycle,
    pub asleep: bool,
    pub consecutive_failures: u32,
    /// Why the last health check failed (a refused certificate, a 401, a timeout…).
    #[serde(default)]
    pub last_check_error: Option<String>,
    pub load: LoadView,
    pub stats: StatsView,
    pub breaker: BreakerView,
    pub served: u64,
}

/// `GET /api/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusInfo {
    pub version: String,
    pub uptime_seconds: f64,
    pub routing_strategy: String,
    pub workers_total: usize,
    /// Workers that can take requests now.
    pub workers_healthy: usize,
    pub active_requests: usize,
    /// Requests answered since start, and those with a 4xx/5xx status.
    pub requests_total: u64,
    pub errors_total: u64,
    /// The gateway is shutting down (new requests get 503).
    pub shutting_down: bool,
    /// The last rejected configuration change, if the latest one failed.
    pub config_error: Option<String>,
    /// The gateway-side queue (depth, wait, refusals).
    #[serde(default)]
    pub queue: crate::sched::QueueStatus,
    /// Where state shared with other replicas lives (`[redis]`).
    #[serde(default)]
    pub shared: SharedStatus,
    /// Where workers are found besides the static list (`[discovery]`).
    #[serde(default)]
    pub discovery: crate::discovery::DiscoveryStatus,
    pub workers: Vec<WorkerInfo>,
}

/// `GET /api/status` → `shared`: the backend of shared state and this replica.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SharedStatus {
    /// `local` (no `[redis]`), `redis`, or `degraded` (Redis configured but not answering:
    /// `redis.on_failure` applies).
    pub backend: String,
    /// This replica's id (also the `x-sagellm-replica` response header of management writes).
    pub replica_id: String,
    /// Live replicas sharing the limits, this one included (1 without Redis).
    pub replicas: usize,
}

/// One worker's line in `GET /api/routing/stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSelections {
    pub index: usize,
    pub id: String,
    pub url: String,
    /// Choices of this worker under the current strategy.
    pub selected: u64,
    /// Its share of the current strategy's choices among the present workers, 0..1.
    pub share: f64,
    /// Choices per strategy tag (strategies that never chose it are left out).
    pub by_strategy: std::collections::BTreeMap<String, u64>,
}

/// `GET /api/routing/stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoutingStats {
    pub strategy: String,
    /// Choices per strategy tag since start (every tag).
    pub by_strategy: std::collections::BTreeMap<String, u64>,
    pub workers: Vec<WorkerSelections>,
}

/// One worker's breaker in `GET /api/circuit-breaker/stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerBreaker {
    pub index: usize,
    pub id: String,
    pub url: String,
    pub breaker: BreakerView,
}

/// `GET /api/circuit-breaker/stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BreakerStats {
    pub enabled: bool,
    pub failure_threshold: u32,
    pub timeout_seconds: u64,
    pub half_open_requests: u32,
    pub success_threshold: u32,
    pub slow_call_threshold_ms: u64,
    /// Whether a passing health check half-opens an open breaker at once.
    #[serde(default)]
    pub health_check_uneject: bool,
    pub workers: Vec<WorkerBreaker>,
}

/// `GET /api/config` and the reply of `PUT /api/config`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigView {
    /// The live configuration, keys masked.
    pub config: serde_json::Value,
    pub reload: ReloadStatus,
}
