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
        mut specs: Vec<WorkerSpec>,
    ) -> (Vec<Arc<Worker>>, Vec<Arc<Worker>>) {
        let _membership = self.membership.lock();
        let current = pool.load_full();
        for e in self.all() {
            let run = e.run.lock();
            if let Some(w) = &run.worker {
                let present = current.workers.iter().any(|c| c.uid == w.uid);
                if present && !specs.iter().any(|s| s.url == w.spec.url) {
                    specs.push(w.spec.clone());
                }
            }
        }
        for w in &current.workers {
            if w.spec.source.is_discovered() && !specs.iter().any(|s| s.url == w.spec.url) {
                specs.push(w.spec.clone());
            }
        }
        pool.replace(specs)
    }
}
