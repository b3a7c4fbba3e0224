//! Where sessions live: the [`SessionStore`] trait, the in-memory [`MemoryStore`] and (in
//! `redis_store`) the store several replicas share through Redis.
//!
//! Every operation takes the caller's [`Owner`]: a session is invisible (`None` / `false`,
//! answered as 404) to anyone but the API key that created it. Times are unix milliseconds
//! passed in by the caller, so expiry is testable without waiting.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::Owner;
use crate::config::SessionsConfig;

/// One message of a conversation (text only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    /// Estimated tokens: about four characters a token, plus the message's framing.
    pub fn estimated_tokens(&self) -> usize {
        self.content.chars().count().div_ceil(4) + 4
    }
}

/// What a client asks for when creating a session (`POST /sessions`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    #[serde(default)]
    pub title: Option<String>,
    /// Sent as the first (system) message of every request of the session.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Idle time after which the session expires (default `sessions.default_ttl_seconds`).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A stored session (as JSON in the Redis store).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub owner: Owner,
    pub title: Option<String>,
    pub system_prompt: Option<String>,
    pub created_ms: u64,
    pub last_used_ms: u64,
    pub ttl_seconds: u64,
    pub messages: VecDeque<Message>,
    /// Messages dropped from the front to stay within the limits.
    pub trimmed: u64,
    /// The worker (id) that answered last: the session sticks to it while it is usable.
    pub worker: Option<String>,
    /// Creation order, set by the store (sessions created in the same millisecond still
    /// list newest first).
    pub seq: u64,
}

/// A session as the API shows it (`messages` only in `GET /sessions/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: String,
    pub object: String,
    pub title: Option<String>,
    pub system_prompt: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    pub last_active_at: u64,
    pub expires_at: u64,
    pub ttl_seconds: u64,
    pub message_count: usize,
    pub estimated_tokens: usize,
    /// Messages dropped (oldest turns first) to stay within the limits.
    pub trimmed_messages: u64,
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
}

impl Session {
    fn expires_ms(&self) -> u64 {
        self.last_used_ms
            .saturating_add(self.ttl_seconds.saturating_mul(1000))
    }

    pub(crate) fn expired(&self, now: u64) -> bool {
        now >= self.expires_ms()
    }

    pub fn estimated_tokens(&self) -> usize {
        self.messages.iter().map(Message::estimated_tokens).sum()
    }

    pub fn view(&self, with_messages: bool) -> SessionView {
        SessionView {
            id: self.id.clone(),
            object: "session".into(),
            title: self.title.clone(),
            system_prompt: self.system_prompt.clone(),
            created_at: self.created_ms / 1000,
            last_active_at: self.last_used_ms / 1000,
            expires_at: self.expires_ms() / 1000,
            ttl_seconds: self.ttl_seconds,
            message_count: self.messages.len(),
            estimated_tokens: self.estimated_tokens(),
            trimmed_messages: self.trimmed,
            worker: self.worker.clone(),
            messages: with_messages.then(|| self.messages.iter().cloned().collect()),
        }
    }

    /// A finished exchange: appended, the answering worker recorded, trimmed to `limits`.
    pub fn add_exchange(
        &mut self,
        messages: Vec<Message>,
        worker: Option<String>,
        limits: &SessionsConfig,
        now: u64,
    ) {
        self.messages.extend(messages);
        self.last_used_ms = now;
        if worker.is_some() {
            self.worker = worker;
        }
        self.trim(limits);
    }

    /// Drop the oldest turns (a user message and the replies up to the next one) until the
    /// session is within `limits`; the newest turn is always kept.
    fn trim(&mut self, limits: &SessionsConfig) {
        let over = |s: &Session| {
            s.messages.len() > limits.max_messages || s.estimated_tokens() > limits.max_tokens
        };
        while over(self) {
            let turn_len = 1 + self
                .messages
                .iter()
                .skip(1)
                .take_while(|m| m.role != "user")
                .count();
            if turn_len >= self.messages.len() {
                break; // one turn left: keep it whatever its size
            }
            self.messages.drain(..turn_len);
            self.trimmed += turn_len as u64;
        }
    }
}

