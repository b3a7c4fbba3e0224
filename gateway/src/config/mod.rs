//! Gateway configuration: one documented serde struct with defaults and a single
//! [`Config::validate`] whose messages name the offending field.
//!
//! Sources, lowest to highest precedence: built-in defaults < TOML file (`--config` /
//! `LLM_CONFIG`, else `conf/gateway.toml` when present) < environment (`LLM_*`) < command-line
//! flags. See [`sources`] for the merging and `conf/README.md` for every key.

pub mod sources;

use serde::{Deserialize, Serialize};

use crate::routing::Strategy;
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
    pub circuit_breaker: CircuitBreakerConfig,
    pub rate_limit: RateLimitConfig,
    pub auth: AuthConfig,
    pub sessions: crate::session::SessionsConfig,
    pub scheduler: crate::sched::SchedulerConfig,
    pub control: crate::control::ControlConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the public listener.
    pub host: String,
    /// Port of the public listener.
    pub port: u16,
    /// Worker threads for the proxy runtime; 0 = one per CPU.
    pub threads: usize,
    /// Seconds the gateway keeps serving in-flight requests after SIGTERM.
    pub grace_period_seconds: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Base URL, e.g. `http://10.0.0.5:8000` (a trailing `/v1` is accepted and dropped).
    pub url: String,
    /// Weight for `weighted_round_robin` and the consistent-hash ring.
    pub weight: u32,
    /// Models served. Empty = discover from the worker's `GET /v1/models`.
    pub models: Vec<String>,
}

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

/// Cost weights of `p2c_kv`: cost = waiting·w + running·w + kv·w + latency·w + error_rate·w.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct P2cConfig {
    pub waiting_weight: f64,
    pub running_weight: f64,
    pub kv_cache_weight: f64,
    pub latency_weight: f64,
    pub error_rate_weight: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistentHashConfig {
    /// Ring points per worker, multiplied by the worker's weight.
    pub virtual_nodes: u32,
    /// Bytes of the prompt used as the key when no session, user or API key is present.
    pub prefix_bytes: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Exploration probability of the ε-greedy choice.
    pub epsilon: f64,
    /// Learning rate of the per-worker cost estimate.
    pub learning_rate: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Time allowed to read a request body once its headers arrived.
    pub body_read_timeout_ms: u64,
    /// LLM requests in flight at once; more get 503 with `Retry-After` (0 = no limit).
    pub max_concurrent_requests: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Interval of the active `GET /health` + `GET /v1/models` probe per worker.
    pub check_interval_ms: u64,
    /// Timeout of one probe request.
    pub check_timeout_ms: u64,
    /// Interval of the `GET /metrics` load scrape per worker.
    pub scrape_interval_ms: u64,
    /// Consecutive failed checks before a worker is marked ERROR.
    pub failure_threshold: u32,
    /// Consecutive passed checks before an ERROR worker is READY again.
    pub recovery_threshold: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// TCP connect timeout to a worker.
    pub connect_timeout_ms: u64,
    /// Longest silence while reading a worker's response (per read: covers queueing + prefill).
    pub read_timeout_ms: u64,
    /// Idle pooled connections are closed after this; keep it below the workers' keep-alive (5 s).
    pub idle_timeout_ms: u64,
}

/// Retries on another worker while nothing reached the client.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included, each on a different worker (1 = no retries).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles per attempt up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// No retry starts later than this after the request arrived.
    pub total_timeout_ms: u64,
}

/// The per-worker circuit breaker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    pub enabled: bool,
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Seconds an open breaker waits before admitting trial requests.
    pub timeout_seconds: u64,
    /// Trial requests admitted while half-open.
    pub half_open_requests: u32,
    /// Successful trials that close the breaker.
    pub success_threshold: u32,
    /// A call whose response starts later than this counts as a failure.
    pub slow_call_threshold_ms: u64,
}

