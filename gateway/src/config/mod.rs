//! Gateway configuration: one documented serde struct per section of the TOML file, each in
//! its own file with its field docs, its `Default` and its `validate` (messages name the
//! field), mirroring `conf/README.md`:
//!
//! | section | file |
//! |---|---|
//! | `[server]` | [`server`] |
//! | `[server.tls]` | [`tls`] |
//! | `[[workers]]` | [`workers`] |
//! | `[routing]` (+ `.p2c`, `.consistent_hash`, `.adaptive`, `.cache_aware`) | [`routing`] |
//! | `[limits]` | [`limits`] |
//! | `[health]` | [`health`] |
//! | `[upstream]` | [`upstream`] |
//! | `[retry]` | [`retry`] |
//! | `[failover]` | [`failover`] |
//! | `[circuit_breaker]` | [`circuit_breaker`] |
//! | `[rate_limit]` | [`rate_limit`] |
//! | `[auth]` | [`auth`] |
//! | `[sessions]` | [`sessions`] |
//! | `[scheduler]` | [`scheduler`] |
//! | `[control]` | [`control`] |
//! | `[telemetry]` | [`telemetry`] |
//! | `[redis]` | [`redis`] |
//! | `[discovery]` | [`discovery`] |
//! | `[[quotas]]` | [`quotas`] |
//!
//! Sources, lowest to highest precedence: built-in defaults < TOML file (`--config` /
//! `LLM_CONFIG`, else `conf/gateway.toml` when present) < environment (`LLM_*`) < command-line
//! flags. See [`sources`] for the merging.

mod auth;
mod circuit_breaker;
pub(crate) mod control;
pub mod discovery;
mod discovery_k8s;
mod failover;
mod health;
mod limits;
mod otel_env;
mod quotas;
mod rate_limit;
mod redis;
mod retry;
mod routing;
mod scheduler;
mod server;
mod sessions;
pub mod sources;
mod telemetry;
mod tls;
mod upstream;
mod workers;

use serde::{Deserialize, Serialize};

pub use self::auth::AuthConfig;
pub use circuit_breaker::CircuitBreakerConfig;
pub use control::ControlConfig;
pub use discovery::{DiscoveryConfig, DiscoveryMode, DnsRecord};
pub use failover::FailoverConfig;
pub use health::HealthConfig;
pub use limits::LimitsConfig;
pub use quotas::KeyQuota;
pub use rate_limit::RateLimitConfig;
pub use redis::{RedisConfig, RedisFailure};
pub use retry::RetryConfig;
pub use routing::{
    AdaptiveConfig, CacheAwareConfig, ConsistentHashConfig, P2cConfig, RoutingConfig,
};
pub use scheduler::{KeySlo, QueuePolicy, SchedulerConfig};
pub use server::ServerConfig;
pub use sessions::SessionsConfig;
pub use telemetry::TelemetryConfig;
pub use tls::TlsConfig;
pub use upstream::UpstreamConfig;
pub use workers::WorkerConfig;

/// Where a running config came from (the file to watch and the overrides to re-apply).
pub use crate::reload::ConfigSource;
/// The routing strategy is a config value (the policies themselves live in `routing`).
pub use crate::routing::Strategy;

use crate::worker::spec::WorkerSpec;

/// The whole gateway configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    /// Static worker list. `LLM_WORKER_URLS` / `--worker-urls` replace it.
    pub workers: Vec<WorkerConfig>,
    pub routing: RoutingConfig,
    pub limits: LimitsConfig,
    pub health: HealthConfig,
    pub upstream: UpstreamConfig,
    pub retry: RetryConfig,
    pub failover: FailoverConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    pub rate_limit: RateLimitConfig,
    pub auth: AuthConfig,
    pub sessions: SessionsConfig,
    pub scheduler: SchedulerConfig,
    pub control: ControlConfig,
    pub telemetry: TelemetryConfig,
    pub redis: RedisConfig,
    /// Workers found by DNS besides the static list.
    pub discovery: DiscoveryConfig,
    /// Per-API-key quotas (each key is also a valid API key).
    pub quotas: Vec<KeyQuota>,
}

/// A configuration that failed validation; the message names the field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `Err` naming `field` unless `ok` (the building block of every `validate`).
pub(crate) fn check(ok: bool, field: &str, message: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(field, message))
    }
}

/// The dotted key of the `key = value` line containing byte `offset`, with its table header:
/// `limits.max_concurrent_requests`, `workers[1].weight`. `None` when the line is no
/// assignment (a broken header, say).
fn toml_key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    // The last table header above the line, and how often an array table repeated.
    let mut table = String::new();
    let mut array_index: Option<usize> = None;
    for l in text[..line_start].lines().map(str::trim) {
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            array_index = Some(if table == name {
                array_index.map_or(0, |i| i + 1)
            } else {
                0
            });
            table = name;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
            array_index = None;
        }
    }
    Some(match (table.is_empty(), array_index) {
        (true, _) => key.to_string(),
        (false, Some(i)) => format!("{table}[{i}].{key}"),
        (false, None) => format!("{table}.{key}"),
    })
}

