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
        mut child,
        pid,
        port,
        readers,
    } = spawned;
    let grace = || Duration::from_secs(state.config.load().control.stop_grace_seconds);
    let started = Instant::now();

    // 1. The announced port.
    let announce_timeout = ANNOUNCE_TIMEOUT.min(Duration::from_secs(
        state.config.load().control.start_timeout_seconds,
    ));
    let early = tokio::select! {
        p = port => match p {
            Ok(p) => Ok(p),
            // Its stdout closed without the line: it is exiting.
            Err(_) => Err(("exited before listening", tokio::time::timeout(grace(), child.wait()).await.ok().and_then(Result::ok))),
        },
        status = child.wait() => Err(("exited before listening", status.ok())),
        _ = &mut stop => Err(("was stopped before it listened", None)),
        _ = tokio::time::sleep(announce_timeout) => Err(("did not announce its port in time", None)),
    };
    let port = match early {
        Ok(p) => p,
        Err((what, status)) => {
            let status = match status {
                Some(s) => Some(s),
                None => process::terminate(&mut child, pid, grace()).await.ok(),
            };
            // Let the output readers catch the last lines (the engine's error message).
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                futures_util::future::join_all(readers),
            )
            .await;
            let stopped = what.starts_with("was stopped");
            let exit = status.as_ref().map(process::exit_info);
            let mut message = format!("the engine {what}");
            if let (false, Some(e)) = (stopped, &exit) {
                message.push_str(&format!(" ({})", e.description));
            }
            if let (false, Some(last)) = (stopped, engine.tail.last()) {
                message.push_str(&format!(": {last}"));
            }
            tracing::warn!(engine = %engine.id, error = %message, "engine start failed");
            let (phase, error) = if stopped {
                (Phase::Stopped, None)
            } else {
                (Phase::Failed, Some(message.clone()))
            };
            engine.finish(generation, phase, exit, error);
            let _ = listening.send(Err(message));
            return;
        }
    };

    // Register it as a worker (STARTING until the prober sees its /health pass).
    let url = format!("http://127.0.0.1:{port}");
    let worker = match WorkerSpec::new(&url, 1, vec![]).and_then(|spec| {
        state
            .engines
            .register(&state.pool, &engine, generation, spec)
    }) {
        Ok(w) => w,
        Err(e) => {
            let status = process::terminate(&mut child, pid, grace()).await.ok();
            let message = format!("cannot add {url} to the pool: {e}");
            engine.finish(
                generation,
                Phase::Failed,
                status.as_ref().map(process::exit_info),
                Some(message.clone()),
            );
            let _ = listening.send(Err(message));
            return;
        }
    };
    state.publish_routable();
    tracing::info!(engine = %engine.id, pid, %url, "engine listening, loading its model");
    let _ = listening.send(Ok(()));

    // 2. Watch it.
    let start_deadline =
        started + Duration::from_secs(state.config.load().control.start_timeout_seconds);
    let mut ready = false;
    let mut poll = tokio::time::interval(READY_POLL);
    let end = loop {
        tokio::select! {
            status = child.wait() => break End::Died(status),
            mode = &mut stop => break End::Stop(mode.unwrap_or(StopMode::Now)),
            _ = poll.tick(), if !ready => {
                if worker.health.lifecycle() == Lifecycle::Ready {
                    ready = true;
                    engine.mark_ready(generation);
                    tracing::info!(engine = %engine.id, seconds = started.elapsed().as_secs_f64(), "engine ready");
                } else if Instant::now() >= start_deadline {
                    break End::StartTimeout;
                }
            }
        }
    };

    match end {
        End::Died(status) => {
            state.engines.unregister(&state, &worker);
            let exit = status.as_ref().ok().map(process::exit_info);
            let mut message = format!(
                "the engine process ended unexpectedly ({})",
                exit.as_ref()
                    .map_or("status unknown", |e| e.description.as_str())
            );
            if let Some(last) = engine.tail.last() {
                message.push_str(&format!("; its last output: {last}"));
            }
            tracing::warn!(engine = %engine.id, pid, error = %message, "engine died");
            engine.finish(generation, Phase::Failed, exit, Some(message));
        }
        End::StartTimeout => {
            state.engines.unregister(&state, &worker);
            let status = process::terminate(&mut child, pid, grace()).await.ok();
            let secs = state.config.load().control.start_timeout_seconds;
            let message = format!(
                "the engine was not READY within control.start_timeout_seconds ({secs} s) and was stopped"
            );
            tracing::warn!(engine = %engine.id, error = %message, "engine start timed out");
            engine.finish(
                generation,
                Phase::Failed,
                status.as_ref().map(process::exit_info),
                Some(message),
            );
        }
        End::Stop(mode) => {
            let status = stop_sequence(&state, &engine, &worker, &mut child, pid, mode).await;
            tracing::info!(engine = %engine.id, pid, exit = ?status.as_ref().map(process::exit_info).map(|e| e.description), "engine stopped");
            engine.finish(
                generation,
                Phase::Stopped,
                status.as_ref().map(process::exit_info),
                None,
            );
        }
    }
}

enum End {
    Died(std::io::Result<ExitStatus>),
    StartTimeout,
    Stop(StopMode),
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
