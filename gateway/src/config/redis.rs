//! `[redis]`: state shared by several gateway replicas (rate limits, the replica count).
//! Off unless a URL is set, in the file or as `LLM_REDIS_URL`; then every replica pointed at
//! the same Redis admits as one gateway. Read at start-up: a change needs a restart.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

/// What the limits do while Redis cannot be reached.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Local buckets at each limit ÷ the replicas last seen alive (the default).
    #[default]
    Local,
    /// Admit without the per-user and global limits until Redis is back.
    Allow,
    /// Refuse limited requests with `503` until Redis is back.
    Reject,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` is not supported). Unset: all
    /// state stays in this process. Shown redacted.
    pub url: Option<String>,
    /// Prefix of every key the gateway writes, so several fleets can share one Redis.
    pub key_prefix: String,
    /// One Redis call's time limit (a request never waits longer for Redis).
    pub timeout_ms: u64,
    /// How often this replica announces itself and checks Redis.
    pub heartbeat_ms: u64,
    /// A replica not heard from for this long no longer counts as live.
    pub replica_ttl_ms: u64,
    /// What the limits do while Redis is down: `local`, `allow` or `reject`.
    pub on_failure: RedisFailure,
    /// This replica's name in Redis and in `/api/status` (default: host name, process id
    /// and a random suffix).
    pub replica_id: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "sagellm".into(),
            timeout_ms: 50,
            heartbeat_ms: 250,
            replica_ttl_ms: 2_000,
            on_failure: RedisFailure::Local,
            replica_id: None,
        }
    }
}

impl RedisConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            check(
                url.starts_with("redis://") || url.starts_with("redis+unix://"),
                "redis.url",
                "must start with redis:// (or redis+unix://)",
            )?;
            check(
                ::redis::Client::open(url.as_str()).is_ok(),
                "redis.url",
                "is not a valid Redis URL",
            )?;
        }
        check(
            !self.key_prefix.is_empty() && !self.key_prefix.contains(char::is_whitespace),
            "redis.key_prefix",
            "must be a non-empty word",
        )?;
        check(
            (1..=10_000).contains(&self.timeout_ms),
            "redis.timeout_ms",
            "must be 1..=10000",
        )?;
        check(
            (10..=60_000).contains(&self.heartbeat_ms),
            "redis.heartbeat_ms",
            "must be 10..=60000",
        )?;
        check(
            self.replica_ttl_ms > self.heartbeat_ms,
            "redis.replica_ttl_ms",
            "must be longer than redis.heartbeat_ms",
        )?;
        check(
            self.replica_id
                .as_ref()
                .is_none_or(|id| !id.is_empty() && id.len() <= 128),
            "redis.replica_id",
            "must be 1..=128 characters",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_bounds_are_checked_by_name() {
        let ok = RedisConfig {
            url: Some("redis://user:pw@127.0.0.1:6379/2".into()),
            ..Default::default()
        };
        ok.validate().unwrap();
        RedisConfig::default().validate().unwrap();
        let field = |c: RedisConfig| c.validate().unwrap_err().field;
        let bad_url = |u: &str| RedisConfig {
            url: Some(u.into()),
            ..Default::default()
        };
        assert_eq!(field(bad_url("http://127.0.0.1:6379")), "redis.url");
        assert_eq!(field(bad_url("rediss://127.0.0.1:6379")), "redis.url");
        assert_eq!(field(bad_url("redis://127.0.0.1:notaport")), "redis.url");
        assert_eq!(
            field(RedisConfig {
                timeout_ms: 0,
                ..Default::default()
            }),
            "redis.timeout_ms"
        );
        assert_eq!(
            field(RedisConfig {
                replica_ttl_ms: 100,
                ..Default::default()
            }),
            "redis.replica_ttl_ms"
        );
        assert_eq!(
            field(RedisConfig {
                key_prefix: "a b".into(),
                ..Default::default()
            }),
            "redis.key_prefix"
        );
    }
}
