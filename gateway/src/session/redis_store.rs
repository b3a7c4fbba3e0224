//! Sessions in Redis, shared by every replica (`[redis]`): any replica serves any turn.
//!
//! Keys, under `redis.key_prefix`: `sess:<id>` holds the session as JSON and expires after its
//! idle TTL (re-armed by every turn); `sess:all` (a sorted set scored by expiry) bounds the
//! number of sessions and counts them; `sess:own:<owner>` (scored by creation order) lists an
//! owner's sessions, cleaned of expired ids as it is read. A turn's exchange is appended with
//! a compare-and-set: the replica reads the session, appends and trims it with the same code
//! as the in-memory store, and a script writes it back only if nobody changed it meanwhile —
//! otherwise it reads again, so concurrent turns all land and none is lost. The owner is
//! checked on every read, in this process, against the stored owner.
//!
//! While Redis does not answer every operation fails at once with
//! [`StoreError::Unavailable`] (a `503` with `Retry-After` for session requests only).

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use redis::Script;

use super::store::{Message, Session, SessionStore, StoreError};
use super::Owner;
use crate::config::SessionsConfig;
use crate::shared::client::{CallError, RedisClient};
use crate::shared::Shared;

/// Attempts of one append's compare-and-set before it gives up (each conflict means another
/// turn of the same session was stored meanwhile).
const CAS_ATTEMPTS: usize = 64;

/// After a conflict, wait a little (0–2 ms, random) so concurrent writers spread out.
async fn backoff() {
    tokio::time::sleep(std::time::Duration::from_micros(fastrand::u64(0..2_000))).await;
}

/// KEYS: session, all, owner list, sequence. ARGV: JSON, TTL ms, max sessions, id.
const CREATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
local seq = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[4])
redis.call('ZADD', KEYS[3], seq, ARGV[4])
return 1
";

/// KEYS: session, all. ARGV: the JSON read, the new JSON, TTL ms, id. 1: written, 0: the
/// session changed (or vanished) since it was read.
const SWAP: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur or cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[4])
return 1
";

/// KEYS: session, all, owner list. ARGV: the JSON read, id.
const DELETE: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur or cur ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
";

/// KEYS: all.
const PRUNE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
";

static CREATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CREATE));
static SWAP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SWAP));
static DELETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE));
static PRUNE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PRUNE));

pub struct RedisStore {
    shared: Arc<Shared>,
}

impl RedisStore {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The client, if Redis is answering now.
    fn client(&self) -> Result<&RedisClient, StoreError> {
        self.shared
            .client()
            .filter(|c| c.is_up())
            .ok_or_else(|| StoreError::Unavailable("Redis is not answering".into()))
    }

    fn key(&self, id: &str) -> String {
        self.shared.key(&["sess", id])
    }

    fn all(&self) -> String {
        self.shared.key(&["sess", "all"])
    }

    fn owner_list(&self, owner: &Owner) -> String {
        let who = match owner {
            Some(digest) => digest[..16].iter().map(|b| format!("{b:02x}")).collect(),
            None => "anonymous".to_string(),
        };
        self.shared.key(&["sess", "own", &who])
    }

    /// The session's stored JSON and the session, if it exists and belongs to `owner`.
    async fn read(&self, id: &str, owner: &Owner) -> Result<Option<(String, Session)>, StoreError> {
        let client = self.client()?;
        let key = self.key(id);
        let raw: Option<String> = client
            .call(
                |mut conn| async move { redis::cmd("GET").arg(&key).query_async(&mut conn).await },
            )
            .await
            .map_err(unavailable)?;
        Ok(raw.and_then(|raw| {
            let s: Session = serde_json::from_str(&raw).ok()?;
            (s.owner == *owner).then_some((raw, s))
        }))
    }
}

