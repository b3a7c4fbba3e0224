//! Each replica announces itself in a Redis sorted set every `redis.heartbeat_ms` (score: the
//! time on Redis's clock) and counts the members heard from within `redis.replica_ttl_ms`:
//! the live replicas, which the local limits divide by. The same call is the health check
//! that marks Redis up again after a failure. On shutdown the replica leaves the set, so the
//! others' share grows at once.

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use redis::Script;

use super::client::CallError;
use super::Shared;
use crate::state::AppState;

/// KEYS: the replica set. ARGV: this replica's id, the TTL in ms. Returns the live count.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - ttl))
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
";

static BEAT: LazyLock<Script> = LazyLock::new(|| Script::new(SCRIPT));

/// One heartbeat: announce this replica and return how many are live.
pub async fn beat(shared: &Shared) -> Result<usize, CallError> {
    let Some(client) = shared.client() else {
        return Ok(1);
    };
    client.connect()?;
    let key = shared.key(&["replicas"]);
    let id = shared.replica_id.clone();
    let ttl = shared.config().replica_ttl_ms;
    let n: usize = client
        .call(|mut conn| async move {
            BEAT.key(&key)
                .arg(&id)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    client.set_up(true);
    Ok(n)
}

/// Leave the replica set (best effort, at shutdown).
async fn leave(shared: &Shared) {
    if let Some(client) = shared.client().filter(|c| c.is_up()) {
        let key = shared.key(&["replicas"]);
        let id = shared.replica_id.clone();
        let _ = client
            .call(|mut conn| async move {
                redis::cmd("ZREM")
                    .arg(&key)
                    .arg(&id)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }
}

/// The background service (runs only with `[redis]`).
pub struct Heartbeat {
    pub state: Arc<AppState>,
}

impl Heartbeat {
    /// One tick: beat, and rebuild the local buckets when the live count changed.
    pub async fn tick(&self) {
        let shared = &self.state.shared;
        match beat(shared).await {
            Ok(n) if n.max(1) != shared.live_replicas() => {
                tracing::info!(replicas = n, "live gateway replicas changed");
                shared.set_live_replicas(n);
                let cfg = self.state.config.load();
                self.state
                    .limits
                    .store(Arc::new(shared.local_limits(&cfg.rate_limit)));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "Redis heartbeat failed"),
        }
    }
}

#[async_trait]
impl BackgroundService for Heartbeat {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if self.state.shared.client().is_none() {
            return;
        }
        let every = Duration::from_millis(self.state.shared.config().heartbeat_ms);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    leave(&self.state.shared).await;
                    return;
                }
                _ = tick.tick() => self.tick().await,
            }
        }
    }
}
