//! `[routing]` with `[routing.p2c]`, `[routing.consistent_hash]`, `[routing.adaptive]` and
//! `[routing.cache_aware]`: the routing strategy and its parameters.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};
use crate::routing::Strategy;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// One of the eight policy tags (see `routing`).
    pub strategy: Strategy,
    /// Seed for the randomised policies (`p2c_kv`, `adaptive`); unset = seeded from the clock.
    pub seed: Option<u64>,
    pub p2c: P2cConfig,
    pub consistent_hash: ConsistentHashConfig,
    pub adaptive: AdaptiveConfig,
    pub cache_aware: CacheAwareConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::CacheAware,
            seed: None,
            p2c: P2cConfig::default(),
            consistent_hash: ConsistentHashConfig::default(),
            adaptive: AdaptiveConfig::default(),
            cache_aware: CacheAwareConfig::default(),
        }
    }
}

impl RoutingConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.p2c.validate()?;
        self.consistent_hash.validate()?;
        self.adaptive.validate()?;
        self.cache_aware.validate()
    }

    /// Whether requests need their prompt's chunk hashes (the policy uses prefixes).
    pub(crate) fn uses_prefixes(&self) -> bool {
        match self.strategy {
            Strategy::CacheAware => true,
            Strategy::P2cKv => self.p2c.prefix_weight > 0.0,
            _ => false,
        }
    }
}

/// `[routing.p2c]`: cost weights of `p2c_kv`:
/// cost = waiting·w + running·w + kv·w + latency·w + error_rate·w − prefix_match·w.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct P2cConfig {
    pub waiting_weight: f64,
    pub running_weight: f64,
    pub kv_cache_weight: f64,
    pub latency_weight: f64,
    pub error_rate_weight: f64,
    /// Credit for a worker that most likely has the prompt's prefix cached, times the share
    /// of the prompt it holds (0 = ignore prefixes).
    pub prefix_weight: f64,
}

impl Default for P2cConfig {
    fn default() -> Self {
        Self {
            waiting_weight: 1.0,
            running_weight: 0.5,
            kv_cache_weight: 2.0,
            latency_weight: 0.3,
            error_rate_weight: 5.0,
            prefix_weight: 2.0,
        }
    }
}

fn check_weight(value: f64, field: &str) -> Result<(), ConfigError> {
    check(
        value.is_finite() && value >= 0.0,
        field,
        "must be a finite number >= 0",
    )
}

impl P2cConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_weight(self.waiting_weight, "routing.p2c.waiting_weight")?;
        check_weight(self.running_weight, "routing.p2c.running_weight")?;
        check_weight(self.kv_cache_weight, "routing.p2c.kv_cache_weight")?;
        check_weight(self.latency_weight, "routing.p2c.latency_weight")?;
        check_weight(self.error_rate_weight, "routing.p2c.error_rate_weight")?;
        check_weight(self.prefix_weight, "routing.p2c.prefix_weight")
    }
}

/// `[routing.consistent_hash]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistentHashConfig {
    /// Ring points per worker, multiplied by the worker's weight.
    pub virtual_nodes: u32,
    /// Bytes of the prompt used as the key when no session, user or API key is present.
    pub prefix_bytes: usize,
}

impl Default for ConsistentHashConfig {
    fn default() -> Self {
        Self {
            virtual_nodes: 150,
            prefix_bytes: 256,
        }
    }
}

impl ConsistentHashConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=10_000).contains(&self.virtual_nodes),
            "routing.consistent_hash.virtual_nodes",
            "must be 1..=10000",
        )?;
        check(
            (1..=65_536).contains(&self.prefix_bytes),
            "routing.consistent_hash.prefix_bytes",
            "must be 1..=65536",
        )
    }
}

/// `[routing.adaptive]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Exploration probability of the ε-greedy choice.
    pub epsilon: f64,
    /// Learning rate of the per-worker cost estimate.
    pub learning_rate: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            epsilon: 0.1,
            learning_rate: 0.1,
        }
    }
}

