//! The pool: an immutable snapshot of the worker membership, swapped atomically with
//! `ArcSwap` when membership changes (config, API, engine start/stop). Workers that stay in the
//! fleet keep their `Arc<Worker>` (and so their load, statistics and health) across snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::breaker::BreakerSettings;
use super::spec::WorkerSpec;
use super::{Worker, WorkerSource};

#[derive(Debug, Default)]
pub struct Pool {
    /// Changes with every membership change (policies cache derived structures by it).
    pub generation: u64,
    pub workers: Vec<Arc<Worker>>,
}

impl Pool {
    /// Whether any member (in any state) serves `model`.
    pub fn serves(&self, model: &str) -> bool {
        self.workers.iter().any(|w| w.serves(model))
    }

    /// Indices of the workers that may take this request now: routable, admitted by their
    /// breaker, serving the model (any model when `None`), and not in `excluded` (already tried
    /// by this request, or passed over during this pick).
    pub fn eligible(
        &self,
        model: Option<&str>,
        excluded: &[u64],
        breaker: &BreakerSettings,
    ) -> Vec<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                !excluded.contains(&w.uid)
                    && model.is_none_or(|m| w.serves(m))
                    && w.is_eligible(breaker)
                    && !w.cooldown.active()
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Number of workers that can take requests now.
    pub fn routable_count(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.health.is_routable())
            .count()
    }

    /// Look a worker up by list index (`"0"`) or id (`"127.0.0.1:8001"`).
    pub fn find(&self, key: &str) -> Option<(usize, &Arc<Worker>)> {
        if let Ok(i) = key.parse::<usize>() {
            return self.workers.get(i).map(|w| (i, w));
        }
        self.workers
            .iter()
            .enumerate()
            .find(|(_, w)| w.id == key || w.spec.url == key)
    }

    /// Models served by the fleet, de-duplicated in first-seen order, with the first owner.
    pub fn models(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for w in &self.workers {
            let meta = w.meta();
            for (i, m) in meta.models.iter().enumerate() {
                if !out.iter().any(|(seen, _)| seen == m) {
                    let owner = meta.owners.get(i).filter(|o| !o.is_empty()).cloned();
                    out.push((
                        m.clone(),
                        owner.unwrap_or_else(|| meta.kind.as_str().to_string()),
                    ));
                }
            }
        }
        out
    }
}