/// Token buckets (0 in a rate turns that bucket off).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Requests per second over all clients.
    pub global_rps: u32,
    /// Requests the global bucket lets through at once.
    pub global_burst: u32,
    /// Requests per minute per user (API key, else `user` field, else client IP).
    pub per_user_rpm: u32,
    /// Requests per second per worker; a worker at its limit is skipped, not failed.
    pub per_worker_qps: u32,
}

/// API keys. Empty `api_keys` = LLM endpoints open; no `admin_key` = management open.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub api_keys: Vec<String>,
    pub admin_key: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 9000,
            threads: 0,
            grace_period_seconds: 30,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            weight: 1,
            models: Vec::new(),
        }
    }
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

impl Default for ConsistentHashConfig {
    fn default() -> Self {
        Self {
            virtual_nodes: 150,
            prefix_bytes: 256,
        }
    }
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            epsilon: 0.1,
            learning_rate: 0.1,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            body_read_timeout_ms: 30_000,
            max_concurrent_requests: 4096,
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_ms: 25,
            max_backoff_ms: 1_000,
            total_timeout_ms: 30_000,
        }
    }
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: 5,
            timeout_seconds: 30,
            half_open_requests: 3,
            success_threshold: 3,
            slow_call_threshold_ms: 5_000,
        }
    }
}

