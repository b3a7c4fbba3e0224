//! `[discovery]`: where workers are found besides the static list. `static` (the default)
//! uses only `[[workers]]` / `LLM_WORKER_URLS`; `dns` also follows the records of a name (a
//! Kubernetes headless Service, a Consul or SRV name). Read at start-up: a change in the file is
//! reported as needing a restart. The `LLM_DISCOVERY_*` variables ([`DiscoveryEnv`]) override
//! the file.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

pub use super::discovery_k8s::K8sDiscoveryConfig;
use super::{check, ConfigError};

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMode {
    /// Only the configured list (and the management API, and launched engines).
    #[default]
    Static,
    /// The configured list plus the workers a DNS name resolves to.
    Dns,
    /// The configured list plus the ready endpoints of Kubernetes EndpointSlices.
    K8s,
}

/// Which records of `dns.name` list the workers.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DnsRecord {
    /// SRV when the name starts with `_` (`_http._tcp.vllm…`), else A/AAAA.
    #[default]
    Auto,
    /// A and AAAA records, each address with `dns.port`.
    A,
    /// SRV records: target and port from each record, weight from its weight.
    Srv,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    pub mode: DiscoveryMode,
    /// Seconds between refreshes (sooner when the records' TTL is shorter, never under 1 s).
    pub interval_seconds: u64,
    pub dns: DnsDiscoveryConfig,
    pub k8s: K8sDiscoveryConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsDiscoveryConfig {
    /// The name to resolve, e.g. `vllm-headless.llm.svc.cluster.local`.
    pub name: String,
    /// The workers' port for A/AAAA records (SRV records carry their own).
    pub port: u16,
    pub record: DnsRecord,
    /// The DNS server to ask, `ip:port` (or `ip`, port 53). Unset: the system resolver
    /// (`/etc/resolv.conf`).
    pub server: Option<String>,
    /// One lookup's time limit; a lookup that fails keeps the last good set.
    pub timeout_ms: u64,
    /// Models of the discovered workers. Empty: each worker's `GET /v1/models`.
    pub models: Vec<String>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            mode: DiscoveryMode::Static,
            interval_seconds: 10,
            dns: DnsDiscoveryConfig::default(),
            k8s: K8sDiscoveryConfig::default(),
        }
    }
}

impl Default for DnsDiscoveryConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            port: 0,
            record: DnsRecord::Auto,
            server: None,
            timeout_ms: 2_000,
            models: Vec::new(),
        }
    }
}

impl DnsDiscoveryConfig {
    /// Whether SRV records are asked for (else A/AAAA).
    pub fn uses_srv(&self) -> bool {
        match self.record {
            DnsRecord::Srv => true,
            DnsRecord::A => false,
            DnsRecord::Auto => self.name.starts_with('_'),
        }
    }

    /// The configured server as an address (`None`: the system resolver).
    pub fn server_addr(&self) -> Result<Option<SocketAddr>, String> {
        let Some(s) = self.server.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Some(addr));
        }
        s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map(|ip| Some(SocketAddr::new(ip, 53)))
            .map_err(|_| format!("`{s}` is not an ip:port address"))
    }
}

/// A DNS name: labels of letters, digits, `-` and `_`, 1..=63 bytes each, 253 in all.
fn valid_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl DiscoveryConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=3_600).contains(&self.interval_seconds),
            "discovery.interval_seconds",
            "must be 1..=3600",
        )?;
        let dns = &self.dns;
        check(
            (10..=30_000).contains(&dns.timeout_ms),
            "discovery.dns.timeout_ms",
            "must be 10..=30000",
        )?;
        dns.server_addr()
            .map_err(|e| ConfigError::new("discovery.dns.server", e))?;
        if self.mode == DiscoveryMode::Dns {
            check(
                valid_name(&dns.name),
                "discovery.dns.name",
                "must be a DNS name (mode = \"dns\" needs one)",
            )?;
            check(
                dns.uses_srv() || dns.port != 0,
                "discovery.dns.port",
                "is needed for A/AAAA records (SRV records carry their own port)",
            )?;
        }
        self.k8s.validate(self.mode == DiscoveryMode::K8s)
    }
}

