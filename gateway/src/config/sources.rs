//! Where configuration comes from and in which order it is merged:
//! defaults < TOML file < environment (`LLM_*`) < command-line flags.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, WorkerConfig};
use crate::routing::Strategy;

/// The default file, used when no path is given and it exists.
pub const DEFAULT_CONFIG_PATH: &str = "conf/gateway.toml";

/// Values that override the file: filled from the environment or from flags.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `http://a:8000,http://b:8000;weight=2` (replaces the file's worker list).
    pub worker_urls: Option<String>,
    pub routing_strategy: Option<String>,
    pub threads: Option<usize>,
    pub rate_limit_enabled: Option<bool>,
    pub circuit_breaker_enabled: Option<bool>,
    /// Comma-separated API keys (replaces `auth.api_keys`).
    pub api_keys: Option<String>,
    pub admin_key: Option<String>,
    pub allow_insecure_admin: Option<bool>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    /// Comma-separated folders (replaces `control.model_dirs`).
    pub model_dirs: Option<String>,
    /// `upstream.ca_file`.
    pub upstream_ca_file: Option<String>,
    /// `redis.url` (`LLM_REDIS_URL`).
    pub redis_url: Option<String>,
    /// `[telemetry]` from the standard `OTEL_*` variables.
    pub otel: super::otel_env::OtelEnv,
    /// `[discovery]` from the `LLM_DISCOVERY_*` variables.
    pub discovery: super::discovery::DiscoveryEnv,
}

pub(crate) fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            name,
            format!("`{v}` is not a boolean (true/false)"),
        )),
    }
}

impl Overrides {
    /// Read `LLM_HOST`, `LLM_PORT`, `LLM_WORKER_URLS`, `LLM_ROUTING_STRATEGY`, `LLM_THREADS`,
    /// `LLM_RATE_LIMIT_ENABLED`, `LLM_CIRCUIT_BREAKER_ENABLED`, `LLM_API_KEYS`, `LLM_ADMIN_KEY`,
    /// `LLM_ALLOW_INSECURE_ADMIN`, `LLM_TLS_CERT_FILE`, `LLM_TLS_KEY_FILE`, `LLM_MODEL_DIRS`,
    /// `LLM_UPSTREAM_CA_FILE`, `LLM_REDIS_URL`, the `LLM_DISCOVERY_*` variables of
    /// [`super::discovery`] and the `OTEL_*` variables of [`super::otel_env`]
    /// through `get` (tests pass a map; `main` passes `std::env::var`).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let port = match get("LLM_PORT") {
            Some(v) => Some(v.trim().parse::<u16>().map_err(|_| {
                ConfigError::new("LLM_PORT", format!("`{v}` is not a port number (0-65535)"))
            })?),
            None => None,
        };
        let threads = match get("LLM_THREADS") {
            Some(v) => Some(v.trim().parse::<usize>().map_err(|_| {
                ConfigError::new("LLM_THREADS", format!("`{v}` is not a thread count"))
            })?),
            None => None,
        };
        let flag = |name: &str| get(name).map(|v| parse_bool(name, &v)).transpose();
        Ok(Self {
            otel: super::otel_env::OtelEnv::from_env(&get)?,
            discovery: super::discovery::DiscoveryEnv::from_env(&get)?,
            rate_limit_enabled: flag("LLM_RATE_LIMIT_ENABLED")?,
            circuit_breaker_enabled: flag("LLM_CIRCUIT_BREAKER_ENABLED")?,
            api_keys: get("LLM_API_KEYS"),
            admin_key: get("LLM_ADMIN_KEY").filter(|v| !v.trim().is_empty()),
            allow_insecure_admin: flag("LLM_ALLOW_INSECURE_ADMIN")?,
            tls_cert_file: get("LLM_TLS_CERT_FILE").filter(|v| !v.trim().is_empty()),
            tls_key_file: get("LLM_TLS_KEY_FILE").filter(|v| !v.trim().is_empty()),
            model_dirs: get("LLM_MODEL_DIRS").filter(|v| !v.trim().is_empty()),
            upstream_ca_file: get("LLM_UPSTREAM_CA_FILE").filter(|v| !v.trim().is_empty()),
            redis_url: get("LLM_REDIS_URL").filter(|v| !v.trim().is_empty()),
            host: get("LLM_HOST").filter(|v| !v.trim().is_empty()),
            port,
            worker_urls: get("LLM_WORKER_URLS").filter(|v| !v.trim().is_empty()),
            routing_strategy: get("LLM_ROUTING_STRATEGY").filter(|v| !v.trim().is_empty()),
            threads,
        })
    }

    /// Apply these overrides on top of `config`; `origin` names the source in errors.
    pub fn apply(&self, config: &mut Config, origin: &str) -> Result<(), ConfigError> {
        if let Some(h) = &self.host {
            config.server.host = h.trim().to_string();
        }
        if let Some(p) = self.port {
            config.server.port = p;
        }
        if let Some(t) = self.threads {
            config.server.threads = t;
        }
        if let Some(urls) = &self.worker_urls {
            config.workers = parse_worker_urls(urls)
                .map_err(|e| ConfigError::new(format!("{origin} worker urls"), e))?;
        }
        if let Some(on) = self.rate_limit_enabled {
            config.rate_limit.enabled = on;
        }
        if let Some(on) = self.circuit_breaker_enabled {
            config.circuit_breaker.enabled = on;
        }
        if let Some(keys) = &self.api_keys {
            config.auth.api_keys = keys
                .split(',')
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect();
        }
        if let Some(k) = &self.admin_key {
            config.auth.admin_key = Some(k.trim().to_string());
        }
        if let Some(dirs) = &self.model_dirs {
            config.control.model_dirs = dirs
                .split(',')
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect();
        }
        if let Some(f) = &self.upstream_ca_file {
            config.upstream.ca_file = Some(f.trim().to_string());
        }
        if let Some(url) = &self.redis_url {
            config.redis.url = Some(url.trim().to_string());
        }
        self.otel.apply(&mut config.telemetry);
        self.discovery.apply(&mut config.discovery);
        if let Some(on) = self.allow_insecure_admin {
            config.auth.allow_insecure_admin = on;
        }
        if self.tls_cert_file.is_some() || self.tls_key_file.is_some() {
            let tls = config.server.tls.get_or_insert_with(Default::default);
            if let Some(f) = &self.tls_cert_file {
                tls.cert_file = f.trim().into();
            }
            if let Some(f) = &self.tls_key_file {
                tls.key_file = f.trim().into();
            }
        }
        if let Some(s) = &self.routing_strategy {
            config.routing.strategy = s
                .parse::<Strategy>()
                .map_err(|e| ConfigError::new(format!("{origin} routing strategy"), e))?;
        }
        Ok(())
    }
}

