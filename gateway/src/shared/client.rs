//! The Redis connection: redis-rs's tokio [`ConnectionManager`] (one multiplexed connection,
//! reconnected on its own), every call bounded by `redis.timeout_ms`, and whether Redis is
//! up. A failed or late call marks it down at once, which keeps it off the request path;
//! only the heartbeat ([`super::heartbeat`]) marks it up again, after a call that worked.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, RedisResult};

/// Why a Redis call gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no connection to Redis yet")]
    NotConnected,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Calls by outcome (`llm_gateway_redis_calls_total{result}`).
#[derive(Debug, Default)]
pub struct CallCounts {
    pub ok: AtomicU64,
    pub error: AtomicU64,
    pub timeout: AtomicU64,
}

pub struct RedisClient {
    client: Client,
    manager: OnceLock<ConnectionManager>,
    timeout: Duration,
    up: AtomicBool,
    pub calls: CallCounts,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// Parse the URL; nothing connects until [`Self::connect`].
    pub fn new(url: &str, timeout: Duration) -> RedisResult<Self> {
        Ok(Self {
            client: Client::open(url)?,
            manager: OnceLock::new(),
            timeout,
            up: AtomicBool::new(false),
            calls: CallCounts::default(),
        })
    }

    /// Create the connection manager on the calling tokio runtime (it spawns its tasks
    /// there; the heartbeat calls this from its own long-lived runtime). Idempotent; the
    /// connection itself is made on the first call, and remade after it breaks.
    pub fn connect(&self) -> RedisResult<()> {
        if self.manager.get().is_some() {
            return Ok(());
        }
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.timeout))
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(100))))
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200))
            .set_number_of_retries(2);
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        let _ = self.manager.set(manager);
        Ok(())
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Record what the heartbeat saw; logs the transitions.
    pub(crate) fn set_up(&self, up: bool) {
        if self.up.swap(up, Relaxed) != up {
            if up {
                tracing::info!("Redis answers: shared state is in Redis again");
            } else {
                tracing::warn!(
                    "Redis is not answering: shared state is degraded (redis.on_failure applies)"
                );
            }
        }
    }

    /// Run one call on the shared connection within the time limit. A failure marks Redis
    /// down.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        T: FromRedisValue,
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Some(manager) = self.manager.get() else {
            return Err(CallError::NotConnected);
        };
        let result = match tokio::time::timeout(self.timeout, f(manager.clone())).await {
            Ok(Ok(v)) => {
                self.calls.ok.fetch_add(1, Relaxed);
                return Ok(v);
            }
            Ok(Err(e)) => {
                self.calls.error.fetch_add(1, Relaxed);
                CallError::Redis(e)
            }
            Err(_) => {
                self.calls.timeout.fetch_add(1, Relaxed);
                CallError::Timeout(self.timeout)
            }
        };
        self.set_up(false);
        Err(result)
    }
}
