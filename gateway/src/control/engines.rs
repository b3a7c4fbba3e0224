//! The registry of launched engines and the rules of their lifecycle: start (checked request →
//! process → supervisor), stop (drain, then terminate), restart (a stopped or failed engine,
//! same settings and port), and the routing-pool membership of their workers.
//!
//! Locks: the engine list, then one engine's run state, never the other way round and never
//! across an `.await`. Pool changes made here take `membership`, which config reloads take too
//! ([`Engines::replace_pool`]), so a reload never drops an engine that is being registered.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::process::{self, LaunchSpec};
use super::record::{unix_now, Engine, Phase, Run, StopMode};
use super::types::{EngineInfo, StartEngine};
use crate::config::control::MAX_SEQS;
use crate::error::GatewayError;
use crate::state::AppState;

/// The launched engines (`AppState::engines`); engines are never forgotten, so a stopped or
/// failed one can be listed and restarted.
#[derive(Debug, Default)]
pub struct Engines {
    list: Mutex<Vec<Arc<Engine>>>,
    next_id: AtomicU64,
    /// Held by every pool change made for engines and by reloads (`membership`).
    pub(super) membership: Mutex<()>,
}

/// A 400 naming `field`.
fn invalid(field: &str, message: impl std::fmt::Display) -> GatewayError {
    GatewayError::invalid(format!("{field}: {message}"), Some(field))
}

/// `model` must be an existing GGUF file; returns its absolute path.
pub fn check_model(path: &Path) -> Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err("must be the path of a local GGUF file".into());
    }
    let abs = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = std::fs::metadata(&abs).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} does not exist", abs.display()),
        _ => format!("cannot read {}: {e}", abs.display()),
    })?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", abs.display()));
    }
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(
        &mut std::fs::File::open(&abs)
            .map_err(|e| format!("cannot read {}: {e}", abs.display()))?,
        &mut magic,
    )
    .map_err(|_| format!("{} is not a GGUF file (too short)", abs.display()))?;
    if &magic != b"GGUF" {
        return Err(format!(
            "{} is not a GGUF file (it does not start with `GGUF`)",
            abs.display()
        ));
    }
    Ok(abs)
}

impl Engines {
    /// Every launched engine, in start order.
    pub fn list(&self) -> Vec<EngineInfo> {
        self.all().iter().map(|e| e.info()).collect()
    }

    pub(super) fn all(&self) -> Vec<Arc<Engine>> {
        self.list.lock().clone()
    }

    /// Look an engine up by id (`engine-1`) or its worker id (`127.0.0.1:PORT`).
    pub fn find(&self, key: &str) -> Result<Arc<Engine>, GatewayError> {
        self.all()
            .into_iter()
            .find(|e| {
                let port = e.run.lock().port;
                e.id == key || (port > 0 && format!("127.0.0.1:{port}") == key)
            })
            .ok_or_else(|| GatewayError::NotFound(format!("engine {key}")))
    }

    /// The engine whose worker has this uid.
    pub fn engine_of(&self, worker_uid: u64) -> Option<String> {
        self.all().into_iter().find_map(|e| {
            let run = e.run.lock();
            run.worker
                .as_ref()
                .is_some_and(|w| w.uid == worker_uid)
                .then(|| e.id.clone())
        })
    }

    /// Engines that are running or stopping, with `list` locked.
    fn live(list: &[Arc<Engine>]) -> usize {
        list.iter().filter(|e| e.run.lock().live()).count()
    }

