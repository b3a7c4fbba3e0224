//! The per-user and global token buckets in Redis: GCRA (the generic cell rate algorithm)
//! on Redis's own clock, both buckets in one Lua script so a request costs one round trip and
//! a refusal writes nothing (a user over its limit takes nothing from the global bucket).
//!
//! Each bucket is one key holding its TAT (the theoretical arrival time of the next request,
//! µs since the epoch) and expiring once the bucket is full again. With period `T` and burst
//! `b`, a request is admitted when `TAT − now ≤ (b − 1)·T`, and then `TAT = max(TAT, now) + T`
//! — the same allowance as the local governor buckets: `per_user_rpm` per minute with the
//! whole minute as burst, `global_rps` per second with `global_burst`.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::client::{CallError, RedisClient};
use super::{Shared, Verdict};
use crate::config::RateLimitConfig;
use crate::limits::Scope;

/// KEYS: user bucket, global bucket. ARGV: user period µs (0: off), user burst, global
/// period µs (0: off), global burst. Returns `{0, 0}` (admitted) or `{1|2, wait µs}`.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function probe(key, period, burst)
  local tat = tonumber(redis.call('GET', key) or 0) or 0
  if tat < now then tat = now end
  local wait = (tat - now) - (burst - 1) * period
  if wait > 0 then return tat, wait end
  return tat + period, 0
end
local up, ub = tonumber(ARGV[1]), tonumber(ARGV[2])
local gp, gb = tonumber(ARGV[3]), tonumber(ARGV[4])
local ut, gt
if up > 0 then
  local tat, wait = probe(KEYS[1], up, ub)
  if wait > 0 then return {1, math.ceil(wait)} end
  ut = tat
end
if gp > 0 then
  local tat, wait = probe(KEYS[2], gp, gb)
  if wait > 0 then return {2, math.ceil(wait)} end
  gt = tat
end
if ut then
  redis.call('SET', KEYS[1], string.format('%.0f', ut), 'PX', math.ceil((ut - now) / 1000) + 1)
end
if gt then
  redis.call('SET', KEYS[2], string.format('%.0f', gt), 'PX', math.ceil((gt - now) / 1000) + 1)
end
return {0, 0}
";

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(SCRIPT));

/// Period and burst of each bucket (`0.0` period: that bucket is off).
fn params(cfg: &RateLimitConfig) -> [f64; 4] {
    let (up, ub) = match cfg.per_user_rpm {
        0 => (0.0, 0.0),
        rpm => (60e6 / f64::from(rpm), f64::from(rpm)),
    };
    let (gp, gb) = match cfg.global_rps {
        0 => (0.0, 0.0),
        rps => (1e6 / f64::from(rps), f64::from(cfg.global_burst.max(1))),
    };
    [up, ub, gp, gb]
}

/// One request of `user` against the shared buckets.
pub async fn check(
    shared: &Shared,
    client: &RedisClient,
    cfg: &RateLimitConfig,
    user: u64,
) -> Result<Verdict, CallError> {
    let [up, ub, gp, gb] = params(cfg);
    if up == 0.0 && gp == 0.0 {
        return Ok(Verdict::Admit);
    }
    let user_key = shared.key(&["rl", "u", &format!("{user:016x}")]);
    let global_key = shared.key(&["rl", "g"]);
    let (scope, wait): (u8, u64) = client
        .call(|mut conn| async move {
            GCRA.key(&user_key)
                .key(&global_key)
                .arg(up)
                .arg(ub)
                .arg(gp)
                .arg(gb)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    let wait = Duration::from_micros(wait);
    Ok(match scope {
        0 => Verdict::Admit,
        1 => Verdict::Limited(Scope::User, wait),
        _ => Verdict::Limited(Scope::Global, wait),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_match_the_local_buckets() {
        let cfg = RateLimitConfig {
            enabled: true,
            global_rps: 100,
            global_burst: 200,
            per_user_rpm: 60,
            per_worker_qps: 0,
        };
        assert_eq!(params(&cfg), [1e6, 60.0, 1e4, 200.0]);
        let off = RateLimitConfig {
            global_rps: 0,
            per_user_rpm: 0,
            ..cfg
        };
        assert_eq!(params(&off), [0.0; 4]);
    }
}