/// `[discovery]` values from `LLM_DISCOVERY_MODE`, `LLM_DISCOVERY_DNS_NAME`,
/// `LLM_DISCOVERY_DNS_PORT`, `LLM_DISCOVERY_DNS_SERVER`, `LLM_DISCOVERY_INTERVAL_SECONDS`,
/// `LLM_DISCOVERY_K8S_NAMESPACE` and `LLM_DISCOVERY_K8S_SELECTOR`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiscoveryEnv {
    pub mode: Option<DiscoveryMode>,
    pub dns_name: Option<String>,
    pub dns_port: Option<u16>,
    pub dns_server: Option<String>,
    pub interval_seconds: Option<u64>,
    pub k8s_namespace: Option<String>,
    pub k8s_selector: Option<String>,
}

impl DiscoveryEnv {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str| -> Result<Option<u64>, ConfigError> {
            set(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| ConfigError::new(name, format!("`{v}` is not a number")))
                })
                .transpose()
        };
        let mode = set("LLM_DISCOVERY_MODE")
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "static" => Ok(DiscoveryMode::Static),
                "dns" => Ok(DiscoveryMode::Dns),
                "k8s" | "kubernetes" => Ok(DiscoveryMode::K8s),
                _ => Err(ConfigError::new(
                    "LLM_DISCOVERY_MODE",
                    format!("`{v}` is not a discovery mode (static, dns, k8s)"),
                )),
            })
            .transpose()?;
        let dns_port = number("LLM_DISCOVERY_DNS_PORT")?
            .map(|p| {
                u16::try_from(p).map_err(|_| {
                    ConfigError::new("LLM_DISCOVERY_DNS_PORT", format!("`{p}` is not a port"))
                })
            })
            .transpose()?;
        Ok(Self {
            mode,
            dns_name: set("LLM_DISCOVERY_DNS_NAME"),
            dns_port,
            dns_server: set("LLM_DISCOVERY_DNS_SERVER"),
            interval_seconds: number("LLM_DISCOVERY_INTERVAL_SECONDS")?,
            k8s_namespace: set("LLM_DISCOVERY_K8S_NAMESPACE"),
            k8s_selector: set("LLM_DISCOVERY_K8S_SELECTOR"),
        })
    }

    pub fn apply(&self, c: &mut DiscoveryConfig) {
        if let Some(m) = self.mode {
            c.mode = m;
        }
        if let Some(n) = &self.dns_name {
            c.dns.name = n.clone();
        }
        if let Some(p) = self.dns_port {
            c.dns.port = p;
        }
        if let Some(s) = &self.dns_server {
            c.dns.server = Some(s.clone());
        }
        if let Some(i) = self.interval_seconds {
            c.interval_seconds = i;
        }
        if let Some(n) = &self.k8s_namespace {
            c.k8s.namespace = n.clone();
        }
        if let Some(s) = &self.k8s_selector {
            c.k8s.selector = s.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(name: &str, port: u16) -> DiscoveryConfig {
        DiscoveryConfig {
            mode: DiscoveryMode::Dns,
            dns: DnsDiscoveryConfig {
                name: name.into(),
                port,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn fields_are_checked_by_name() {
        DiscoveryConfig::default().validate().unwrap();
        dns("vllm-headless.llm.svc.cluster.local", 8000)
            .validate()
            .unwrap();
        dns("_http._tcp.vllm.llm.svc.cluster.local.", 0)
            .validate()
            .unwrap();
        let field = |c: DiscoveryConfig| c.validate().unwrap_err().field;
        assert_eq!(field(dns("", 8000)), "discovery.dns.name");
        assert_eq!(field(dns("a..b", 8000)), "discovery.dns.name");
        assert_eq!(field(dns("a b", 8000)), "discovery.dns.name");
        assert_eq!(field(dns(&"x".repeat(64), 8000)), "discovery.dns.name");
        assert_eq!(field(dns("vllm", 0)), "discovery.dns.port");
        let mut srv = dns("vllm", 0);
        srv.dns.record = DnsRecord::Srv;
        srv.validate().unwrap();
        let mut c = dns("vllm", 1);
        c.interval_seconds = 0;
        assert_eq!(field(c), "discovery.interval_seconds");
        let mut c = dns("vllm", 1);
        c.dns.server = Some("dns.example:53".into());
        assert_eq!(field(c), "discovery.dns.server");
        let mut c = dns("vllm", 1);
        c.dns.timeout_ms = 0;
        assert_eq!(field(c), "discovery.dns.timeout_ms");
    }

    #[test]
    fn server_addresses_default_to_port_53() {
        let with = |s: &str| DnsDiscoveryConfig {
            server: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(
            with("127.0.0.1:5353").server_addr().unwrap(),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            with("10.96.0.10").server_addr().unwrap(),
            Some("10.96.0.10:53".parse().unwrap())
        );
        assert_eq!(
            with("[::1]").server_addr().unwrap(),
            Some("[::1]:53".parse().unwrap())
        );
        assert_eq!(DnsDiscoveryConfig::default().server_addr().unwrap(), None);
    }

    #[test]
    fn environment_overrides() {
        let vars = [
            ("LLM_DISCOVERY_MODE", "DNS"),
            ("LLM_DISCOVERY_DNS_NAME", " vllm.llm.svc "),
            ("LLM_DISCOVERY_DNS_PORT", "8000"),
            ("LLM_DISCOVERY_DNS_SERVER", "127.0.0.1:5353"),
            ("LLM_DISCOVERY_INTERVAL_SECONDS", "3"),
        ];
        let get = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let env = DiscoveryEnv::from_env(get).unwrap();
        let mut c = DiscoveryConfig::default();
        env.apply(&mut c);
        assert_eq!(c.mode, DiscoveryMode::Dns);
        assert_eq!(c.dns.name, "vllm.llm.svc");
        assert_eq!(c.dns.port, 8000);
        assert_eq!(c.dns.server.as_deref(), Some("127.0.0.1:5353"));
        assert_eq!(c.interval_seconds, 3);
        c.validate().unwrap();
        let k8s = [
            ("LLM_DISCOVERY_MODE", "k8s"),
            ("LLM_DISCOVERY_K8S_NAMESPACE", "llm"),
            (
                "LLM_DISCOVERY_K8S_SELECTOR",
                "kubernetes.io/service-name=vllm",
            ),
        ];
        let get = |k: &str| {
            k8s.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let mut c = DiscoveryConfig::default();
        DiscoveryEnv::from_env(get).unwrap().apply(&mut c);
        assert_eq!(c.mode, DiscoveryMode::K8s);
        assert_eq!(
            (c.k8s.namespace.as_str(), c.k8s.selector.as_str()),
            ("llm", "kubernetes.io/service-name=vllm")
        );
        assert_eq!(c.validate().is_ok(), cfg!(feature = "k8s"));
        let bad = |k: &'static str, v: &'static str| {
            DiscoveryEnv::from_env(move |n: &str| (n == k).then(|| v.to_string()))
                .unwrap_err()
                .field
        };
        assert_eq!(bad("LLM_DISCOVERY_MODE", "k9s"), "LLM_DISCOVERY_MODE");
        assert_eq!(
            bad("LLM_DISCOVERY_DNS_PORT", "70000"),
            "LLM_DISCOVERY_DNS_PORT"
        );
        assert_eq!(
            bad("LLM_DISCOVERY_INTERVAL_SECONDS", "soon"),
            "LLM_DISCOVERY_INTERVAL_SECONDS"
        );
    }
}
