//! A worker as configured: URL, resolved address, weight, optional static model list, and
//! how to talk to it (`https://` with SNI and certificate checks, extra request headers).
//!
//! Addresses are resolved here, when the configuration is loaded, because Pingora's
//! `HttpPeer::new` resolves synchronously and panics on failure (seen
//! with pingora-core 0.9.1).

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSpec {
    /// Normalised base URL: `http(s)://host:port`, no trailing slash or `/v1`.
    pub url: String,
    /// `host:port` as written, used as the `Host` header and as the stable worker id.
    pub authority: String,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Models from the config; empty = discover.
    pub models: Vec<String>,
    /// `https://`: TLS to the worker.
    pub tls: bool,
    /// The URL's host (no port, no brackets): SNI and the name its certificate must carry.
    pub host: String,
    pub options: WorkerOptions,
    /// Who put the worker in the pool.
    pub source: super::source::WorkerSource,
}

/// Per-worker connection options from the config (`[[workers]]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerOptions {
    /// Accept any certificate from this `https://` worker (logged as a warning when loaded).
    pub insecure_skip_verify: bool,
    /// Request headers added to everything sent to the worker (values marked sensitive).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// A worker URL's parts.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedUrl {
    pub url: String,
    pub authority: String,
    pub host: String,
    pub tls: bool,
}

/// Allowed worker weights (config file, `LLM_WORKER_URLS`, `POST /api/workers`).
pub const WEIGHTS: std::ops::RangeInclusive<u32> = 1..=1000;

impl WorkerSpec {
    /// Parse and resolve a worker URL.
    pub fn new(url: &str, weight: u32, models: Vec<String>) -> Result<Self, String> {
        let ParsedUrl {
            url,
            authority,
            host,
            tls,
        } = Self::parse_url(url)?;
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{authority}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{authority}` resolves to no address"))?;
        Ok(Self {
            url,
            authority,
            addr,
            weight: weight.max(1),
            models,
            tls,
            host,
            options: WorkerOptions::default(),
            source: Default::default(),
        })
    }

    /// The `Host` header for this worker: its authority, without the scheme's default port.
    pub fn host_header(&self) -> &str {
        let default = if self.tls { ":443" } else { ":80" };
        self.authority
            .strip_suffix(default)
            .unwrap_or(&self.authority)
    }

    /// The same worker with `options`.
    pub fn with_options(mut self, options: WorkerOptions) -> Self {
        self.options = options;
        self
    }

    /// Check a URL's shape without resolving it.
    pub fn parse_url(raw: &str) -> Result<ParsedUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("empty worker URL".into());
        }
        let (tls, rest) = match raw.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "`{raw}`: unsupported scheme `{scheme}` (use http:// or https://)"
                ))
            }
            None => (false, raw),
        };
        let (host_port, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = path.trim_end_matches('/');
        if !path.is_empty() && path != "/v1" {
            return Err(format!(
                "`{raw}`: a worker URL is a base URL (path must be empty or /v1)"
            ));
        }
        if host_port.is_empty()
            || host_port.starts_with(':')
            || host_port.contains('@')
            || host_port.contains(char::is_whitespace)
        {
            return Err(format!("`{raw}`: missing or invalid host"));
        }
        let authority = if has_port(host_port) {
            host_port.to_string()
        } else {
            format!("{host_port}:{}", if tls { 443 } else { 80 })
        };
        let port_ok = authority
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_some_and(|p| p > 0);
        if !port_ok {
            return Err(format!("`{raw}`: invalid port"));
        }
        let host = authority
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or_default()
            .to_string();
        let scheme = if tls { "https" } else { "http" };
        Ok(ParsedUrl {
            url: format!("{scheme}://{authority}"),
            authority,
            host,
            tls,
        })
    }
}

fn has_port(host_port: &str) -> bool {
    if let Some(end) = host_port.strip_prefix('[').and_then(|r| r.find(']')) {
        // IPv6 literal: "[::1]:8000"
        return host_port[end + 2..].starts_with(':');
    }
    host_port.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_resolves() {
        let s = WorkerSpec::new("http://127.0.0.1:8001/v1/", 2, vec![]).unwrap();
        assert_eq!(s.url, "http://127.0.0.1:8001");
        assert_eq!(s.authority, "127.0.0.1:8001");
        assert_eq!(s.addr, "127.0.0.1:8001".parse().unwrap());
        let s = WorkerSpec::new("localhost:8002", 1, vec![]).unwrap();
        assert_eq!(s.url, "http://localhost:8002");
        let s = WorkerSpec::new("http://[::1]:8003", 1, vec![]).unwrap();
        assert_eq!(s.addr.port(), 8003);
        assert_eq!(
            WorkerSpec::parse_url("http://10.0.0.1").unwrap().authority,
            "10.0.0.1:80"
        );
        let p = WorkerSpec::parse_url("https://api.example.com/v1").unwrap();
        assert_eq!(
            (p.url.as_str(), p.authority.as_str(), p.host.as_str(), p.tls),
            (
                "https://api.example.com:443",
                "api.example.com:443",
                "api.example.com",
                true
            )
        );
        let p = WorkerSpec::parse_url("https://[::1]:8443").unwrap();
        assert_eq!((p.host.as_str(), p.tls), ("::1", true));
        assert!(
            !WorkerSpec::new("http://127.0.0.1:1", 1, vec![])
                .unwrap()
                .tls
        );
        let s = WorkerSpec::new("http://127.0.0.1:80", 1, vec![]).unwrap();
        assert_eq!(s.host_header(), "127.0.0.1");
        let s = WorkerSpec::new("https://127.0.0.1", 1, vec![]).unwrap();
        assert_eq!((s.host_header(), s.addr.port()), ("127.0.0.1", 443));
        let s = WorkerSpec::new("https://127.0.0.1:8443", 1, vec![]).unwrap();
        assert_eq!(s.host_header(), "127.0.0.1:8443");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            "ftp://a:1",
            "http://a:1/api",
            "http://a:notaport",
            "http://a:0",
            "http://:1/",
        ] {
            assert!(
                WorkerSpec::parse_url(bad).is_err() || WorkerSpec::new(bad, 1, vec![]).is_err(),
                "{bad}"
            );
        }
    }
}
