//! The routing-pool membership of the engines' workers: registering an engine's worker,
//! taking it out, and config reloads that replace the pool but keep the running engines'
//! workers. Every such change holds [`Engines`]' `membership` lock, so a reload never drops
//! an engine that is being registered.

use std::sync::Arc;

use super::engines::Engines;
use super::record::Engine;
use crate::state::AppState;
use crate::worker::pool::PoolHandle;
use crate::worker::spec::WorkerSpec;
use crate::worker::{Worker, WorkerSource};

impl Engines {
    /// Add an engine's worker to the pool and to run `generation`, as one step for reloads.
    pub fn register(
        &self,
        pool: &PoolHandle,
        engine: &Engine,
        generation: u64,
        spec: WorkerSpec,
    ) -> Result<Arc<Worker>, String> {
        let _membership = self.membership.lock();
        let port = spec.addr.port();
        let worker = pool.add(WorkerSpec {
            source: WorkerSource::Engine,
            ..spec
        })?;
        let mut run = engine.run.lock();
        if run.generation == generation {
            run.worker = Some(worker.clone());
            run.port = port;
        }
        Ok(worker)
    }

    /// Take an engine's worker out of the pool (its in-flight requests keep their handle).
    pub fn unregister(&self, state: &AppState, worker: &Worker) {
        {
            let _membership = self.membership.lock();
            state.pool.remove(worker.uid);
        }
        state.publish_routable();
    }

    /// Set the pool to `specs` (a config reload) plus the workers of the running engines and
    /// those found by discovery, which keep their state.
    pub fn replace_pool(
        &self,
        pool: &PoolHandle,
        specs: Vec<WorkerSpec>,
    ) -> (Vec<Arc<Worker>>, Vec<Arc<Worker>>) {
        let _membership = self.membership.lock();
        let engines: Vec<u64> = self
            .all()
            .iter()
            .filter_map(|e| e.run.lock().worker.as_ref().map(|w| w.uid))
            .collect();
        // Decided inside the pool's own change, on the pool as it is then: a worker that
        // discovery adds or removes meanwhile is neither lost nor brought back.
        pool.replace_keeping(specs, |w| {
            engines.contains(&w.uid) || w.spec.source.is_discovered()
        })
    }
}
