//! Live configuration changes: from the watched config file ([`watch`]) and from
//! `PUT /api/config` ([`patch`]). Both end in [`apply`], which validates the whole new config
//! first and then swaps in what changed — routing policy, rate limits, keys, the worker list —
//! without touching requests in flight. A rejected change leaves the live config as it was
//! and is reported in [`ReloadStatus::last_error`] (`GET /api/config`) and the log.
//!
//! `server.*` (listen address, threads, grace period) is fixed at start: a change there is
//! reported in `restart_required` and not applied.

pub mod patch;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::config::sources::{self, Overrides};
use crate::config::{Config, ConfigError};
use crate::control::Engines;
use crate::limits::RateLimits;
use crate::routing::{self, Policy};
use crate::state::AppState;
use crate::worker::pool::PoolHandle;

/// Where the running config came from, so the file can be re-read with the same overrides.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub env: Overrides,
    pub flags: Overrides,
}

/// A rejected configuration change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReloadError {
    /// `file` or `api`.
    pub source: String,
    /// The offending field, e.g. `routing.strategy`.
    pub field: String,
    pub message: String,
    /// Unix time (seconds).
    pub at: u64,
}

/// How configuration changes went (shown by `GET /api/config`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// The watched config file, if the gateway was started from one.
    pub path: Option<PathBuf>,
    /// Changes applied since start (file and API).
    pub reloads: u64,
    /// Unix time (seconds) of the last applied change.
    pub last_reload_at: Option<u64>,
    /// The last rejected change; cleared by the next successful one.
    pub last_error: Option<ReloadError>,
    /// Changed settings that only take effect after a restart.
    pub restart_required: Vec<String>,
    #[serde(skip)]
    pub source: Option<ConfigSource>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The parts of the live state a configuration change swaps.
pub(crate) struct Targets<'a> {
    pub config: &'a ArcSwap<Config>,
    pub policy: &'a ArcSwap<Box<dyn Policy>>,
    pub limits: &'a ArcSwap<RateLimits>,
    /// Local buckets are this replica's share when replicas share limits through Redis.
    pub shared: &'a crate::shared::Shared,
    pub auth: &'a ArcSwap<Auth>,
    pub quotas: &'a ArcSwap<crate::quota::Quotas>,
    pub pool: &'a PoolHandle,
    /// Launched engines stay in the pool when the configured worker list changes.
    pub engines: &'a Engines,
}

impl<'a> Targets<'a> {
    fn of(state: &'a AppState) -> Self {
        Self {
            config: &state.config,
            policy: &state.policy,
            limits: &state.limits,
            shared: &state.shared,
            auth: &state.auth,
            quotas: &state.quotas,
            pool: &state.pool,
            engines: &state.engines,
        }
    }
}

/// What a change did.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Applied {
    /// Changed settings that only take effect after a restart.
    pub restart: Vec<String>,
    /// The sections that changed (`routing`, `workers`, …).
    pub changed: Vec<&'static str>,
}

/// Validate `new` and make it the live config; `origin` is `file` or `api`. On error nothing
/// changes and the error is recorded.
pub fn apply(state: &AppState, new: Config, origin: &str) -> Result<(), ConfigError> {
    let mut status = state.reload.lock(); // one change at a time
    let result = swap_in(&Targets::of(state), new);
    if result
        .as_ref()
        .is_ok_and(|a| a.changed.contains(&"workers"))
    {
        state.publish_routable();
    }
    match &result {
        Ok(Applied { restart, .. }) => {
            status.reloads += 1;
            status.last_reload_at = Some(unix_now());
            status.last_error = None;
            for r in restart {
                if !status.restart_required.contains(r) {
                    status.restart_required.push(r.clone());
                }
            }
        }
        Err(e) => set_error(&mut status, origin, e),
    }
    result.map(|_| ())
}

/// Record a change that failed before it could be applied (unreadable or unparsable file).
pub fn record_error(state: &AppState, origin: &str, e: &ConfigError) {
    set_error(&mut state.reload.lock(), origin, e);
}

