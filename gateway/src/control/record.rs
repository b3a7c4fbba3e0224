//! One launched engine: its settings, the state of its current process run, and how that
//! maps to the lifecycle operators see (the process's phase combined with its worker's health).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::process::{LaunchSpec, OutputTail};
use super::types::{EngineInfo, ExitInfo};
use crate::worker::state::Lifecycle;
use crate::worker::Worker;

/// How the supervisor stops its process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Operator stop: drain in-flight requests first (bounded).
    Drain,
    /// Gateway shutdown: the gateway has drained already; terminate now.
    Now,
}

/// Where an engine is in its life (the API's state also looks at its worker's health).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// A process runs (loading, serving, or not yet listening).
    Running,
    /// Stop requested: draining, then terminating.
    Stopping,
    Stopped,
    /// Died, never became ready, or could not start.
    Failed,
}

/// The mutable part of an engine.
#[derive(Debug)]
pub struct Run {
    /// What it is started with; `launch.port` is the requested port (0 = any).
    pub launch: LaunchSpec,
    pub phase: Phase,
    /// Counts process starts; a supervisor only updates the run it started.
    pub generation: u64,
    pub pid: Option<u32>,
    /// The port the current (or last) process listened on.
    pub port: u16,
    /// Its worker in the routing pool while it runs.
    pub worker: Option<Arc<Worker>>,
    pub started: Option<Instant>,
    pub started_at: Option<u64>,
    /// The current process passed a health check once (later failures are ERROR, not loading).
    pub ready_once: bool,
    pub exit: Option<ExitInfo>,
    pub error: Option<String>,
    pub restarts: u32,
    pub stop: Option<oneshot::Sender<StopMode>>,
    pub task: Option<JoinHandle<()>>,
}

impl Run {
    pub fn new(launch: LaunchSpec) -> Self {
        Self {
            port: launch.port,
            launch,
            phase: Phase::Running,
            generation: 0,
            pid: None,
            worker: None,
            started: None,
            started_at: None,
            ready_once: false,
            exit: None,
            error: None,
            restarts: 0,
            stop: None,
            task: None,
        }
    }

    /// The state shown to operators.
    pub fn state(&self) -> Lifecycle {
        match self.phase {
            Phase::Stopping => Lifecycle::Draining,
            Phase::Stopped => Lifecycle::Stopped,
            Phase::Failed => Lifecycle::Error,
            Phase::Running => match &self.worker {
                None => Lifecycle::Starting,
                Some(w) => match w.health.lifecycle() {
                    // Failed checks while the model loads (`/health` answers 503) are loading.
                    Lifecycle::Error if !self.ready_once => Lifecycle::Starting,
                    l => l,
                },
            },
        }
    }

    pub fn live(&self) -> bool {
        matches!(self.phase, Phase::Running | Phase::Stopping)
    }
}

/// One launched engine.
#[derive(Debug)]
pub struct Engine {
    /// `engine-N`, stable across restarts.
    pub id: String,
    pub tail: Arc<OutputTail>,
    pub run: Mutex<Run>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Engine {
    pub fn info(&self) -> EngineInfo {
        let run = self.run.lock();
        let port = run.port;
        EngineInfo {
            id: self.id.clone(),
            state: run.state(),
            pid: run.pid,
            port,
            url: if port > 0 {
                format!("http://127.0.0.1:{port}")
            } else {
                String::new()
            },
            worker_id: if port > 0 {
                format!("127.0.0.1:{port}")
            } else {
                String::new()
            },
            model: run.launch.model.clone(),
            model_name: run.launch.model_name(),
            max_seqs: run.launch.max_seqs,
            threads: run.launch.threads,
            uptime_seconds: run.started.map(|s| s.elapsed().as_secs_f64()),
            started_at: run.started_at,
            restarts: run.restarts,
            exit: run.exit.clone(),
            error: run.error.clone(),
            log_tail: self.tail.lines(),
        }
    }

    /// The process of run `generation` ended (or never started): record how.
    pub fn finish(
        &self,
        generation: u64,
        phase: Phase,
        exit: Option<ExitInfo>,
        error: Option<String>,
    ) {
        let mut run = self.run.lock();
        if run.generation != generation {
            return;
        }
        run.phase = phase;
        run.pid = None;
        run.started = None;
        run.worker = None;
        run.stop = None;
        run.exit = exit;
        run.error = error;
    }

    pub fn mark_ready(&self, generation: u64) {
        let mut run = self.run.lock();
        if run.generation == generation {
            run.ready_once = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::spec::WorkerSpec;
    use crate::worker::state::HealthThresholds;

    const T: HealthThresholds = HealthThresholds {
        failures: 1,
        recoveries: 1,
    };

    #[test]
    fn states_combine_the_process_and_the_worker_health() {
        let mut run = Run::new(LaunchSpec::example());
        assert_eq!(run.state(), Lifecycle::Starting, "not listening yet");
        let w = Arc::new(Worker::new(
            WorkerSpec::new("http://127.0.0.1:1", 1, vec![]).unwrap(),
        ));
        run.worker = Some(w.clone());
        assert_eq!(run.state(), Lifecycle::Starting);
        w.health.record(false, T);
        assert_eq!(
            run.state(),
            Lifecycle::Starting,
            "a 503 while the model loads is still STARTING"
        );
        w.health.record(true, T);
        assert_eq!(run.state(), Lifecycle::Ready);
        run.ready_once = true;
        w.health.record(false, T);
        assert_eq!(
            run.state(),
            Lifecycle::Error,
            "failing after READY is ERROR"
        );
        run.phase = Phase::Stopping;
        assert_eq!(run.state(), Lifecycle::Draining);
        run.phase = Phase::Stopped;
        assert_eq!(run.state(), Lifecycle::Stopped);
        run.phase = Phase::Failed;
        assert_eq!(run.state(), Lifecycle::Error);
    }

    #[test]
    fn finish_ignores_an_old_run() {
        let e = Engine {
            id: "engine-1".into(),
            tail: Arc::default(),
            run: Mutex::new(Run::new(LaunchSpec::example())),
        };
        e.run.lock().generation = 2;
        e.finish(1, Phase::Failed, None, Some("old".into()));
        assert_eq!(e.info().state, Lifecycle::Starting);
        e.finish(2, Phase::Stopped, None, None);
        let info = e.info();
        assert_eq!(info.state, Lifecycle::Stopped);
        assert_eq!(info.uptime_seconds, None);
        assert_eq!(info.model_name, "x");
        assert_eq!(info.url, "");
    }
}
