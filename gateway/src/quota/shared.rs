//! The per-key quotas in Redis, shared by every replica: one script call admits a request
//! (requests bucket, tokens bucket, requests in flight — the same arithmetic as
//! [`super::bucket`], on Redis's clock) and one settles it when it ends (the tokens estimate
//! corrected, the request out of the in-flight set, the fleet-wide usage counted).
//!
//! Keys, under `redis.key_prefix`: `q:<name>:rpm`, `q:<name>:tpm` (TATs, expiring when full),
//! `q:<name>:inflight` (a sorted set of request ids scored by their expiry, so a replica that
//! dies mid-request frees its slots after [`IN_FLIGHT_TTL_MS`]) and `usage:<name>` (a hash:
//! `requests`, `prompt_tokens`, `completion_tokens`).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::local::{Exceeded, Limits};
use crate::shared::client::{CallError, RedisClient};
use crate::shared::Shared;

/// How long a request counts in flight at most when its replica never settles it.
pub const IN_FLIGHT_TTL_MS: u64 = 600_000;

const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local minute = 60000000
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local est, conc, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%.0f', now))
  if redis.call('ZCARD', KEYS[3]) >= conc then return {3, 1000000} end
end
local rt, tt
if rpm > 0 then
  local period = minute / rpm
  local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0) or 0, now)
  local wait = (tat - now) - (rpm - 1) * period
  if wait > 0 then return {1, math.ceil(wait)} end
  rt = tat + period
end
if tpm > 0 then
  local period = minute / tpm
  local tat = math.max(tonumber(redis.call('GET', KEYS[2]) or 0) or 0, now)
  if tat - now >= minute then return {2, math.ceil(tat - now - minute + period)} end
  tt = tat + est * period
end
if rt then
  redis.call('SET', KEYS[1], string.format('%.0f', rt), 'PX', math.ceil((rt - now) / 1000) + 1)
end
if tt then
  redis.call('SET', KEYS[2], string.format('%.0f', tt), 'PX', math.ceil((tt - now) / 1000) + 1)
end
if conc > 0 then
  redis.call('ZADD', KEYS[3], string.format('%.0f', now + ttl * 1000), ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {0, 0}
";

const SETTLE: &str = r"
local tpm, delta = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 and delta ~= 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0) or 0, now)
  tat = math.max(tat + delta * 60000000 / tpm, now)
  if tat > now then
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  else
    redis.call('DEL', KEYS[1])
  end
end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
redis.call('HINCRBY', KEYS[3], 'requests', 1)
redis.call('HINCRBY', KEYS[3], 'prompt_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'completion_tokens', ARGV[5])
return 1
";

static ADMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIT));
static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SETTLE));

fn key(shared: &Shared, name: &str, part: &str) -> String {
    shared.key(&["q", name, part])
}

pub fn usage_key(shared: &Shared, name: &str) -> String {
    shared.key(&["usage", name])
}

/// Admit one request of key `name` as request `id`. Err(Ok(..)): refused by a quota.
pub async fn admit(
    shared: &Shared,
    client: &RedisClient,
    name: &str,
    limits: Limits,
    estimate: u64,
    id: &str,
) -> Result<Result<(), (Exceeded, Duration)>, CallError> {
    let keys = [
        key(shared, name, "rpm"),
        key(shared, name, "tpm"),
        key(shared, name, "inflight"),
    ];
    let (which, wait): (u8, u64) = client
        .call(|mut conn| async move {
            ADMIT_SCRIPT
                .key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .arg(limits.rpm)
                .arg(limits.tpm)
                .arg(estimate)
                .arg(limits.concurrent)
                .arg(id)
                .arg(IN_FLIGHT_TTL_MS)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    let wait = Duration::from_micros(wait);
    Ok(match which {
        0 => Ok(()),
        1 => Err((Exceeded::RequestsPerMinute, wait)),
        2 => Err((Exceeded::TokensPerMinute, wait)),
        _ => Err((Exceeded::MaxConcurrent, wait)),
    })
}

/// What a finished request settles.
pub struct Settlement<'a> {
    pub name: &'a str,
    pub tpm: u64,
    /// Tokens used minus the estimate charged (0 when Redis did not charge it).
    pub delta: i64,
    /// The in-flight entry to remove ("" when there is none).
    pub id: &'a str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

pub async fn settle(
    shared: &Shared,
    client: &RedisClient,
    s: Settlement<'_>,
) -> Result<(), CallError> {
    let keys = [
        key(shared, s.name, "tpm"),
        key(shared, s.name, "inflight"),
        usage_key(shared, s.name),
    ];
    let _: i64 = client
        .call(|mut conn| async move {
            SETTLE_SCRIPT
                .key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .arg(s.tpm)
                .arg(s.delta)
                .arg(s.id)
                .arg(s.prompt_tokens)
                .arg(s.completion_tokens)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    Ok(())
}

/// Fleet-wide usage of these names: (requests, prompt tokens, completion tokens) each.
pub async fn usage(
    shared: &Shared,
    client: &RedisClient,
    names: &[String],
) -> Result<Vec<[u64; 3]>, CallError> {
    let keys: Vec<String> = names.iter().map(|n| usage_key(shared, n)).collect();
    let rows: Vec<(Option<u64>, Option<u64>, Option<u64>)> = client
        .call(|mut conn| async move {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("HMGET")
                    .arg(k)
                    .arg("requests")
                    .arg("prompt_tokens")
                    .arg("completion_tokens");
            }
            pipe.query_async(&mut conn).await
        })
        .await?;
    Ok(rows
        .into_iter()
        .map(|(r, p, c)| [r.unwrap_or(0), p.unwrap_or(0), c.unwrap_or(0)])
        .collect())
}
