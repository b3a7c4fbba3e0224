//! State several gateway replicas share through Redis (`[redis]`). Start at [`Shared`]: the
//! one handle in `AppState`. Without `[redis]` it is `local` and nothing here calls out.
//!
//! - [`client`]: the Redis connection (redis-rs's tokio connection manager), every call
//!   bounded by `redis.timeout_ms`, and the up/down state that keeps a failing Redis off the
//!   request path until the heartbeat reaches it again;
//! - [`heartbeat`]: each replica announces itself every `redis.heartbeat_ms`; the replicas
//!   heard from within `redis.replica_ttl_ms` are the live ones, which local limits divide by;
//! - [`gcra`]: the per-user and global token buckets as one atomic Lua script per request
//!   (GCRA on Redis's clock; a refusal writes nothing).
//!
//! While Redis is down or hanging the backend is `degraded` and limits follow
//! `redis.on_failure` (local buckets at limit ÷ live replicas by default).

pub mod client;
pub mod gcra;
pub mod heartbeat;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::config::{RateLimitConfig, RedisConfig, RedisFailure};
use crate::limits::{RateLimits, Scope};

pub use client::RedisClient;

/// Where shared state lives right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// No `[redis]`: this process alone.
    Local,
    /// Redis answers.
    Redis,
    /// Redis is configured but not answering: `redis.on_failure` applies.
    Degraded,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Local, Backend::Redis, Backend::Degraded];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Redis => "redis",
            Backend::Degraded => "degraded",
        }
    }
}

/// A limit check's answer.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Admit,
    /// Over a bucket: which, and when to retry.
    Limited(Scope, Duration),
    /// `redis.on_failure = "reject"` while Redis is down.
    Unavailable(Duration),
}

/// The shared-state handle (see the module doc).
pub struct Shared {
    pub replica_id: String,
    config: RedisConfig,
    client: Option<RedisClient>,
    /// Replicas heard from within `replica_ttl_ms`, this one included (1 without Redis).
    live_replicas: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("replica_id", &self.replica_id)
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Host name, process id and a random suffix: unique even for replicas in one process.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

impl Shared {
    pub fn new(config: &RedisConfig) -> Self {
        let client = config.url.as_deref().and_then(|url| {
            RedisClient::new(url, Duration::from_millis(config.timeout_ms))
                .inspect_err(|e| tracing::error!(error = %e, "redis.url: shared state stays local"))
                .ok()
        });
        Self {
            replica_id: config.replica_id.clone().unwrap_or_else(default_replica_id),
            config: config.clone(),
            client,
            live_replicas: AtomicUsize::new(1),
        }
    }

    pub fn backend(&self) -> Backend {
        match &self.client {
            None => Backend::Local,
            Some(c) if c.is_up() => Backend::Redis,
            Some(_) => Backend::Degraded,
        }
    }

    pub fn client(&self) -> Option<&RedisClient> {
        self.client.as_ref()
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Live replicas, this one included (the divisor of local limits).
    pub fn live_replicas(&self) -> usize {
        self.live_replicas.load(Relaxed).max(1)
    }

    pub(crate) fn set_live_replicas(&self, n: usize) {
        self.live_replicas.store(n.max(1), Relaxed);
    }

    /// A Redis key under `redis.key_prefix`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut k = self.config.key_prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// The local buckets for this config: with Redis configured, every rate is this replica's
    /// share (÷ live replicas, at least 1) — the fallback while Redis is down, and the
    /// per-worker limit always.
    pub fn local_limits(&self, cfg: &RateLimitConfig) -> RateLimits {
        if self.client.is_none() {
            return RateLimits::new(cfg);
        }
        RateLimits::new(&share(cfg, self.live_replicas()))
    }

    /// Check the per-user and global buckets for one request of `user` (a hash).
    pub async fn check(&self, cfg: &RateLimitConfig, local: &RateLimits, user: u64) -> Verdict {
        let from_local = |r: Result<(), (Scope, Duration)>| match r {
            Ok(()) => Verdict::Admit,
            Err((scope, wait)) => Verdict::Limited(scope, wait),
        };
        if !cfg.enabled {
            return Verdict::Admit;
        }
        let Some(client) = self.client.as_ref() else {
            return from_local(local.check(user));
        };
        if client.is_up() {
            match gcra::check(self, client, cfg, user).await {
                Ok(verdict) => {
                    local.checked.fetch_add(1, Relaxed);
                    if verdict != Verdict::Admit {
                        local.rejected.fetch_add(1, Relaxed);
                    }
                    return verdict;
                }
                Err(e) => tracing::debug!(error = %e, "shared limits: Redis failed, falling back"),
            }
        }
        match self.config.on_failure {
            RedisFailure::Local => from_local(local.check(user)),
            RedisFailure::Allow => Verdict::Admit,
            RedisFailure::Reject => {
                Verdict::Unavailable(Duration::from_millis(self.config.heartbeat_ms.max(1000)))
            }
        }
    }
}

/// One replica's share of each rate when `replicas` share the limits (rounded up, ≥ 1 where
/// the rate is set).
pub fn share(cfg: &RateLimitConfig, replicas: usize) -> RateLimitConfig {
    let n = u32::try_from(replicas.max(1)).unwrap_or(u32::MAX);
    let part = |v: u32| if v == 0 { 0 } else { v.div_ceil(n).max(1) };
    RateLimitConfig {
        enabled: cfg.enabled,
        global_rps: part(cfg.global_rps),
        global_burst: part(cfg.global_burst),
        per_user_rpm: part(cfg.per_user_rpm),
        per_worker_qps: part(cfg.per_worker_qps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_up_and_keep_zero_off() {
        let cfg = RateLimitConfig {
            enabled: true,
            global_rps: 100,
            global_burst: 200,
            per_user_rpm: 60,
            per_worker_qps: 0,
        };
        let s = share(&cfg, 3);
        assert_eq!(
            (
                s.global_rps,
                s.global_burst,
                s.per_user_rpm,
                s.per_worker_qps
            ),
            (34, 67, 20, 0)
        );
        assert_eq!(share(&cfg, 1), cfg);
        assert_eq!(share(&cfg, 0), cfg, "never divides by zero");
        assert_eq!(
            share(&cfg, 1000).per_user_rpm,
            1,
            "a set rate never drops to off"
        );
    }

    #[tokio::test]
    async fn without_redis_the_local_buckets_decide() {
        let s = Shared::new(&RedisConfig::default());
        assert_eq!(s.backend(), Backend::Local);
        let cfg = RateLimitConfig {
            per_user_rpm: 2,
            global_rps: 0,
            ..Default::default()
        };
        let local = s.local_limits(&cfg);
        assert_eq!(s.check(&cfg, &local, 1).await, Verdict::Admit);
        assert_eq!(s.check(&cfg, &local, 1).await, Verdict::Admit);
        assert!(matches!(
            s.check(&cfg, &local, 1).await,
            Verdict::Limited(Scope::User, _)
        ));
        let off = RateLimitConfig {
            enabled: false,
            ..cfg
        };
        assert_eq!(s.check(&off, &local, 1).await, Verdict::Admit);
    }

    #[test]
    fn replica_ids_are_unique_and_keys_prefixed() {
        let a = Shared::new(&RedisConfig::default());
        let b = Shared::new(&RedisConfig::default());
        assert_ne!(a.replica_id, b.replica_id);
        assert_eq!(a.key(&["rl", "g"]), "sagellm:rl:g");
    }
}
