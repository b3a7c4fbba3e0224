//! Kubernetes discovery (`mode = "k8s"`, cargo feature `k8s`): kube-runtime's watcher lists
//! and watches the EndpointSlices that `[discovery.k8s] selector` picks in one namespace, and
//! every change re-derives the workers from the whole set ([`targets`]):
//! - a ready endpoint is a worker (`http://<first address>:<port>`, id `ip:port`);
//! - a terminating one is kept but draining: no new requests, its streams finish;
//! - one that is gone (pod deleted, slice deleted) leaves; its in-flight requests end on their
//!   handle;
//! - a dropped watch resumes from the last resource version; a `410 Gone` makes the watcher
//!   re-list (other errors retry with backoff), and the re-listed set replaces the old one
//!   whole (`InitDone`), so a pod deleted while the watch was down does not linger;
//! - every `interval_seconds` the last set is applied again, so the pool converges to it
//!   whatever else changed membership meanwhile.
//!
//! A worker's models come from its pod's `model_label` annotation or label ([`k8s_pods`]),
//! else its slice's `model_label` (slices carry their Service's labels), else
//! `[discovery.k8s] models`, else the worker's `GET /v1/models`.
//!
//! [`k8s_pods`]: super::k8s_pods

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use pingora::server::ShutdownWatch;

use super::k8s_pods::PodModels;
use crate::config::discovery::K8sDiscoveryConfig;
use crate::state::AppState;
use crate::worker::spec::WorkerSpec;
use crate::worker::WorkerSource;

/// A worker an EndpointSlice lists.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub url: String,
    pub models: Vec<String>,
    /// The pod is shutting down: drain it.
    pub terminating: bool,
    /// The pod behind the endpoint (its `targetRef`), when it names one.
    pub pod: Option<String>,
}

/// The workers of these slices, sorted by URL (one per URL: a pod listed by two slices
/// while they are rebalanced counts once, ready if either says so).
pub fn targets<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    cfg: &K8sDiscoveryConfig,
) -> Vec<Target> {
    let mut by_url: BTreeMap<String, Target> = BTreeMap::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = if cfg.port_name.is_empty() {
            ports.first()
        } else {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(cfg.port_name.as_str()))
        };
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        let models = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(&cfg.model_label))
            .map(|m| vec![m.clone()])
            .unwrap_or_else(|| cfg.models.clone());
        let ipv6 = slice.address_type == "IPv6";
        for ep in &slice.endpoints {
            let Some(addr) = ep.addresses.first() else {
                continue;
            };
            let cond = ep.conditions.as_ref();
            let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
            // The API: an unset `ready` means ready, unless terminating.
            let ready = cond.and_then(|c| c.ready).unwrap_or(!terminating);
            if !ready && !terminating {
                continue; // not yet ready (starting, failing its readiness probe)
            }
            let url = if ipv6 {
                format!("http://[{addr}]:{port}")
            } else {
                format!("http://{addr}:{port}")
            };
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            let t = by_url.entry(url.clone()).or_insert(Target {
                url,
                models: models.clone(),
                terminating,
                pod,
            });
            t.terminating &= terminating || !ready;
        }
    }
    by_url.into_values().collect()
}

/// Set the pool's Kubernetes workers to `found`; terminating ones drain. `drained` holds the
/// URLs this discovery drained: one listed ready again is undrained (a drain from the
/// management API is left alone).
pub fn apply(state: &AppState, found: &[Target], drained: &mut HashSet<String>) {
    let specs: Vec<WorkerSpec> = found
        .iter()
        .filter_map(|t| {
            WorkerSpec::new(&t.url, 1, t.models.clone())
                .map_err(
                    |e| tracing::warn!(url = %t.url, error = %e, "discovered endpoint skipped"),
                )
                .ok()
        })
        .collect();
    let changed = super::sync(state, WorkerSource::K8s, specs);
    drained.retain(|url| found.iter().any(|t| &t.url == url));
    let mut flipped = false;
    for w in state.pool.load().workers.iter() {
        if w.spec.source != WorkerSource::K8s {
            continue;
        }
        let terminating = found.iter().any(|t| t.terminating && t.url == w.spec.url);
        if terminating && !w.health.is_draining() {
            tracing::info!(worker = %w.id, "pod terminating: worker drains");
            w.health.set_draining(true);
            drained.insert(w.spec.url.clone());
            flipped = true;
        } else if !terminating && drained.remove(&w.spec.url) {
            tracing::info!(worker = %w.id, "endpoint ready again: worker undrained");
            w.health.set_draining(false);
            flipped = true;
        }
    }
    if flipped && !changed {
        state.publish_routable();
    }
}

/// The API client: the configured kubeconfig, else in-cluster, else `$KUBECONFIG` /
/// `~/.kube/config`.
async fn client(cfg: &K8sDiscoveryConfig) -> Result<Client, String> {
    let config = match &cfg.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| format!("kubeconfig {path}: {e}"))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {path}: {e}"))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration: {e}"))?,
    };
    Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

fn key(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

/// Watch until shutdown; every `resync` the last set is applied again (a worker taken out by
/// the management API, or whose URL another source gave up, comes back). A configuration that
/// cannot make a client is reported and ends the task (the static workers still serve).
pub async fn run(
    state: Arc<AppState>,
    cfg: K8sDiscoveryConfig,
    resync: Duration,
    mut shutdown: ShutdownWatch,
) {
    let d = &state.discovery;
    let client = match client(&cfg).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Kubernetes discovery cannot start");
            d.failed(e);
            return;
        }
    };
    let namespace = if cfg.namespace.is_empty() {
        client.default_namespace().to_string()
    } else {
        cfg.namespace.clone()
    };
    tracing::info!(%namespace, selector = %cfg.selector, "Kubernetes discovery started");
    d.set_name(format!("{namespace}/{}", cfg.selector));
    let mut pods = PodModels::new(client.clone(), &namespace, &cfg.model_label);
    let api: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let mut events = watcher::watcher(api, watcher::Config::default().labels(&cfg.selector))
        .default_backoff()
        .boxed();
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, EndpointSlice>> = None;
    let mut found: Vec<Target> = Vec::new();
    let mut drained = HashSet::new();
    let mut synced = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => return,
            e = events.next() => e,
            _ = tokio::time::sleep(resync), if synced => {
                apply(&state, &found, &mut drained);
                continue;
            }
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Init) => {
                listing = Some(BTreeMap::new());
                continue;
            }
            Ok(Event::InitApply(s)) => {
                listing.get_or_insert_default().insert(key(&s), s);
                continue;
            }
            Ok(Event::InitDone) => slices = listing.take().unwrap_or_default(),
            Ok(Event::Apply(s)) => {
                slices.insert(key(&s), s);
            }
            Ok(Event::Delete(s)) => {
                slices.remove(&key(&s));
            }
            Err(e) => {
                tracing::warn!(error = %e, "Kubernetes watch failed: keeping the last good set (a 410 Gone re-lists)");
                d.failed(e.to_string());
                continue;
            }
        }
        d.answered();
        found = targets(slices.values(), &cfg);
        pods.resolve(&mut found).await;
        apply(&state, &found, &mut drained);
        synced = true;
    }
}

#[cfg(test)]
#[path = "k8s_tests.rs"]
mod tests;
