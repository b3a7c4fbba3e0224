//! `[routing]` with `[routing.p2c]`, `[routing.consistent_hash]` and `[routing.adaptive]`:
//! the routing strategy and its parameters.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};
use crate::routing::Strategy;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// One of the seven policy tags (see `routing`).
    pub strategy: Strategy,
    /// Seed for the randomised policies (`p2c_kv`, `adaptive`); unset = seeded from the clock.
    pub seed: Option<u64>,
    pub p2c: P2cConfig,
    pub consistent_hash: ConsistentHashConfig,
    pub adaptive: AdaptiveConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::P2cKv,
            seed: None,
            p2c: P2cConfig::default(),
            consistent_hash: ConsistentHashConfig::default(),
            adaptive: AdaptiveConfig::default(),
        }
    }
}

impl RoutingConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.p2c.validate()?;
        self.consistent_hash.validate()?;
        self.adaptive.validate()
    }
}

/// `[routing.p2c]`: cost weights of `p2c_kv`:
/// cost = waiting·w + running·w + kv·w + latency·w + error_rate·w.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct P2cConfig {
    pub waiting_weight: f64,
    pub running_weight: f64,
    pub kv_cache_weight: f64,
    pub latency_weight: f64,
    pub error_rate_weight: f64,
}

impl Default for P2cConfig {
    fn default() -> Self {
        Self {
            waiting_weight: 1.0,
            running_weight: 0.5,
            kv_cache_weight: 2.0,
            latency_weight: 0.3,
            error_rate_weight: 5.0,
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
        check_weight(self.error_rate_weight, "routing.p2c.error_rate_weight")
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