    /// Check a start request and launch the engine. Replies once the engine listens (its
    /// model is still loading: STARTING).
    pub async fn start(
        &self,
        state: &Arc<AppState>,
        req: StartEngine,
    ) -> Result<EngineInfo, GatewayError> {
        let cfg = state.config.load().control.clone();
        let max_seqs = req.max_seqs.unwrap_or(cfg.default_max_seqs);
        if !MAX_SEQS.contains(&max_seqs) {
            return Err(invalid("max_seqs", "must be 1..=1024"));
        }
        if req.threads.is_some_and(|t| !(1..=1024).contains(&t)) {
            return Err(invalid("threads", "must be 1..=1024"));
        }
        if let Some(n) = &req.served_model_name {
            if n.trim().is_empty() || n.len() > 256 || n.contains(char::is_whitespace) {
                return Err(invalid(
                    "served_model_name",
                    "must be 1..=256 characters without spaces",
                ));
            }
        }
        let port = req.port.unwrap_or(0);
        if port > 0 {
            let taken = state
                .pool
                .load()
                .workers
                .iter()
                .any(|w| w.spec.addr.port() == port && w.spec.addr.ip().is_loopback())
                || self.all().iter().any(|e| {
                    let run = e.run.lock();
                    run.live() && run.port == port
                });
            if taken {
                return Err(GatewayError::Conflict(format!(
                    "port {port} is already used by a worker of this gateway"
                )));
            }
        }
        let model = req.model.clone();
        let dirs = cfg.model_dirs.clone();
        let model = tokio::task::spawn_blocking(move || {
            if model.as_os_str().is_empty() {
                return Err(invalid("model", "must be the path of a local GGUF file"));
            }
            let confined = super::model_dirs::confine(&model, &dirs)
                .map_err(|e| GatewayError::Forbidden(format!("model: {e}")))?;
            check_model(&confined).map_err(|e| invalid("model", e))
        })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))??;
        let binary =
            process::find_engine_binary(&cfg.engine_binary).map_err(GatewayError::Internal)?;
        let launch = LaunchSpec {
            model,
            port,
            max_seqs,
            threads: req.threads,
            served_model_name: req.served_model_name,
        };
        let engine = {
            let mut list = self.list.lock();
            if Self::live(&list) >= cfg.max_engines {
                return Err(GatewayError::Conflict(format!(
                    "{} engines are running, the most control.max_engines allows; stop one first",
                    cfg.max_engines
                )));
            }
            let id = format!("engine-{}", self.next_id.fetch_add(1, Relaxed) + 1);
            let engine = Arc::new(Engine {
                id,
                tail: Arc::default(),
                run: Mutex::new(Run::new(launch)),
            });
            list.push(engine.clone());
            engine
        };
        tracing::info!(engine = %engine.id, binary = %binary.display(), "starting an engine");
        self.launch(state, &engine, &binary, port).await
    }

    /// Start a stopped or failed engine again with its settings (and its last port, so its
    /// worker id stays the same).
    pub async fn restart(
        &self,
        state: &Arc<AppState>,
        key: &str,
    ) -> Result<EngineInfo, GatewayError> {
        let engine = self.find(key)?;
        let cfg = state.config.load().control.clone();
        let binary =
            process::find_engine_binary(&cfg.engine_binary).map_err(GatewayError::Internal)?;
        let (requested, port) = {
            let list = self.list.lock();
            let live = Self::live(&list);
            let mut run = engine.run.lock();
            if run.live() {
                return Err(GatewayError::Conflict(format!(
                    "{} is {}; only a STOPPED or ERROR engine can be restarted (stop it first)",
                    engine.id,
                    run.state().as_str()
                )));
            }
            if live >= cfg.max_engines {
                return Err(GatewayError::Conflict(format!(
                    "{} engines are running, the most control.max_engines allows; stop one first",
                    cfg.max_engines
                )));
            }
            run.phase = Phase::Running;
            run.restarts += 1;
            (run.launch.port, run.port)
        };
        tracing::info!(engine = %engine.id, port, "restarting an engine");
        match self.launch(state, &engine, &binary, port).await {
            // Its old port was taken meanwhile; it had asked for any port, so take another.
            Err(_)
                if requested == 0
                    && port != 0
                    && engine
                        .tail
                        .lines()
                        .iter()
                        .any(|l| l.contains("cannot listen")) =>
            {
                engine.run.lock().phase = Phase::Running;
                self.launch(state, &engine, &binary, 0).await
            }
            r => r,
        }
    }

    /// Spawn the process of a new run and its supervisor; wait until it listens.
    async fn launch(
        &self,
        state: &Arc<AppState>,
        engine: &Arc<Engine>,
        binary: &Path,
        port: u16,
    ) -> Result<EngineInfo, GatewayError> {
        engine.tail.clear();
        let (generation, spec) = {
            let mut run = engine.run.lock();
            run.generation += 1;
            run.phase = Phase::Running;
            run.port = port;
            run.pid = None;
            run.worker = None;
            run.ready_once = false;
            run.exit = None;
            run.error = None;
            let mut spec = run.launch.clone();
            spec.port = port;
            (run.generation, spec)
        };
        let spawned = match process::spawn(binary, &spec, &engine.id, engine.tail.clone()) {
            Ok(s) => s,
            Err(e) => {
                let message = format!("cannot run {}: {e}", binary.display());
                engine.finish(generation, Phase::Failed, None, Some(message.clone()));
                return Err(GatewayError::Internal(message));
            }
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let (listening_tx, listening_rx) = oneshot::channel();
        {
            let mut run = engine.run.lock();
            run.pid = Some(spawned.pid);
            run.started = Some(Instant::now());
            run.started_at = Some(unix_now());
            if run.phase == Phase::Stopping {
                // A stop arrived while the process was being spawned.
                let _ = stop_tx.send(StopMode::Drain);
            } else {
                run.stop = Some(stop_tx);
            }
        }
        let task = tokio::spawn(super::supervisor::supervise(
            state.clone(),
            engine.clone(),
            generation,
            spawned,
            stop_rx,
            listening_tx,
        ));
        {
            let mut run = engine.run.lock();
            if run.generation == generation {
                run.task = Some(task);
            }
        }
        match listening_rx.await {
            Ok(Ok(())) => Ok(engine.info()),
            Ok(Err(message)) => Err(GatewayError::UpstreamFailed(format!(
                "{}: {message}",
                engine.id
            ))),
            Err(_) => Err(GatewayError::Internal(format!(
                "{}: its supervisor ended",
                engine.id
            ))),
        }
    }

    /// Stop an engine: no new requests from now on; the supervisor drains and terminates it
    /// (watch its state go DRAINING → STOPPED). Stopping a stopped engine changes nothing.
    pub fn stop(&self, state: &AppState, key: &str) -> Result<EngineInfo, GatewayError> {
        let engine = self.find(key)?;
        let (tx, worker) = {
            let mut run = engine.run.lock();
            if run.phase != Phase::Running {
                (None, None)
            } else {
                run.phase = Phase::Stopping;
                (run.stop.take(), run.worker.clone())
            }
        };
        if let Some(w) = worker {
            w.health.set_draining(true);
            state.publish_routable();
        }
        if let Some(tx) = tx {
            let _ = tx.send(StopMode::Drain);
            tracing::info!(engine = %engine.id, "stopping an engine");
        }
        Ok(engine.info())
    }

    /// The gateway is shutting down (and has drained): stop every engine and wait for them,
    /// at most `control.stop_grace_seconds` and a little more.
    pub async fn shutdown(&self, state: &AppState) {
        let mut tasks = Vec::new();
        for e in self.all() {
            let mut run = e.run.lock();
            if let Some(tx) = run.stop.take() {
                run.phase = Phase::Stopping;
                let _ = tx.send(StopMode::Now);
            }
            tasks.extend(run.task.take());
        }
        if tasks.is_empty() {
            return;
        }
        let grace = std::time::Duration::from_secs(state.config.load().control.stop_grace_seconds)
            + std::time::Duration::from_secs(2);
        tracing::info!(engines = tasks.len(), "stopping the launched engines");
        if tokio::time::timeout(grace, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!("engines did not stop in time; they get SIGKILL as the gateway exits");
        }
    }

    /// Fast shutdown: SIGTERM to every engine process, without waiting.
    pub fn terminate_all_now(&self) {
        for e in self.all() {
            if let Some(pid) = e.run.lock().pid {
                process::send_sigterm_now(pid);
            }
        }
    }
}

#[cfg(test)]
#[path = "engines_tests.rs"]
mod tests;
