//! The background service that reloads the listener's certificate when its files change.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::certs::{load_pair, stamp};
use super::CertStore;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Checks the files every `interval`; see the module docs.
pub struct Rotation {
    pub store: Arc<CertStore>,
    pub interval: Duration,
    pub state: Arc<AppState>,
}

impl Rotation {
    /// One check: reload when a file changed since the last attempt. Returns whether the
    /// served certificate was replaced.
    pub fn check(store: &CertStore, metrics: &Metrics) -> bool {
        let now = (stamp(&store.cert_file), stamp(&store.key_file));
        {
            let mut seen = store.seen.lock();
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        match load_pair(&store.cert_file, &store.key_file) {
            Ok(key) => {
                store.replace(key);
                metrics.tls_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(cert_file = %store.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                metrics.tls_reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "TLS certificate not reloaded; still serving the previous one");
                false
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Rotation {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let store = self.store.clone();
                    let state = self.state.clone();
                    // File reads off the runtime's threads.
                    let _ = tokio::task::spawn_blocking(move || Rotation::check(&store, &state.metrics)).await;
                }
            }
        }
    }
}
