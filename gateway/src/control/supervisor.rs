//! One task per engine process, from spawn to exit:
//!
//! 1. wait for the port the engine announces (it binds before it loads the model), or its
//!    early exit; then register `http://127.0.0.1:PORT` as a worker in STARTING and tell the
//!    waiting start request;
//! 2. watch: the prober's health checks make the worker READY once the model is loaded; not
//!    READY within `control.start_timeout_seconds` → stopped, ERROR; the process exiting on its
//!    own → out of the pool, ERROR (with its exit status and last output);
//! 3. on stop: the worker is DRAINING (no new requests), in-flight requests get up to
//!    `control.drain_timeout_seconds`, the worker leaves the pool, then SIGTERM and after
//!    `control.stop_grace_seconds` SIGKILL → STOPPED.
//!
//! The task owns the `Child`; nothing else waits on it, so its pid stays reserved until this
//! task has reaped it (see [`super::process`]).

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::process::{self, Spawned};
use super::record::{Engine, Phase, StopMode};
use crate::state::AppState;
use crate::worker::spec::WorkerSpec;
use crate::worker::state::Lifecycle;
use crate::worker::Worker;

/// The engine prints its port right after binding, before loading: this is only a bound for
/// a process that hangs before that.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the supervisor looks whether a starting engine became READY.
const READY_POLL: Duration = Duration::from_millis(200);
/// How often a drain looks at the worker's in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(20);

pub async fn supervise(
    state: Arc<AppState>,
    engine: Arc<Engine>,
    generation: u64,
    spawned: Spawned,
    mut stop: oneshot::Receiver<StopMode>,
    listening: oneshot::Sender<Result<(), String>>,
) {
    let Spawned {
        child,
        pid,
        port,
        readers,
    } = spawned;
    let mut run = Run {
        state,
        engine,
        generation,
        child,
        pid,
        started: Instant::now(),
    };
    let Some(worker) = run.listen(port, readers, &mut stop, listening).await else {
        return;
    };
    let end = run.watch(&worker, &mut stop).await;
    run.end(&worker, end).await;
}

/// One engine process under supervision.
struct Run {
    state: Arc<AppState>,
    engine: Arc<Engine>,
    generation: u64,
    child: Child,
    pid: u32,
    started: Instant,
}

/// How the watch (phase 2) ended.
enum End {
    Died(std::io::Result<ExitStatus>),
    StartTimeout,
    Stop(StopMode),
}

