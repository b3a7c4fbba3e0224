//! Per-API-key quotas (`[[quotas]]`): requests per minute, tokens per minute, requests in
//! flight, allowed models, and the usage of each key (`GET /api/usage`, metrics labelled with
//! the key's name, never its secret). Start at [`admit`] (the admission stage after the rate
//! limits) and [`settle`] (when the request ends, from `logging`).
//!
//! With `[redis]` up, a request is admitted by one script call in Redis ([`shared`]) and
//! settled by another off the response path, so the quotas hold for the fleet. Without Redis,
//! or while it is down (`redis.on_failure = "local"`), each replica decides with its own
//! buckets ([`local`]) at its share of each quota (÷ the live replicas). Tokens are charged
//! at admission from the prompt's size (about 4 bytes a token) and corrected to the response's
//! usage when it ends.

pub mod bucket;
pub mod local;
pub mod shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{KeyQuota, RedisFailure};
use crate::error::GatewayError;
use crate::state::AppState;
use local::{Exceeded, InFlight, KeyState, Limits};

/// Prompt bytes per estimated token.
pub const BYTES_PER_TOKEN: u64 = 4;

/// One configured key: its settings (the secret left out) and its state.
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    pub limits: Limits,
    pub models: Vec<String>,
    pub state: Arc<KeyState>,
}

/// The quotas of one config (rebuilt on reload; the states of kept names carry over).
#[derive(Debug, Default)]
pub struct Quotas {
    by_key: HashMap<[u8; 32], Arc<Entry>>,
    entries: Vec<Arc<Entry>>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.trim().as_bytes()).into()
}

impl Quotas {
    pub fn new(cfg: &[KeyQuota]) -> Self {
        Quotas::default().rebuilt(cfg)
    }