/// Why a store operation could not be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// `sessions.max_sessions` live sessions exist.
    #[error(
        "the gateway holds its maximum of {0} sessions; delete one or retry once idle ones expired"
    )]
    Full(usize),
    /// The shared store (Redis) cannot be reached.
    #[error("sessions are unavailable: {0}; retry shortly")]
    Unavailable(String),
}

impl From<StoreError> for crate::error::GatewayError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full(_) => crate::error::GatewayError::RateLimited {
                message: e.to_string(),
                retry_after: std::time::Duration::from_secs(60),
            },
            StoreError::Unavailable(_) => crate::error::GatewayError::NoWorker(e.to_string()),
        }
    }
}

/// Storage of sessions: in memory ([`MemoryStore`]) or in Redis, shared by replicas
/// ([`super::redis_store::RedisStore`]). Implementations are shared by all requests and must
/// not block for long.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// Store a new session (expired ones are pruned first when the store is full).
    async fn create(&self, session: Session, limits: &SessionsConfig) -> Result<(), StoreError>;
    /// The session, if it exists, has not expired and belongs to `owner`.
    async fn get(&self, id: &str, owner: &Owner, now: u64) -> Result<Option<Session>, StoreError>;
    /// `owner`'s live sessions, newest first: one page and the total count.
    async fn list(
        &self,
        owner: &Owner,
        offset: usize,
        limit: usize,
        now: u64,
    ) -> Result<(Vec<Session>, usize), StoreError>;
    async fn delete(&self, id: &str, owner: &Owner) -> Result<bool, StoreError>;
    /// Append a finished exchange, record the worker that answered, trim to `limits`.
    /// `false` when the session is gone (deleted or expired meanwhile).
    #[allow(clippy::too_many_arguments)]
    async fn append(
        &self,
        id: &str,
        owner: &Owner,
        messages: Vec<Message>,
        worker: Option<String>,
        limits: &SessionsConfig,
        now: u64,
    ) -> Result<bool, StoreError>;
    /// Remove expired sessions; returns how many.
    async fn prune(&self, now: u64) -> usize;
    /// Live and not yet pruned sessions.
    async fn len(&self) -> usize;
}

/// Sessions in a map behind one mutex (operations are a hash lookup and a few moves).
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<String, Session>>,
    created: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn create(
        &self,
        mut session: Session,
        limits: &SessionsConfig,
    ) -> Result<(), StoreError> {
        session.seq = self
            .created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.sessions.lock();
        if map.len() >= limits.max_sessions {
            let now = session.created_ms;
            map.retain(|_, s| !s.expired(now));
            if map.len() >= limits.max_sessions {
                return Err(StoreError::Full(limits.max_sessions));
            }
        }
        map.insert(session.id.clone(), session);
        Ok(())
    }

    async fn get(&self, id: &str, owner: &Owner, now: u64) -> Result<Option<Session>, StoreError> {
        let map = self.sessions.lock();
        Ok(map
            .get(id)
            .filter(|s| s.owner == *owner && !s.expired(now))
            .cloned())
    }

    async fn list(
        &self,
        owner: &Owner,
        offset: usize,
        limit: usize,
        now: u64,
    ) -> Result<(Vec<Session>, usize), StoreError> {
        let map = self.sessions.lock();
        let mut mine: Vec<&Session> = map
            .values()
            .filter(|s| s.owner == *owner && !s.expired(now))
            .collect();
        mine.sort_by_key(|s| std::cmp::Reverse(s.seq));
        let total = mine.len();
        let page = mine.into_iter().skip(offset).take(limit).cloned().collect();
        Ok((page, total))
    }

    async fn delete(&self, id: &str, owner: &Owner) -> Result<bool, StoreError> {
        let mut map = self.sessions.lock();
        if map.get(id).is_some_and(|s| s.owner == *owner) {
            map.remove(id);
            Ok(true)
        } else {
            Ok(false)
        }
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
        let mut map = self.sessions.lock();
        let Some(s) = map
            .get_mut(id)
            .filter(|s| s.owner == *owner && !s.expired(now))
        else {
            return Ok(false);
        };
        s.add_exchange(messages, worker, limits, now);
        Ok(true)
    }

    async fn prune(&self, now: u64) -> usize {
        let mut map = self.sessions.lock();
        let before = map.len();
        map.retain(|_, s| !s.expired(now));
        before - map.len()
    }

    async fn len(&self) -> usize {
        self.sessions.lock().len()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