impl AdaptiveConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            (0.0..=1.0).contains(&self.epsilon),
            "routing.adaptive.epsilon",
            "must be within 0..=1",
        )?;
        check(
            self.learning_rate > 0.0 && self.learning_rate <= 1.0,
            "routing.adaptive.learning_rate",
            "must be within (0, 1]",
        )
    }
}

/// `[routing.cache_aware]`: the prefix index and the cost of `cache_aware` (see
/// `routing::cache_aware`). Work is counted in estimated tokens.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheAwareConfig {
    /// Bytes of prompt text per prefix chunk.
    pub chunk_bytes: usize,
    /// Prefix chunks the index remembers (about 60 bytes each); also `p2c_kv`'s index.
    pub max_entries: usize,
    /// Prompt bytes per token, to estimate tokens without a tokenizer.
    pub bytes_per_token: f64,
    /// Decode tokens assumed for a request without `max_tokens`.
    pub default_decode_tokens: u32,
    /// A cached prefix shorter than this share of the prompt is not worth following.
    pub min_match_ratio: f64,
    /// The load bound: the worker with the longest match is taken while its pending work
    /// is at most `balance_factor × the least pending work + balance_slack_tokens`.
    pub balance_factor: f64,
    pub balance_slack_tokens: f64,
    /// Cost per uncached prompt token the worker would have to prefill.
    pub prefill_weight: f64,
    /// Cost per token already in flight on the worker (a batching engine runs them side by
    /// side: about 1 / its batch size).
    pub pending_weight: f64,
    /// Tokens assumed per request a worker reports running or waiting that this gateway
    /// did not send (another gateway's, say).
    pub request_tokens: f64,
    /// Cost of a full KV cache (`kv_cache_usage` 1.0), in tokens.
    pub kv_cache_weight: f64,
    /// Cost of an error rate of 1.0, in tokens.
    pub error_rate_weight: f64,
}

impl Default for CacheAwareConfig {
    fn default() -> Self {
        Self {
            chunk_bytes: 256,
            max_entries: 200_000,
            bytes_per_token: 4.0,
            default_decode_tokens: 256,
            min_match_ratio: 0.1,
            balance_factor: 1.5,
            balance_slack_tokens: 4096.0,
            prefill_weight: 1.0,
            pending_weight: 0.125,
            request_tokens: 512.0,
            kv_cache_weight: 2048.0,
            error_rate_weight: 16384.0,
        }
    }
}

impl CacheAwareConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let f = |name: &str| format!("routing.cache_aware.{name}");
        check(
            (16..=65_536).contains(&self.chunk_bytes),
            &f("chunk_bytes"),
            "must be between 16 and 65536",
        )?;
        check(
            (1_000..=100_000_000).contains(&self.max_entries),
            &f("max_entries"),
            "must be between 1000 and 100000000",
        )?;
        check(
            self.bytes_per_token.is_finite() && self.bytes_per_token >= 0.5,
            &f("bytes_per_token"),
            "must be a number >= 0.5",
        )?;
        check(
            (0.0..=1.0).contains(&self.min_match_ratio),
            &f("min_match_ratio"),
            "must be between 0 and 1",
        )?;
        check(
            self.balance_factor.is_finite() && self.balance_factor >= 1.0,
            &f("balance_factor"),
            "must be a number >= 1",
        )?;
        for (value, name) in [
            (self.balance_slack_tokens, "balance_slack_tokens"),
            (self.prefill_weight, "prefill_weight"),
            (self.pending_weight, "pending_weight"),
            (self.request_tokens, "request_tokens"),
            (self.kv_cache_weight, "kv_cache_weight"),
            (self.error_rate_weight, "error_rate_weight"),
        ] {
            check_weight(value, &f(name))?;
        }
        Ok(())
    }
}