fn unavailable(e: CallError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn ttl_ms(s: &Session) -> u64 {
    s.ttl_seconds.saturating_mul(1000).max(1)
}

fn to_json(s: &Session) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, session: Session, limits: &SessionsConfig) -> Result<(), StoreError> {
        let client = self.client()?;
        let keys = [
            self.key(&session.id),
            self.all(),
            self.owner_list(&session.owner),
            self.shared.key(&["sess", "seq"]),
        ];
        let (json, ttl, id) = (to_json(&session), ttl_ms(&session), session.id.clone());
        let max = limits.max_sessions;
        let created: i64 = client
            .call(|mut conn| async move {
                CREATE_SCRIPT
                    .key(&keys[0])
                    .key(&keys[1])
                    .key(&keys[2])
                    .key(&keys[3])
                    .arg(&json)
                    .arg(ttl)
                    .arg(max)
                    .arg(&id)
                    .invoke_async(&mut conn)
                    .await
            })
            .await
            .map_err(unavailable)?;
        if created == 1 {
            Ok(())
        } else {
            Err(StoreError::Full(max))
        }
    }

    async fn get(&self, id: &str, owner: &Owner, _now: u64) -> Result<Option<Session>, StoreError> {
        Ok(self.read(id, owner).await?.map(|(_, s)| s))
    }

    async fn list(
        &self,
        owner: &Owner,
        offset: usize,
        limit: usize,
        _now: u64,
    ) -> Result<(Vec<Session>, usize), StoreError> {
        let client = self.client()?;
        let list = self.owner_list(owner);
        let ids: Vec<String> = {
            let list = list.clone();
            client
                .call(|mut conn| async move {
                    redis::cmd("ZREVRANGE")
                        .arg(&list)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut conn)
                        .await
                })
                .await
                .map_err(unavailable)?
        };
        if ids.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        let raws: Vec<Option<String>> =
            client
                .call(|mut conn| async move {
                    redis::cmd("MGET").arg(&keys).query_async(&mut conn).await
                })
                .await
                .map_err(unavailable)?;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (id, raw) in ids.into_iter().zip(raws) {
            match raw.and_then(|r| serde_json::from_str::<Session>(&r).ok()) {
                Some(s) if s.owner == *owner => live.push(s),
                _ => gone.push(id),
            }
        }
        if !gone.is_empty() {
            // Expired since: forget them (best effort).
            let _ = client
                .call(|mut conn| async move {
                    redis::cmd("ZREM")
                        .arg(&list)
                        .arg(&gone)
                        .query_async::<i64>(&mut conn)
                        .await
                })
                .await;
        }
        let total = live.len();
        Ok((live.into_iter().skip(offset).take(limit).collect(), total))
    }

    async fn delete(&self, id: &str, owner: &Owner) -> Result<bool, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((raw, s)) = self.read(id, owner).await? else {
                return Ok(false);
            };
            let keys = [self.key(id), self.all(), self.owner_list(&s.owner)];
            let id = id.to_string();
            let done: i64 = self
                .client()?
                .call(|mut conn| async move {
                    DELETE_SCRIPT
                        .key(&keys[0])
                        .key(&keys[1])
                        .key(&keys[2])
                        .arg(&raw)
                        .arg(&id)
                        .invoke_async(&mut conn)
                        .await
                })
                .await
                .map_err(unavailable)?;
            if done == 1 {
                return Ok(true);
            }
            backoff().await;
        }
        Err(StoreError::Unavailable(
            "the session kept changing while it was deleted".into(),
        ))
    }

    async fn append(
        &self,
        id: &str,
        owner: &Owner,
        messages: Vec<Message>,
        worker: Option<String>,
        limits: &SessionsConfig,
        now: u64,
    ) -> Result<bool, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((raw, mut s)) = self.read(id, owner).await? else {
                return Ok(false);
            };
            s.add_exchange(messages.clone(), worker.clone(), limits, now);
            let keys = [self.key(id), self.all()];
            let (json, ttl, id) = (to_json(&s), ttl_ms(&s), id.to_string());
            let swapped: i64 = self
                .client()?
                .call(|mut conn| async move {
                    SWAP_SCRIPT
                        .key(&keys[0])
                        .key(&keys[1])
                        .arg(&raw)
                        .arg(&json)
                        .arg(ttl)
                        .arg(&id)
                        .invoke_async(&mut conn)
                        .await
                })
                .await
                .map_err(unavailable)?;
            if swapped == 1 {
                return Ok(true);
            }
            backoff().await;
        }
        Err(StoreError::Unavailable(
            "the session kept changing while its turn was stored".into(),
        ))
    }

    async fn prune(&self, _now: u64) -> usize {
        let Ok(client) = self.client() else {
            return 0;
        };
        let all = self.all();
        client
            .call(|mut conn| async move {
                PRUNE_SCRIPT
                    .key(&all)
                    .invoke_async::<usize>(&mut conn)
                    .await
            })
            .await
            .unwrap_or(0)
    }

    async fn len(&self) -> usize {
        let Ok(client) = self.client() else {
            return 0;
        };
        let all = self.all();
        client
            .call(|mut conn| async move {
                redis::cmd("ZCARD")
                    .arg(&all)
                    .query_async::<usize>(&mut conn)
                    .await
            })
            .await
            .unwrap_or(0)
    }
}