impl CircuitBreakerConfig {
    pub fn settings(&self) -> crate::worker::breaker::BreakerSettings {
        crate::worker::breaker::BreakerSettings {
            enabled: self.enabled,
            failure_threshold: self.failure_threshold,
            timeout: std::time::Duration::from_secs(self.timeout_seconds),
            half_open_requests: self.half_open_requests,
            success_threshold: self.success_threshold,
            slow_call_threshold: std::time::Duration::from_millis(self.slow_call_threshold_ms),
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            global_rps: 100,
            global_burst: 200,
            per_user_rpm: 60,
            per_worker_qps: 50,
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval_ms: 5_000,
            check_timeout_ms: 2_000,
            scrape_interval_ms: 1_000,
            failure_threshold: 3,
            recovery_threshold: 2,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2_000,
            read_timeout_ms: 300_000,
            idle_timeout_ms: 4_000,
        }
    }
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

fn check_weight(value: f64, field: &str) -> Result<(), ConfigError> {
    check(
        value.is_finite() && value >= 0.0,
        field,
        "must be a finite number >= 0",
    )
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
            ConfigError::new(
                field.unwrap_or_else(|| "toml".into()),
                e.message().trim().to_string(),
            )
        })
    }

    /// Check every value; the first problem found is returned with its field name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            !self.server.host.trim().is_empty(),
            "server.host",
            "must not be empty",
        )?;
        check(
            self.server.threads <= 1024,
            "server.threads",
            "must be between 0 (auto) and 1024",
        )?;
        for (i, w) in self.workers.iter().enumerate() {
            let field = format!("workers[{i}].url");
            WorkerSpec::parse_url(&w.url).map_err(|e| ConfigError::new(&field, e))?;
            check(
                crate::worker::spec::WEIGHTS.contains(&w.weight),
                &format!("workers[{i}].weight"),
                "must be 1..=1000",
            )?;
        }
        let p = &self.routing.p2c;
        check_weight(p.waiting_weight, "routing.p2c.waiting_weight")?;
        check_weight(p.running_weight, "routing.p2c.running_weight")?;
        check_weight(p.kv_cache_weight, "routing.p2c.kv_cache_weight")?;
        check_weight(p.latency_weight, "routing.p2c.latency_weight")?;
        check_weight(p.error_rate_weight, "routing.p2c.error_rate_weight")?;
        let ch = &self.routing.consistent_hash;
        check(
            (1..=10_000).contains(&ch.virtual_nodes),
            "routing.consistent_hash.virtual_nodes",
            "must be 1..=10000",
        )?;
        check(
            (1..=65_536).contains(&ch.prefix_bytes),
            "routing.consistent_hash.prefix_bytes",
            "must be 1..=65536",
        )?;
        let a = &self.routing.adaptive;
        check(
            (0.0..=1.0).contains(&a.epsilon),
            "routing.adaptive.epsilon",
            "must be within 0..=1",
        )?;
        check(
            a.learning_rate > 0.0 && a.learning_rate <= 1.0,
            "routing.adaptive.learning_rate",
            "must be within (0, 1]",
        )?;
        check(
            self.limits.max_body_bytes >= 1024,
            "limits.max_body_bytes",
            "must be at least 1024",
        )?;
        check(
            self.limits.max_body_bytes <= 1 << 30,
            "limits.max_body_bytes",
            "must be at most 1 GiB",
        )?;
        check(
            self.limits.body_read_timeout_ms >= 1,
            "limits.body_read_timeout_ms",
            "must be >= 1",
        )?;
        let h = &self.health;
        check(
            h.check_interval_ms >= 10,
            "health.check_interval_ms",
            "must be >= 10",
        )?;
        check(
            h.check_timeout_ms >= 1,
            "health.check_timeout_ms",
            "must be >= 1",
        )?;
        check(
            h.scrape_interval_ms >= 10,
            "health.scrape_interval_ms",
            "must be >= 10",
        )?;
        check(
            h.failure_threshold >= 1,
            "health.failure_threshold",
            "must be >= 1",
        )?;
        check(
            h.recovery_threshold >= 1,
            "health.recovery_threshold",
            "must be >= 1",
        )?;
        let u = &self.upstream;
        check(
            u.connect_timeout_ms >= 1,
            "upstream.connect_timeout_ms",
            "must be >= 1",
        )?;
        check(
            u.read_timeout_ms >= 1,
            "upstream.read_timeout_ms",
            "must be >= 1",
        )?;
        check(
            u.idle_timeout_ms >= 1,
            "upstream.idle_timeout_ms",
            "must be >= 1",
        )?;
        let r = &self.retry;
        check(
            (1..=10).contains(&r.max_attempts),
            "retry.max_attempts",
            "must be 1..=10 (1 disables retries)",
        )?;
        check(
            r.max_backoff_ms >= r.initial_backoff_ms,
            "retry.max_backoff_ms",
            "must be >= retry.initial_backoff_ms",
        )?;
        check(
            r.total_timeout_ms >= 1,
            "retry.total_timeout_ms",
            "must be >= 1",
        )?;
        let b = &self.circuit_breaker;
        check(
            b.failure_threshold >= 1,
            "circuit_breaker.failure_threshold",
            "must be >= 1",
        )?;
        check(
            b.half_open_requests >= 1,
            "circuit_breaker.half_open_requests",
            "must be >= 1",
        )?;
        check(
            (1..=b.half_open_requests).contains(&b.success_threshold),
            "circuit_breaker.success_threshold",
            "must be between 1 and circuit_breaker.half_open_requests",
        )?;
        check(
            b.slow_call_threshold_ms >= 1,
            "circuit_breaker.slow_call_threshold_ms",
            "must be >= 1",
        )?;
        let rl = &self.rate_limit;
        check(
            rl.global_rps == 0 || rl.global_burst >= 1,
            "rate_limit.global_burst",
            "must be >= 1 when rate_limit.global_rps is set",
        )?;
        for (i, k) in self.auth.api_keys.iter().enumerate() {
            check(
                k.trim().len() >= 8,
                &format!("auth.api_keys[{i}]"),
                "API keys must have at least 8 characters",
            )?;
        }
        if let Some(k) = &self.auth.admin_key {
            check(
                k.trim().len() >= 8,
                "auth.admin_key",
                "must have at least 8 characters",
            )?;
        }
        self.sessions.validate()?;
        self.scheduler.validate()?;
        self.control.validate()
    }

    /// The worker list as parsed specs (validated URLs and weights).
    pub fn worker_specs(&self) -> Result<Vec<WorkerSpec>, ConfigError> {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                WorkerSpec::new(&w.url, w.weight, w.models.clone())
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
        assert_eq!(c.routing.strategy, Strategy::P2cKv);
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
        let mut c = Config::default();
        c.workers.push(WorkerConfig {
            url: "ftp://x".into(),
            ..Default::default()
        });
        assert_eq!(c.validate().unwrap_err().field, "workers[0].url");
    }
}