/// The shared, swappable pool. Readers `load()`; writers are serialised by a mutex that the
/// request path never touches.
#[derive(Debug)]
pub struct PoolHandle {
    current: ArcSwap<Pool>,
    writer: Mutex<()>,
    generations: AtomicU64,
    /// Publishes the generation after every membership change (the prober listens).
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for PoolHandle {
    fn default() -> Self {
        Self {
            current: ArcSwap::default(),
            writer: Mutex::new(()),
            generations: AtomicU64::new(0),
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl PoolHandle {
    pub fn new(specs: Vec<WorkerSpec>) -> Self {
        let handle = Self::default();
        handle.replace(specs);
        handle
    }

    pub fn load(&self) -> arc_swap::Guard<Arc<Pool>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Pool> {
        self.current.load_full()
    }

    /// A receiver that sees every membership change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Set the membership to `specs`: same-URL workers are kept (weight updated), new ones are
    /// created in STARTING, missing ones dropped. Returns (added, removed) workers.
    pub fn replace(&self, specs: Vec<WorkerSpec>) -> (Vec<Arc<Worker>>, Vec<Arc<Worker>>) {
        self.replace_keeping(specs, |_| false)
    }

    /// [`Self::replace`], also keeping (as they are) the current workers for which `keep`
    /// holds and whose URL `specs` lacks — decided on the pool as it is when the change is
    /// made, so a concurrent discovery or engine change is never undone.
    pub fn replace_keeping(
        &self,
        specs: Vec<WorkerSpec>,
        keep: impl Fn(&Worker) -> bool,
    ) -> (Vec<Arc<Worker>>, Vec<Arc<Worker>>) {
        self.modify(|old| {
            let mut kept = Vec::with_capacity(specs.len());
            for spec in specs {
                if kept.iter().any(|w: &Arc<Worker>| w.spec.url == spec.url) {
                    continue; // duplicate entry
                }
                match old.iter().find(|w| {
                    w.spec.url == spec.url
                        && w.spec.models == spec.models
                        && w.spec.source == spec.source
                }) {
                    Some(w) => {
                        w.set_weight(spec.weight);
                        kept.push(w.clone());
                    }
                    None => kept.push(Arc::new(Worker::new(spec))),
                }
            }
            for w in old {
                if keep(w) && !kept.iter().any(|k| k.spec.url == w.spec.url) {
                    kept.push(w.clone());
                }
            }
            kept
        })
    }

    /// Add one worker; an existing URL is an error, unless discovery found it: the new
    /// source (the API, an engine) takes it over.
    pub fn add(&self, spec: WorkerSpec) -> Result<Arc<Worker>, String> {
        let mut created = None;
        self.modify(|old| {
            let mut next = old.to_vec();
            let w = Arc::new(Worker::new(spec.clone()));
            match old.iter().position(|w| w.spec.url == spec.url) {
                Some(i) if old[i].spec.source.is_discovered() => next[i] = w.clone(),
                Some(_) => return next,
                None => next.push(w.clone()),
            }
            created = Some(w);
            next
        });
        created.ok_or_else(|| format!("worker {} is already in the pool", spec.url))
    }

    /// Set the workers found by discovery `source` to `specs`: this source's workers missing
    /// from `specs` leave (their in-flight requests finish on their handle), new URLs join in
    /// STARTING, those still listed keep their state (weight updated; a change of models makes
    /// a new worker). A URL already in the pool from another source (the config, the API, an
    /// engine) stays that source's: it is neither duplicated nor ever removed here. Returns
    /// (added, removed).
    pub fn sync_discovered(
        &self,
        source: WorkerSource,
        specs: Vec<WorkerSpec>,
    ) -> (Vec<Arc<Worker>>, Vec<Arc<Worker>>) {
        self.modify(|old| {
            let mut next: Vec<Arc<Worker>> = old
                .iter()
                .filter(|w| w.spec.source != source || specs.iter().any(|s| s.url == w.spec.url))
                .cloned()
                .collect();
            for spec in specs {
                match next.iter().position(|w| w.spec.url == spec.url) {
                    Some(i) if next[i].spec.source == source => {
                        if next[i].spec.models == spec.models {
                            next[i].set_weight(spec.weight);
                        } else {
                            next[i] = Arc::new(Worker::new(WorkerSpec { source, ..spec }));
                        }
                    }
                    Some(_) => {}
                    None => next.push(Arc::new(Worker::new(WorkerSpec { source, ..spec }))),
                }
            }
            next
        })
    }

    /// Remove the worker with this uid; returns it.
    pub fn remove(&self, uid: u64) -> Option<Arc<Worker>> {
        let mut removed = None;
        self.modify(|old| {
            old.iter()
                .filter(|w| {
                    if w.uid == uid {
                        removed = Some((*w).clone());
                        false
                    } else {
                        true
                    }
                })
                .cloned()
                .collect()
        });
        removed
    }

    fn modify(
        &self,
        f: impl FnOnce(&[Arc<Worker>]) -> Vec<Arc<Worker>>,
    ) -> (Vec<Arc<Worker>>, Vec<Arc<Worker>>) {
        let _writer = self.writer.lock();
        let old = self.current.load_full();
        let workers = f(&old.workers);
        let added = workers
            .iter()
            .filter(|w| !old.workers.iter().any(|o| o.uid == w.uid))
            .cloned()
            .collect();
        let removed: Vec<Arc<Worker>> = old
            .workers
            .iter()
            .filter(|o| !workers.iter().any(|w| w.uid == o.uid))
            .cloned()
            .collect();
        // Requests still running on a removed worker keep their `Arc`; it gets nothing new.
        removed.iter().for_each(|w| w.health.set_stopped());
        let generation = self.generations.fetch_add(1, Relaxed) + 1;
        self.current.store(Arc::new(Pool {
            generation,
            workers,
        }));
        self.changes.send_replace(generation);
        (added, removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::state::HealthThresholds;
    use crate::worker::WorkerMeta;

    fn spec(port: u16, weight: u32) -> WorkerSpec {
        WorkerSpec::new(&format!("http://127.0.0.1:{port}"), weight, vec![]).unwrap()
    }

    #[test]
    fn replace_keeps_existing_workers() {
        let h = PoolHandle::new(vec![spec(1, 1), spec(2, 1)]);
        let first = h.load_full();
        let uid2 = first.workers[1].uid;
        let (added, removed) = h.replace(vec![spec(2, 5), spec(3, 1)]);
        let now = h.load();
        assert!(now.generation > first.generation);
        assert_eq!(now.workers[0].uid, uid2, "same URL keeps its worker");
        assert_eq!(now.workers[0].weight(), 5);
        assert_eq!(added.len(), 1);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].spec.addr.port(), 1);
    }

    #[test]
    fn eligibility_filters_state_model_and_tried() {
        let h = PoolHandle::new(vec![spec(1, 1), spec(2, 1), spec(3, 1)]);
        let p = h.load();
        let t = HealthThresholds {
            failures: 1,
            recoveries: 1,
        };
        for (i, w) in p.workers.iter().enumerate() {
            w.health.record(true, t);
            let model = if i == 2 { "b" } else { "a" };
            w.set_meta(WorkerMeta {
                models: vec![model.into()],
                owners: vec!["vllm".into()],
                ..Default::default()
            });
        }
        let b = BreakerSettings::default();
        assert_eq!(p.eligible(Some("a"), &[], &b), vec![0, 1]);
        assert_eq!(p.eligible(Some("a"), &[p.workers[0].uid], &b), vec![1]);
        assert_eq!(p.eligible(None, &[], &b), vec![0, 1, 2]);
        p.workers[1].health.set_draining(true);
        assert_eq!(p.eligible(Some("a"), &[], &b), vec![0]);
        for _ in 0..5 {
            p.workers[0]
                .breaker
                .record(&b, crate::worker::breaker::Admission::Normal, false);
        }
        assert_eq!(
            p.eligible(Some("a"), &[], &b),
            Vec::<usize>::new(),
            "an open breaker excludes"
        );
        assert!(p.serves("b") && !p.serves("c"));
        assert_eq!(
            p.models(),
            vec![
                ("a".to_string(), "vllm".to_string()),
                ("b".into(), "vllm".into())
            ]
        );
        assert_eq!(p.find("2").unwrap().0, 2);
        assert_eq!(p.find("127.0.0.1:2").unwrap().0, 1);
        assert!(p.find("9").is_none());
    }

    #[test]
    fn discovery_adds_removes_only_its_own_and_static_wins() {
        let h = PoolHandle::new(vec![spec(1, 1)]);
        let dns = WorkerSource::Dns;
        let (added, removed) = h.sync_discovered(dns, vec![spec(1, 1), spec(2, 3), spec(3, 1)]);
        assert_eq!(
            (added.len(), removed.len()),
            (2, 0),
            "port 1 is static already"
        );
        let p = h.load_full();
        let sources: Vec<_> = p.workers.iter().map(|w| w.spec.source).collect();
        assert_eq!(sources, [WorkerSource::Static, dns, dns]);
        assert_eq!(p.workers[1].weight(), 3);
        let uid3 = p.workers[2].uid;
        // Port 2 leaves, port 3 keeps its worker, the static one never leaves.
        let (added, removed) = h.sync_discovered(dns, vec![spec(3, 2)]);
        assert_eq!((added.len(), removed.len()), (0, 1));
        assert_eq!(removed[0].spec.addr.port(), 2);
        let p = h.load_full();
        assert_eq!(p.workers.len(), 2);
        assert_eq!(p.workers[1].uid, uid3);
        assert_eq!(p.workers[1].weight(), 2);
        let (_, removed) = h.sync_discovered(dns, vec![]);
        assert_eq!(removed.len(), 1);
        assert_eq!(h.load().workers.len(), 1, "the static worker stays");
        assert_eq!(h.load().workers[0].spec.source, WorkerSource::Static);
    }

    #[test]
    fn discovered_workers_give_way_and_follow_their_models() {
        let h = PoolHandle::new(vec![spec(1, 1)]);
        let k8s = WorkerSource::K8s;
        h.sync_discovered(k8s, vec![spec(2, 1), spec(3, 1)]);
        let uid2 = h.load().workers[1].uid;
        // The API takes over a discovered URL; discovery then leaves it alone.
        let api = h
            .add(WorkerSpec {
                source: WorkerSource::Api,
                ..spec(2, 1)
            })
            .unwrap();
        assert_ne!(api.uid, uid2);
        assert_eq!(h.load().workers.len(), 3);
        let (added, removed) = h.sync_discovered(k8s, vec![spec(3, 1)]);
        assert!(
            added.is_empty() && removed.is_empty(),
            "port 2 is the API's now"
        );
        // A reload keeps discovered workers (kept as they are) unless the config names them.
        let uid3 = h.load().workers[2].uid;
        h.replace_keeping(vec![spec(1, 1)], |w| w.spec.source.is_discovered());
        let p = h.load_full();
        assert_eq!(p.workers.len(), 2, "the API's worker goes with the reload");
        assert_eq!(p.workers[1].uid, uid3);
        h.replace_keeping(vec![spec(1, 1), spec(3, 1)], |w| {
            w.spec.source.is_discovered()
        });
        assert_eq!(h.load().workers[1].spec.source, WorkerSource::Static);
        assert_eq!(h.load().workers.len(), 2, "the config's entry wins, once");
        // New models for a discovered URL: a new worker with them.
        h.sync_discovered(k8s, vec![spec(4, 1)]);
        let uid4 = h.load().workers[2].uid;
        let with_models = WorkerSpec {
            models: vec!["llama".into()],
            ..spec(4, 1)
        };
        let (added, removed) = h.sync_discovered(k8s, vec![with_models]);
        assert_eq!((added.len(), removed.len()), (1, 1));
        assert_ne!(h.load().workers[2].uid, uid4);
        assert_eq!(h.load().workers[2].spec.models, ["llama"]);
    }

    #[test]
    fn add_and_remove() {
        let h = PoolHandle::new(vec![spec(1, 1)]);
        let w = h.add(spec(2, 1)).unwrap();
        assert!(h.add(spec(2, 1)).is_err());
        assert_eq!(h.load().workers.len(), 2);
        assert_eq!(h.remove(w.uid).unwrap().uid, w.uid);
        assert_eq!(h.load().workers.len(), 1);
        assert!(h.remove(w.uid).is_none());
    }
}
