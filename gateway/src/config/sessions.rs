//! `[sessions]`: how much conversation state the gateway keeps.

use serde::{Deserialize, Serialize};

use crate::config::{check, ConfigError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Sessions kept at most (all owners together); creating one more is refused (429).
    pub max_sessions: usize,
    /// Messages kept per session; older turns are dropped first.
    pub max_messages: usize,
    /// Estimated tokens (characters / 4) kept per session; older turns are dropped first.
    pub max_tokens: usize,
    /// A session unused for this long expires (when created without `ttl_seconds`).
    pub default_ttl_seconds: u64,
    /// The longest `ttl_seconds` a client may ask for.
    pub max_ttl_seconds: u64,
    /// Longest title and system prompt, in bytes.
    pub max_text_bytes: usize,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            max_messages: 200,
            max_tokens: 32_768,
            default_ttl_seconds: 3_600,
            max_ttl_seconds: 86_400,
            max_text_bytes: 65_536,
        }
    }
}

impl SessionsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=10_000_000).contains(&self.max_sessions),
            "sessions.max_sessions",
            "must be 1..=10000000",
        )?;
        check(
            self.max_messages >= 2,
            "sessions.max_messages",
            "must be >= 2 (one turn)",
        )?;
        check(
            self.max_tokens >= 16,
            "sessions.max_tokens",
            "must be >= 16",
        )?;
        check(
            self.default_ttl_seconds >= 1,
            "sessions.default_ttl_seconds",
            "must be >= 1",
        )?;
        check(
            self.max_ttl_seconds >= self.default_ttl_seconds,
            "sessions.max_ttl_seconds",
            "must be >= sessions.default_ttl_seconds",
        )?;
        check(
            self.max_text_bytes >= 64,
            "sessions.max_text_bytes",
            "must be >= 64",
        )
    }
}