/// Parse `LLM_WORKER_URLS`: comma-separated URLs, each optionally followed by `;weight=N`.
pub fn parse_worker_urls(text: &str) -> Result<Vec<WorkerConfig>, String> {
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = entry.split(';');
        let url = parts.next().unwrap_or_default().trim().to_string();
        let mut worker = WorkerConfig {
            url,
            ..Default::default()
        };
        for opt in parts {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| format!("`{opt}` in `{entry}`: expected key=value"))?;
            match k.trim() {
                "weight" => {
                    worker.weight = v
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|w| crate::worker::spec::WEIGHTS.contains(w))
                        .ok_or_else(|| format!("weight `{v}` in `{entry}` must be 1..=1000"))?;
                }
                other => {
                    return Err(format!(
                        "unknown option `{other}` in `{entry}` (known: weight)"
                    ))
                }
            }
        }
        out.push(worker);
    }
    Ok(out)
}

/// Read and parse a TOML file.
pub fn read_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("config", format!("cannot read {}: {e}", path.display())))?;
    Config::from_toml(&text)
}

/// Build the effective configuration. `explicit` is `--config`/`LLM_CONFIG`; without it the
/// default path is used when it exists. Returns the config and the file it came from.
pub fn load(
    explicit: Option<&Path>,
    env: &Overrides,
    flags: &Overrides,
) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
    };
    let mut config = match &path {
        Some(p) => read_file(p)?,
        None => Config::default(),
    };
    env.apply(&mut config, "environment")?;
    flags.apply(&mut config, "flag")?;
    config.validate()?;
    Ok((config, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn worker_urls_with_weights() {
        let w = parse_worker_urls("http://a:8000, http://b:8001;weight=3,").unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].weight, 1);
        assert_eq!(w[1].url, "http://b:8001");
        assert_eq!(w[1].weight, 3);
        assert!(parse_worker_urls("http://a:1;weight=0").is_err());
        assert!(parse_worker_urls("http://a:1;colour=red").is_err());
    }

    #[test]
    fn precedence_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("sagellm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("g.toml");
        std::fs::write(
            &file,
            "[server]\nport = 9100\nhost = \"127.0.0.1\"\n[routing]\nstrategy = \"least_queue\"\n[[workers]]\nurl = \"http://127.0.0.1:1\"\n",
        )
        .unwrap();
        let env_map: HashMap<&str, &str> = [
            ("LLM_PORT", "9200"),
            ("LLM_WORKER_URLS", "http://127.0.0.1:2;weight=2"),
        ]
        .into();
        let env = Overrides::from_env(|k| env_map.get(k).map(|v| v.to_string())).unwrap();
        let flags = Overrides {
            routing_strategy: Some("round_robin".into()),
            ..Default::default()
        };
        let (c, path) = load(Some(&file), &env, &flags).unwrap();
        assert_eq!(path.as_deref(), Some(file.as_path()));
        assert_eq!(c.server.host, "127.0.0.1"); // file
        assert_eq!(c.server.port, 9200); // env beats file
        assert_eq!(c.workers.len(), 1);
        assert_eq!(c.workers[0].weight, 2);
        assert_eq!(c.routing.strategy, Strategy::RoundRobin); // flag beats file
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn protection_switches_and_keys_from_env() {
        let env_map: HashMap<&str, &str> = [
            ("LLM_RATE_LIMIT_ENABLED", "false"),
            ("LLM_CIRCUIT_BREAKER_ENABLED", "0"),
            ("LLM_API_KEYS", "key-aaaaaaaa, key-bbbbbbbb"),
            ("LLM_ADMIN_KEY", "admin-secret"),
            ("LLM_ALLOW_INSECURE_ADMIN", "true"),
            ("LLM_TLS_CERT_FILE", "/etc/gw/cert.pem"),
            ("LLM_TLS_KEY_FILE", "/etc/gw/key.pem"),
            ("LLM_MODEL_DIRS", "/srv/models, models"),
            ("LLM_UPSTREAM_CA_FILE", "/etc/gw/workers-ca.pem"),
            ("LLM_REDIS_URL", " redis://10.0.0.5:6379/1 "),
        ]
        .into();
        let env = Overrides::from_env(|k| env_map.get(k).map(|v| v.to_string())).unwrap();
        let mut c = Config::default();
        env.apply(&mut c, "environment").unwrap();
        assert!(!c.rate_limit.enabled && !c.circuit_breaker.enabled);
        assert_eq!(c.auth.api_keys, vec!["key-aaaaaaaa", "key-bbbbbbbb"]);
        assert_eq!(c.auth.admin_key.as_deref(), Some("admin-secret"));
        assert!(c.auth.allow_insecure_admin);
        assert_eq!(c.control.model_dirs, vec!["/srv/models", "models"]);
        assert_eq!(c.redis.url.as_deref(), Some("redis://10.0.0.5:6379/1"));
        c.redis.validate().unwrap();
        assert_eq!(
            c.upstream.ca_file.as_deref(),
            Some("/etc/gw/workers-ca.pem")
        );
        let tls = c.server.tls.as_ref().unwrap();
        assert_eq!(
            (tls.cert_file.as_str(), tls.key_file.as_str()),
            ("/etc/gw/cert.pem", "/etc/gw/key.pem")
        );
        let e = Overrides::from_env(|k| (k == "LLM_ALLOW_INSECURE_ADMIN").then(|| "maybe".into()))
            .unwrap_err();
        assert_eq!(e.field, "LLM_ALLOW_INSECURE_ADMIN");
    }

    #[test]
    fn bad_env_is_named() {
        let e =
            Overrides::from_env(|k| (k == "LLM_PORT").then(|| "ninety".to_string())).unwrap_err();
        assert_eq!(e.field, "LLM_PORT");
        let env = Overrides {
            routing_strategy: Some("fastest".into()),
            ..Default::default()
        };
        let e = env
            .apply(&mut Config::default(), "environment")
            .unwrap_err();
        assert!(e.field.contains("routing strategy"), "{e}");
    }
}