fn set_error(status: &mut ReloadStatus, origin: &str, e: &ConfigError) {
    tracing::warn!(origin, field = %e.field, error = %e.message, "configuration change rejected, the previous configuration stays live");
    status.last_error = Some(ReloadError {
        source: origin.to_string(),
        field: e.field.clone(),
        message: e.message.clone(),
        at: unix_now(),
    });
}

/// Re-read the config file with the start-up overrides and apply it.
pub fn reload_file(state: &AppState) -> Result<(), ConfigError> {
    let Some(src) = state.reload.lock().source.clone() else {
        return Ok(());
    };
    match sources::load(Some(&src.path), &src.env, &src.flags) {
        Ok((config, _)) => apply(state, config, "file"),
        Err(e) => {
            record_error(state, "file", &e);
            Err(e)
        }
    }
}

/// The swap itself: everything is checked before anything changes.
pub(crate) fn swap_in(live: &Targets<'_>, mut new: Config) -> Result<Applied, ConfigError> {
    new.validate()?;
    let old = live.config.load_full();
    let specs = if new.workers != old.workers {
        Some(new.worker_specs()?)
    } else {
        None
    };
    let mut restart = Vec::new();
    if new.server != old.server {
        restart.push("server".to_string());
        new.server = old.server.clone();
    }
    if new.upstream.connect_timeout_ms != old.upstream.connect_timeout_ms
        || new.upstream.idle_timeout_ms != old.upstream.idle_timeout_ms
    {
        // The proxy path reads them per request; the gateway's own client keeps its start-up
        // values for large-body forwarding and probes.
        restart.push("upstream (for bodies over 64 KiB and probes)".to_string());
    }
    if new.upstream.ca_file != old.upstream.ca_file {
        restart.push("upstream.ca_file".to_string());
        new.upstream.ca_file = old.upstream.ca_file.clone();
    }
    if new.redis != old.redis {
        // The connection and the replica's id are made once, at start-up.
        restart.push("redis".to_string());
        new.redis = old.redis.clone();
    }
    if new.discovery != old.discovery {
        // The resolver and its task are made once, at start-up.
        restart.push("discovery".to_string());
        new.discovery = old.discovery.clone();
    }
    if new.telemetry != old.telemetry {
        // The exporter is built once, at start-up.
        restart.push("telemetry".to_string());
        new.telemetry = old.telemetry.clone();
    }
    let mut changed = Vec::new();
    if new.routing != old.routing {
        live.policy.store(Arc::new(routing::build(&new.routing)));
        changed.push("routing");
    }
    if new.rate_limit != old.rate_limit {
        live.limits
            .store(Arc::new(live.shared.local_limits(&new.rate_limit)));
        changed.push("rate_limit");
    }
    if new.auth != old.auth || new.quotas != old.quotas {
        live.auth.store(Arc::new(crate::auth::for_config(&new)));
        changed.push("auth");
    }
    if new.quotas != old.quotas {
        let rebuilt = live.quotas.load().rebuilt(&new.quotas);
        live.quotas.store(Arc::new(rebuilt));
        changed.push("quotas");
    }
    for (name, differs) in [
        ("limits", new.limits != old.limits),
        ("health", new.health != old.health),
        ("upstream", new.upstream != old.upstream),
        ("retry", new.retry != old.retry),
        (
            "circuit_breaker",
            new.circuit_breaker != old.circuit_breaker,
        ),
    ] {
        if differs {
            changed.push(name);
        }
    }
    live.config.store(Arc::new(new));
    if let Some(specs) = specs {
        // Launched engines are not in the config's list: keep them.
        let (added, removed) = live.engines.replace_pool(live.pool, specs);
        tracing::info!(
            added = added.len(),
            removed = removed.len(),
            "worker list changed"
        );
        changed.push("workers");
    }
    tracing::info!(changed = %changed.join(","), strategy = live.policy.load().name(), "configuration applied");
    Ok(Applied { restart, changed })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