impl Run {
    fn grace(&self) -> Duration {
        Duration::from_secs(self.state.config.load().control.stop_grace_seconds)
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.state.config.load().control.start_timeout_seconds)
    }

    async fn terminate(&mut self) -> Option<ExitStatus> {
        let grace = self.grace();
        process::terminate(&mut self.child, self.pid, grace)
            .await
            .ok()
    }

    fn finish(&self, phase: Phase, status: Option<&ExitStatus>, error: Option<String>) {
        self.engine.finish(
            self.generation,
            phase,
            status.map(process::exit_info),
            error,
        );
    }

    /// Phase 1: wait for the announced port, register the worker (STARTING until the
    /// prober sees its /health pass) and tell the waiting start request. `None`: the engine
    /// never listened; its record is finished and the start request told why.
    async fn listen(
        &mut self,
        port: oneshot::Receiver<u16>,
        readers: Vec<tokio::task::JoinHandle<()>>,
        stop: &mut oneshot::Receiver<StopMode>,
        listening: oneshot::Sender<Result<(), String>>,
    ) -> Option<Arc<Worker>> {
        let port = match self.announced(port, stop).await {
            Ok(p) => p,
            Err((what, status)) => {
                let status = match status {
                    Some(s) => Some(s),
                    None => self.terminate().await,
                };
                // Let the output readers catch the last lines (the engine's error message).
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    futures_util::future::join_all(readers),
                )
                .await;
                let _ = listening.send(Err(self.never_listened(what, status)));
                return None;
            }
        };
        let url = format!("http://127.0.0.1:{port}");
        let (state, engine) = (&self.state, &self.engine);
        let registered = WorkerSpec::new(&url, 1, vec![]).and_then(|spec| {
            state
                .engines
                .register(&state.pool, engine, self.generation, spec)
        });
        let worker = match registered {
            Ok(w) => w,
            Err(e) => {
                let status = self.terminate().await;
                let message = format!("cannot add {url} to the pool: {e}");
                self.finish(Phase::Failed, status.as_ref(), Some(message.clone()));
                let _ = listening.send(Err(message));
                return None;
            }
        };
        self.state.publish_routable();
        tracing::info!(engine = %self.engine.id, pid = self.pid, %url, "engine listening, loading its model");
        let _ = listening.send(Ok(()));
        Some(worker)
    }

    /// The port the engine announces, or why it never came (with the exit status if the
    /// process already ended).
    async fn announced(
        &mut self,
        port: oneshot::Receiver<u16>,
        stop: &mut oneshot::Receiver<StopMode>,
    ) -> Result<u16, (&'static str, Option<ExitStatus>)> {
        let announce_timeout = ANNOUNCE_TIMEOUT.min(self.start_timeout());
        let grace = self.grace();
        let child = &mut self.child;
        tokio::select! {
            p = port => match p {
                Ok(p) => Ok(p),
                // Its stdout closed without the line: it is exiting.
                Err(_) => Err(("exited before listening", tokio::time::timeout(grace, child.wait()).await.ok().and_then(Result::ok))),
            },
            status = child.wait() => Err(("exited before listening", status.ok())),
            _ = stop => Err(("was stopped before it listened", None)),
            _ = tokio::time::sleep(announce_timeout) => Err(("did not announce its port in time", None)),
        }
    }

    /// Finish the record of an engine that never listened; the message for the start request.
    fn never_listened(&self, what: &str, status: Option<ExitStatus>) -> String {
        let stopped = what.starts_with("was stopped");
        let exit = status.as_ref().map(process::exit_info);
        let mut message = format!("the engine {what}");
        if let (false, Some(e)) = (stopped, &exit) {
            message.push_str(&format!(" ({})", e.description));
        }
        if let (false, Some(last)) = (stopped, self.engine.tail.last()) {
            message.push_str(&format!(": {last}"));
        }
        tracing::warn!(engine = %self.engine.id, error = %message, "engine start failed");
        let (phase, error) = if stopped {
            (Phase::Stopped, None)
        } else {
            (Phase::Failed, Some(message.clone()))
        };
        self.engine.finish(self.generation, phase, exit, error);
        message
    }

    /// Phase 2: watch the process until it dies, is stopped, or misses its start deadline;
    /// mark it ready when the prober makes its worker READY.
    async fn watch(&mut self, worker: &Worker, stop: &mut oneshot::Receiver<StopMode>) -> End {
        let start_deadline = self.started + self.start_timeout();
        let mut ready = false;
        let mut poll = tokio::time::interval(READY_POLL);
        loop {
            tokio::select! {
                status = self.child.wait() => break End::Died(status),
                mode = &mut *stop => break End::Stop(mode.unwrap_or(StopMode::Now)),
                _ = poll.tick(), if !ready => {
                    if worker.health.lifecycle() == Lifecycle::Ready {
                        ready = true;
                        self.engine.mark_ready(self.generation);
                        tracing::info!(engine = %self.engine.id, seconds = self.started.elapsed().as_secs_f64(), "engine ready");
                    } else if Instant::now() >= start_deadline {
                        break End::StartTimeout;
                    }
                }
            }
        }
    }

    /// Phase 3: the worker leaves the pool (drained first on an operator's stop), the
    /// process is terminated if it still runs, the record says how it ended.
    async fn end(&mut self, worker: &Worker, end: End) {
        match end {
            End::Died(status) => {
                self.state.engines.unregister(&self.state, worker);
                let exit = status.as_ref().ok().map(process::exit_info);
                let mut message = format!(
                    "the engine process ended unexpectedly ({})",
                    exit.as_ref()
                        .map_or("status unknown", |e| e.description.as_str())
                );
                if let Some(last) = self.engine.tail.last() {
                    message.push_str(&format!("; its last output: {last}"));
                }
                tracing::warn!(engine = %self.engine.id, pid = self.pid, error = %message, "engine died");
                self.engine
                    .finish(self.generation, Phase::Failed, exit, Some(message));
            }
            End::StartTimeout => {
                self.state.engines.unregister(&self.state, worker);
                let status = self.terminate().await;
                let secs = self.start_timeout().as_secs();
                let message = format!(
                    "the engine was not READY within control.start_timeout_seconds ({secs} s) and was stopped"
                );
                tracing::warn!(engine = %self.engine.id, error = %message, "engine start timed out");
                self.finish(Phase::Failed, status.as_ref(), Some(message));
            }
            End::Stop(mode) => {
                let status = stop_sequence(
                    &self.state,
                    &self.engine,
                    worker,
                    &mut self.child,
                    self.pid,
                    mode,
                )
                .await;
                tracing::info!(engine = %self.engine.id, pid = self.pid, exit = ?status.as_ref().map(process::exit_info).map(|e| e.description), "engine stopped");
                self.finish(Phase::Stopped, status.as_ref(), None);
            }
        }
    }
}

/// Drain (operator stops), take the worker out of the pool, terminate the process.
async fn stop_sequence(
    state: &AppState,
    engine: &Engine,
    worker: &Worker,
    child: &mut Child,
    pid: u32,
    mode: StopMode,
) -> Option<ExitStatus> {
    worker.health.set_draining(true);
    state.publish_routable();
    let cfg = state.config.load().control.clone();
    let mut exited = None;
    if mode == StopMode::Drain {
        let deadline = Instant::now() + Duration::from_secs(cfg.drain_timeout_seconds);
        loop {
            let inflight = worker.load.inflight();
            if inflight == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(engine = %engine.id, inflight, "drain timeout: stopping with requests in flight");
                break;
            }
            tokio::select! {
                status = child.wait() => { exited = status.ok(); break; }
                _ = tokio::time::sleep(DRAIN_POLL) => {}
            }
        }
    }
    state.engines.unregister(state, worker);
    match exited {
        Some(s) => Some(s),
        None => process::terminate(child, pid, Duration::from_secs(cfg.stop_grace_seconds))
            .await
            .ok(),
    }
}
