//! Periodic upkeep in the background: pruning idle rate-limit keys and expired sessions so
//! memory stays bounded under many distinct users.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::state::AppState;

/// How often idle keys are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

pub struct Housekeeping {
    pub state: Arc<AppState>,
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let limits = self.state.limits.load();
                    limits.prune();
                    tracing::debug!(users = limits.tracked_users(), "pruned idle rate-limit keys");
                    let expired = self.state.sessions.prune(crate::session::now_ms()).await;
                    let sessions = self.state.sessions.len().await;
                    tracing::debug!(expired, sessions, "pruned expired sessions");
                }
            }
        }
    }
}