impl Config {
    /// Parse TOML text (unknown keys are errors: they are usually typos).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::new(
                "config",
                "the file is empty (half-written?)",
            ));
        }
        toml::from_str::<Config>(text).map_err(|e| {
            let field = e.span().map(|s| {
                toml_key_at(text, s.start).unwrap_or_else(|| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
            });
            let message = match e.message().trim() {
                // Some syntax errors (e.g. a stray character in a comment) carry no message.
                "" => "is not valid TOML here".to_string(),
                m => m.to_string(),
            };
            ConfigError::new(field.unwrap_or_else(|| "toml".into()), message)
        })
    }

    /// Check every value, section by section; the first problem found is returned with its
    /// field name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        workers::validate_workers(&self.workers)?;
        self.routing.validate()?;
        self.limits.validate()?;
        self.health.validate()?;
        self.upstream.validate()?;
        self.retry.validate()?;
        self.failover.validate()?;
        self.circuit_breaker.validate()?;
        self.rate_limit.validate()?;
        self.auth.validate()?;
        self.sessions.validate()?;
        self.scheduler.validate()?;
        self.control.validate()?;
        self.telemetry.validate()?;
        self.redis.validate()?;
        self.discovery.validate()?;
        quotas::validate_quotas(&self.quotas)
    }

    /// The worker list as parsed specs (validated URLs and weights).
    pub fn worker_specs(&self) -> Result<Vec<WorkerSpec>, ConfigError> {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let options = workers::worker_options(i, w)?;
                if options.insecure_skip_verify {
                    tracing::warn!(worker = %w.url, "insecure_skip_verify: this worker's certificate is not checked");
                }
                WorkerSpec::new(&w.url, w.weight, w.models.clone())
                    .map(|spec| spec.with_options(options))
                    .map_err(|e| ConfigError::new(format!("workers[{i}].url"), e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.server.port, 9000);
        assert_eq!(c.routing.strategy, Strategy::CacheAware);
        assert_eq!(c.limits.max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(c.routing.consistent_hash.virtual_nodes, 150);
    }

    #[test]
    fn the_shipped_file_lists_the_defaults() {
        let shipped = Config::from_toml(include_str!("../../../conf/gateway.toml")).unwrap();
        assert_eq!(shipped, Config::default());
    }

    #[test]
    fn parses_inline_toml() {
        let c = Config::from_toml(
            r#"
            [server]
            port = 9100
            [[workers]]
            url = "http://127.0.0.1:8001"
            weight = 3
            [routing]
            strategy = "round_robin"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.server.port, 9100);
        assert_eq!(c.workers[0].weight, 3);
        assert_eq!(c.routing.strategy, Strategy::RoundRobin);
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::from_toml("[routing]\nstrategy = \"fastest\"").unwrap_err();
        assert!(e.message.contains("unknown variant"), "{e}");
        assert_eq!(e.field, "routing.strategy");
        let e = Config::from_toml("[limits]\nmax_body_bytes = -5").unwrap_err();
        assert_eq!(e.field, "limits.max_body_bytes");
        let e = Config::from_toml("port = 1\n").unwrap_err();
        assert_eq!(e.field, "port", "{e}");
        let two = "[[workers]]\nurl = \"http://a:1\"\n[[workers]]\nurl = \"http://b:1\"\nweight = \"x\"\n";
        assert_eq!(
            Config::from_toml(two).unwrap_err().field,
            "workers[1].weight"
        );
        let e = Config::from_toml("[routing\nstrategy = 1").unwrap_err();
        assert!(e.field.starts_with("line "), "{e}");
        let e = Config::from_toml("   ").unwrap_err();
        assert_eq!(e.field, "config");
        let mut c = Config::default();
        c.routing.adaptive.epsilon = 2.0;
        assert_eq!(c.validate().unwrap_err().field, "routing.adaptive.epsilon");
        for (toml, field) in [
            ("chunk_bytes = 4", "chunk_bytes"),
            ("max_entries = 10", "max_entries"),
            ("min_match_ratio = 1.5", "min_match_ratio"),
            ("balance_factor = 0.5", "balance_factor"),
            ("pending_weight = -1.0", "pending_weight"),
        ] {
            let c = Config::from_toml(&format!("[routing.cache_aware]\n{toml}")).unwrap();
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, format!("routing.cache_aware.{field}"), "{e}");
        }
        let c = Config::from_toml("[routing.p2c]\nprefix_weight = -2.0").unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "routing.p2c.prefix_weight");
        let mut c = Config::default();
        c.workers.push(WorkerConfig {
            url: "ftp://x".into(),
            ..Default::default()
        });
        assert_eq!(c.validate().unwrap_err().field, "workers[0].url");
    }
}
