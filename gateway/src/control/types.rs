//! The JSON bodies of the control plane (`/v1/management/*`). The gateway serialises them and
//! the `sagellm engines` commands deserialise the same structs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::worker::state::Lifecycle;
use crate::worker::WorkerKind;

/// `POST /v1/management/engines/start`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartEngine {
    /// A local GGUF file (relative paths are relative to the gateway's working directory).
    pub model: PathBuf,
    /// Loopback port to listen on; absent or 0 = a free one.
    #[serde(default)]
    pub port: Option<u16>,
    /// `--max-seqs`; absent = `control.default_max_seqs`.
    #[serde(default)]
    pub max_seqs: Option<usize>,
    /// `--threads` (CPU threads of the model's kernels); absent = all cores.
    #[serde(default)]
    pub threads: Option<usize>,
    /// `--served-model-name`; absent = the file name without `.gguf`.
    #[serde(default)]
    pub served_model_name: Option<String>,
}

/// How an engine process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it (9 = SIGKILL, 15 = SIGTERM).
    pub signal: Option<i32>,
    /// `exit code 2`, `killed by signal 9 (SIGKILL)`.
    pub description: String,
}

/// One launched engine: `GET /v1/management/engines` and the replies of start/stop/restart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EngineInfo {
    /// `engine-1`, `engine-2`, … (stable across restarts).
    pub id: String,
    /// STARTING (process up, model loading) → READY → DRAINING (stopping) → STOPPED; ERROR
    /// when the process died, never became ready, or stopped passing health checks.
    pub state: Lifecycle,
    /// Process id while the process runs.
    pub pid: Option<u32>,
    /// The loopback port (0 until the engine announced it).
    pub port: u16,
    /// `http://127.0.0.1:PORT`, the worker URL the gateway routes to.
    pub url: String,
    /// The worker id in `/api/workers` (`127.0.0.1:PORT`).
    pub worker_id: String,
    /// The GGUF file (absolute path).
    pub model: PathBuf,
    /// The model id the engine serves (what requests name in `model`).
    pub model_name: String,
    pub max_seqs: usize,
    pub threads: Option<usize>,
    /// Seconds since the current process started; `null` when none runs.
    pub uptime_seconds: Option<f64>,
    /// Unix time (seconds) of the current or last process start.
    pub started_at: Option<u64>,
    /// Restarts through the API.
    pub restarts: u32,
    /// How the last process ended (`null` while it runs).
    pub exit: Option<ExitInfo>,
    /// Why the engine is in ERROR (or why the last start failed).
    pub error: Option<String>,
    /// The last lines the process printed (stdout and stderr).
    pub log_tail: Vec<String>,
}

/// One worker in `GET /v1/management/backends`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Backend {
    pub id: String,
    pub url: String,
    pub kind: WorkerKind,
    pub state: Lifecycle,
    /// Whether it takes new requests now (READY, not draining, not asleep).
    pub routable: bool,
    pub models: Vec<String>,
    /// The launched engine behind it, if this gateway started it.
    pub engine_id: Option<String>,
    /// Requests of this gateway in flight on it.
    pub inflight: u32,
}

/// Launched engines per state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineCounts {
    pub total: usize,
    pub starting: usize,
    pub ready: usize,
    pub draining: usize,
    pub stopped: usize,
    pub error: usize,
}

impl EngineCounts {
    pub fn count(&mut self, state: Lifecycle) {
        self.total += 1;
        *match state {
            Lifecycle::Starting => &mut self.starting,
            Lifecycle::Ready => &mut self.ready,
            Lifecycle::Draining => &mut self.draining,
            Lifecycle::Stopped => &mut self.stopped,
            Lifecycle::Error => &mut self.error,
        } += 1;
    }
}

/// `GET /v1/management/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControlStatus {
    pub version: String,
    pub uptime_seconds: f64,
    pub engines: EngineCounts,
    pub workers_total: usize,
    /// Workers that take requests now.
    pub workers_healthy: usize,
    /// Models served by the fleet (de-duplicated).
    pub models: Vec<String>,
    /// The `sagellm-engine` binary a start would run; `null` when none is found.
    pub engine_binary: Option<PathBuf>,
}

/// One GPU in `GET /v1/management/gpu`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    /// `null` where the driver reports `[N/A]`.
    pub memory_used_mib: Option<u64>,
    pub memory_total_mib: Option<u64>,
    pub utilization_percent: Option<f64>,
}

/// `GET /v1/management/gpu`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuReport {
    pub gpus: Vec<GpuInfo>,
    /// Why `gpus` is empty (no `nvidia-smi`, or it failed); `null` when it answered.
    pub reason: Option<String>,
}
