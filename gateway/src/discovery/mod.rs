//! Workers found where they run (`[discovery]`): with `mode = "dns"` a background task looks
//! the discovery name up on an interval (sooner when the records' TTL runs out first); with
//! `mode = "k8s"` it watches EndpointSlices ([`k8s`]). Either sets the pool's workers of its
//! source to what it found ([`PoolHandle::sync_discovered`]).
//!
//! Start at [`Discovery`] (the task), then [`dns`] (one lookup) or [`k8s`] (the watch). Rules:
//! - a discovered worker is a worker like any other: same health checks, breakers, load
//!   scraping and model discovery; its id is its `ip:port`, so every replica that resolves the
//!   same records gets the same ids (and consistent-hash keys agree);
//! - the static list, the management API and launched engines win: a URL they hold is never
//!   duplicated nor removed by discovery, and a config reload keeps the discovered workers;
//! - a lookup that gets no answer (timeout, refused, SERVFAIL) keeps the last good set; an
//!   answer without records (NXDOMAIN, no data) empties it — the Service scaled to zero;
//! - a worker whose record disappears leaves the pool at once; its in-flight requests finish
//!   on their handle.
//!
//! [`PoolHandle::sync_discovered`]: crate::worker::pool::PoolHandle::sync_discovered

pub mod dns;
#[cfg(feature = "k8s")]
pub mod k8s;
#[cfg(feature = "k8s")]
pub mod k8s_pods;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::{Deserialize, Serialize};

use crate::config::{DiscoveryConfig, DiscoveryMode};
use crate::state::AppState;
use crate::worker::spec::WorkerSpec;
use crate::worker::WorkerSource;
use dns::{DnsSource, Endpoint};

/// After a failed lookup, try again this soon (or at the interval, if shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// Never refresh more often than this, whatever the TTL.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// `GET /api/status` → `discovery`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DiscoveryStatus {
    /// `static`, `dns` or `k8s`.
    pub mode: String,
    /// The name looked up (`dns`), the namespace and selector watched (`k8s`), else empty.
    pub name: String,
    /// Workers in the pool that discovery added.
    pub workers: usize,
    pub lookups_ok: u64,
    pub lookups_failed: u64,
    /// Why the latest lookup failed; `None` once one succeeds again.
    pub last_error: Option<String>,
}

/// Discovery's counters and latest outcome, read by `/api/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct DiscoveryState {
    pub lookups_ok: AtomicU64,
    pub lookups_failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// What is watched, once known (the Kubernetes namespace may come from the kubeconfig).
    name: Mutex<Option<String>>,
}

impl DiscoveryState {
    pub fn set_name(&self, name: String) {
        *self.name.lock() = Some(name);
    }

    /// An answer (a lookup, a watch event) was applied.
    pub fn answered(&self) {
        self.lookups_ok.fetch_add(1, Relaxed);
        self.last_error.lock().take();
    }

    /// A lookup or the watch failed: the last good set stays.
    pub fn failed(&self, error: String) {
        self.lookups_failed.fetch_add(1, Relaxed);
        *self.last_error.lock() = Some(error);
    }

    pub fn status(&self, cfg: &DiscoveryConfig, state: &AppState) -> DiscoveryStatus {
        let (mode, name) = match cfg.mode {
            DiscoveryMode::Static => ("static", String::new()),
            DiscoveryMode::Dns => ("dns", cfg.dns.name.clone()),
            DiscoveryMode::K8s => (
                "k8s",
                self.name
                    .lock()
                    .clone()
                    .unwrap_or_else(|| format!("{}/{}", cfg.k8s.namespace, cfg.k8s.selector)),
            ),
        };
        DiscoveryStatus {
            mode: mode.into(),
            name,
            workers: discovered_count(state),
            lookups_ok: self.lookups_ok.load(Relaxed),
            lookups_failed: self.lookups_failed.load(Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }
}

/// Workers of the pool that came from discovery.
pub fn discovered_count(state: &AppState) -> usize {
    state
        .pool
        .load()
        .workers
        .iter()
        .filter(|w| w.spec.source.is_discovered())
        .count()
}

/// Set the pool's DNS workers to `found` (with `models`, empty = ask each worker).
pub fn apply(state: &AppState, found: &[Endpoint], models: &[String]) {
    let specs: Vec<WorkerSpec> = found
        .iter()
        .filter_map(|e| {
            WorkerSpec::new(&format!("http://{}", e.addr), e.weight, models.to_vec())
                .map_err(|err| tracing::warn!(addr = %e.addr, error = %err, "discovered address skipped"))
                .ok()
        })
        .collect();
    sync(state, WorkerSource::Dns, specs);
}

/// Set the pool's workers of `source` to `specs`, logging who came and went; returns whether
/// any left (the routable count was then re-published).
pub fn sync(state: &AppState, source: WorkerSource, specs: Vec<WorkerSpec>) -> bool {
    let (added, removed) = state.pool.sync_discovered(source, specs);
    for w in &added {
        tracing::info!(worker = %w.id, source = source.as_str(), "worker discovered");
    }
    for w in &removed {
        tracing::info!(worker = %w.id, in_flight = w.load.inflight(), "discovered worker gone: it leaves once its requests end");
    }
    if !removed.is_empty() {
        state.publish_routable();
    }
    !removed.is_empty()
}

/// The background service (idle with `mode = "static"`).
pub struct Discovery {
    pub state: Arc<AppState>,
}

impl Discovery {
    /// One refresh; returns how long to wait before the next.
    pub async fn refresh(&self, source: &DnsSource, cfg: &DiscoveryConfig) -> Duration {
        let interval = Duration::from_secs(cfg.interval_seconds);
        let d = &self.state.discovery;
        match source.lookup().await {
            Ok(found) => {
                if d.last_error.lock().is_some() {
                    tracing::info!(name = %cfg.dns.name, "DNS discovery answers again");
                }
                d.answered();
                apply(&self.state, &found.endpoints, &cfg.dns.models);
                let ttl = found.valid_until.saturating_duration_since(Instant::now());
                ttl.clamp(MIN_REFRESH, interval.max(MIN_REFRESH))
            }
            Err(e) => {
                if d.last_error.lock().as_deref() != Some(e.as_str()) {
                    tracing::warn!(name = %cfg.dns.name, error = %e, "DNS discovery lookup failed: keeping the last good set");
                }
                d.failed(e);
                RETRY_AFTER_FAILURE.min(interval)
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let cfg = self.state.config.load().discovery.clone();
        match cfg.mode {
            DiscoveryMode::Static => return,
            DiscoveryMode::Dns => {}
            #[cfg(feature = "k8s")]
            DiscoveryMode::K8s => {
                let resync = Duration::from_secs(cfg.interval_seconds);
                return k8s::run(self.state.clone(), cfg.k8s, resync, shutdown).await;
            }
            // Refused by the config's validation in a build without the feature.
            #[cfg(not(feature = "k8s"))]
            DiscoveryMode::K8s => return,
        }
        let source = match DnsSource::new(&cfg.dns) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "DNS discovery cannot start");
                self.state.discovery.failed(e);
                return;
            }
        };
        tracing::info!(name = %cfg.dns.name, srv = cfg.dns.uses_srv(), "DNS discovery started");
        loop {
            let wait = self.refresh(&source, &cfg).await;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