    /// The quotas of `cfg`, keeping the buckets and counters of names already here.
    pub fn rebuilt(&self, cfg: &[KeyQuota]) -> Self {
        let mut out = Quotas::default();
        for q in cfg {
            let state = self
                .entries
                .iter()
                .find(|e| e.name == q.name)
                .map(|e| e.state.clone())
                .unwrap_or_default();
            let entry = Arc::new(Entry {
                name: q.name.clone(),
                limits: Limits {
                    rpm: q.requests_per_minute,
                    tpm: q.tokens_per_minute,
                    concurrent: q.max_concurrent,
                },
                models: q.models.clone(),
                state,
            });
            out.by_key.insert(digest(&q.api_key), entry.clone());
            out.entries.push(entry);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The quota of the presented API key, if it has one.
    pub fn find(&self, api_key: Option<&str>) -> Option<Arc<Entry>> {
        if self.is_empty() {
            return None;
        }
        self.by_key.get(&digest(api_key?)).cloned()
    }

    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }
}

/// An admitted request of a key with a quota; settled when the request ends.
#[derive(Debug)]
pub struct Ticket {
    entry: Arc<Entry>,
    estimate: u64,
    /// Which buckets charged the estimate: Redis's (with the in-flight id) or this process's.
    charged_in_redis: Option<String>,
    _in_flight: InFlight,
}

/// Ids of requests in Redis's in-flight sets, unique per replica.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A replica's share of a key's limits while it decides alone.
fn share(l: Limits, replicas: usize) -> Limits {
    let n = replicas.max(1) as u64;
    let part = |v: u64| if v == 0 { 0 } else { v.div_ceil(n).max(1) };
    Limits {
        rpm: part(u64::from(l.rpm)) as u32,
        tpm: part(l.tpm),
        concurrent: part(u64::from(l.concurrent)) as u32,
    }
}

fn refusal(entry: &Entry, which: Exceeded, wait: Duration) -> GatewayError {
    let limit = match which {
        Exceeded::RequestsPerMinute => u64::from(entry.limits.rpm),
        Exceeded::TokensPerMinute => entry.limits.tpm,
        Exceeded::MaxConcurrent => u64::from(entry.limits.concurrent),
    };
    GatewayError::RateLimited {
        message: format!(
            "the quota of key `{}` is exhausted: {} = {limit}; retry after the indicated time",
            entry.name,
            which.as_str()
        ),
        retry_after: wait,
    }
}

/// The quota stage: a key with a quota may use this model and has room for this request.
pub async fn admit(
    state: &AppState,
    entry: Arc<Entry>,
    model: Option<&str>,
    prompt_bytes: u64,
) -> Result<Ticket, GatewayError> {
    if !entry.models.is_empty() && !model.is_some_and(|m| entry.models.iter().any(|a| a == m)) {
        entry.state.usage.refused.fetch_add(1, Relaxed);
        return Err(GatewayError::Forbidden(format!(
            "the key `{}` may not use the model `{}` (allowed: {})",
            entry.name,
            model.unwrap_or(""),
            entry.models.join(", ")
        )));
    }
    let estimate = prompt_bytes.div_ceil(BYTES_PER_TOKEN);
    let in_flight = entry.state.enter();
    let mut ticket = Ticket {
        entry: entry.clone(),
        estimate,
        charged_in_redis: None,
        _in_flight: in_flight,
    };
    let limits = entry.limits;
    if limits == Limits::default() {
        return Ok(ticket);
    }
    let shared = &state.shared;
    let mut verdict = None;
    if let Some(client) = shared.client().filter(|c| c.is_up()) {
        let id = format!("{}:{}", shared.replica_id, NEXT_ID.fetch_add(1, Relaxed));
        match shared::admit(shared, client, &entry.name, limits, estimate, &id).await {
            Ok(v) => {
                if v.is_ok() {
                    ticket.charged_in_redis = Some(id);
                }
                verdict = Some(v);
            }
            Err(e) => tracing::debug!(error = %e, "quotas: Redis failed, deciding locally"),
        }
    }
    let verdict = match verdict {
        Some(v) => v,
        None if shared.client().is_none() => entry
            .state
            .admit(limits, estimate)
            .map_err(|(w, us)| (w, Duration::from_micros(us as u64))),
        None => match shared.config().on_failure {
            RedisFailure::Local => entry
                .state
                .admit(share(limits, shared.live_replicas()), estimate)
                .map_err(|(w, us)| (w, Duration::from_micros(us as u64))),
            RedisFailure::Allow => Ok(()),
            RedisFailure::Reject => {
                return Err(GatewayError::NoWorker(
                    "the shared quotas are unavailable (Redis is not answering); retry shortly"
                        .into(),
                ))
            }
        },
    };
    match verdict {
        Ok(()) => Ok(ticket),
        Err((which, wait)) => {
            entry.state.usage.refused.fetch_add(1, Relaxed);
            Err(refusal(&entry, which, wait))
        }
    }
}

/// A request of a key with a quota ended: count its usage and correct the tokens charged.
/// `prompt`/`completion` are the response's usage (0 when it failed); a prompt count the
/// response did not report is taken as the estimate. Redis is written off the response path.
pub fn settle(state: &Arc<AppState>, ticket: Ticket, ok: bool, prompt: u64, completion: u64) {
    let (prompt, completion) = match ok {
        true if prompt == 0 => (ticket.estimate, completion),
        true => (prompt, completion),
        false => (0, 0),
    };
    let entry = &ticket.entry;
    entry.state.record(prompt, completion);
    let delta = i64::try_from(prompt + completion).unwrap_or(i64::MAX)
        - i64::try_from(ticket.estimate).unwrap_or(i64::MAX);
    if ticket.charged_in_redis.is_none() {
        entry.state.adjust(entry.limits.tpm, delta);
    }
    if state.shared.client().is_some_and(|c| c.is_up()) {
        let state = state.clone();
        tokio::spawn(async move {
            let Some(client) = state.shared.client() else {
                return;
            };
            let id = ticket.charged_in_redis.as_deref().unwrap_or("");
            let s = shared::Settlement {
                name: &ticket.entry.name,
                tpm: ticket.entry.limits.tpm,
                delta: if id.is_empty() { 0 } else { delta },
                id,
                prompt_tokens: prompt,
                completion_tokens: completion,
            };
            if let Err(e) = shared::settle(&state.shared, client, s).await {
                tracing::debug!(error = %e, "quotas: settling in Redis failed");
            }
            drop(ticket);
        });
    }
}

/// `GET /api/usage`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageView {
    /// `redis`: counts of the whole fleet; `local`: this replica's only (no Redis, or Redis
    /// did not answer).
    pub source: String,
    pub keys: Vec<KeyUsage>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KeyUsage {
    pub name: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Requests of this key in flight on this replica.
    pub in_flight: u64,
    /// Requests this replica refused for this key's quota.
    pub refused: u64,
    pub requests_per_minute: u32,
    pub tokens_per_minute: u64,
    pub max_concurrent: u32,
    pub models: Vec<String>,
}

pub async fn usage(state: &AppState) -> UsageView {
    let quotas = state.quotas.load_full();
    let names: Vec<String> = quotas.entries().iter().map(|e| e.name.clone()).collect();
    let mut fleet = None;
    if let Some(client) = state.shared.client().filter(|c| c.is_up()) {
        fleet = shared::usage(&state.shared, client, &names).await.ok();
    }
    let keys = quotas
        .entries()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let u = &e.state.usage;
            let [requests, prompt_tokens, completion_tokens] =
                fleet.as_ref().and_then(|f| f.get(i).copied()).unwrap_or([
                    u.requests.load(Relaxed),
                    u.prompt_tokens.load(Relaxed),
                    u.completion_tokens.load(Relaxed),
                ]);
            KeyUsage {
                name: e.name.clone(),
                requests,
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
                in_flight: u64::from(e.state.in_flight.load(Relaxed)),
                refused: u.refused.load(Relaxed),
                requests_per_minute: e.limits.rpm,
                tokens_per_minute: e.limits.tpm,
                max_concurrent: e.limits.concurrent,
                models: e.models.clone(),
            }
        })
        .collect();
    UsageView {
        source: if fleet.is_some() { "redis" } else { "local" }.into(),
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(name: &str, key: &str) -> KeyQuota {
        KeyQuota {
            name: name.into(),
            api_key: key.into(),
            requests_per_minute: 2,
            ..Default::default()
        }
    }

    #[test]
    fn keys_find_their_quota_and_reloads_keep_the_counters() {
        let q = Quotas::new(&[quota("a", "sk-a"), quota("b", "sk-b")]);
        assert_eq!(q.find(Some("sk-b")).unwrap().name, "b");
        assert!(q.find(Some("sk-c")).is_none() && q.find(None).is_none());
        q.find(Some("sk-a")).unwrap().state.record(5, 7);
        let mut cfg = vec![quota("a", "sk-a2")];
        cfg[0].requests_per_minute = 9;
        let r = q.rebuilt(&cfg);
        let a = r.find(Some("sk-a2")).unwrap();
        assert_eq!(a.limits.rpm, 9);
        assert_eq!(
            a.state.usage.prompt_tokens.load(Relaxed),
            5,
            "kept across reloads"
        );
        assert!(r.find(Some("sk-a")).is_none(), "the old secret is gone");
        assert_eq!(r.entries().len(), 1);
    }

    #[test]
    fn shares_divide_each_limit() {
        let l = Limits {
            rpm: 60,
            tpm: 1000,
            concurrent: 4,
        };
        assert_eq!(
            share(l, 3),
            Limits {
                rpm: 20,
                tpm: 334,
                concurrent: 2
            }
        );
        assert_eq!(share(l, 1), l);
        assert_eq!(share(Limits::default(), 5), Limits::default());
    }
}
