//! Sessions: multi-turn conversations kept by the gateway.
//!
//! A client creates a session (`POST /sessions`), then sends chat requests carrying it
//! (`X-Session-ID` header or `session_id` body field). The gateway prepends the session's
//! system prompt and history to the request's messages before routing it ([`chat`]), sends it
//! to the session's worker while that worker is usable (its prefix cache holds the
//! conversation), and appends the request's messages and the assistant's reply — from a plain
//! response or a stream — once the response completed. Failed requests leave the session as
//! it was.
//!
//! Bounded: at most `sessions.max_sessions` sessions, each trimmed to `max_messages` and
//! `max_tokens` (oldest turns first), expiring after `ttl_seconds` idle. A session belongs to
//! the API key that created it; any other key gets 404. Storage is the [`store::SessionStore`]
//! trait: in memory, or in Redis when `[redis]` is set ([`redis_store`]: every replica serves
//! every session). It lives in the shared state, so config reloads keep it.
//!
//! Start at [`chat::prepare`] (the request path) and [`api`] (the endpoints).

pub mod api;
pub mod chat;
pub mod redis_store;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

pub use store::{MemoryStore, SessionStore, SessionView};

pub use crate::auth::{owner_of, Owner};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every session id starts with this; other `X-Session-ID` values are plain affinity keys.
pub const ID_PREFIX: &str = "sess_";

/// A new session id: `sess_` and 32 hex digits that nobody can guess from earlier ones.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(fastrand::u128(..).to_le_bytes());
    h.update(COUNTER.fetch_add(1, Relaxed).to_le_bytes());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{ID_PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_well_formed() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 37 && id.starts_with("sess_")));
    }
}
