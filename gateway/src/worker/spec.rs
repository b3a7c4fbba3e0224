//! A worker as configured: URL, resolved address, weight, optional static model list.
//!
//! Addresses are resolved here, when the configuration is loaded, because Pingora's
//! `HttpPeer::new` resolves synchronously and panics on failure (seen
//! with pingora-core 0.9.1).

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSpec {
    /// Normalised base URL: `http://host:port`, no trailing slash or `/v1`.
    pub url: String,
    /// `host:port` as written, used as the `Host` header and as the stable worker id.
    pub authority: String,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Models from the config; empty = discover.
    pub models: Vec<String>,
}

/// Allowed worker weights (config file, `LLM_WORKER_URLS`, `POST /api/workers`).
pub const WEIGHTS: std::ops::RangeInclusive<u32> = 1..=1000;

impl WorkerSpec {
    /// Parse and resolve a worker URL.
    pub fn new(url: &str, weight: u32, models: Vec<String>) -> Result<Self, String> {
        let (url, authority) = Self::parse_url(url)?;
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
        })
    }

    /// Check a URL's shape without resolving it; returns `(normalised url, host:port)`.
    pub fn parse_url(raw: &str) -> Result<(String, String), String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("empty worker URL".into());
        }
        let rest = match raw.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(format!("`{raw}`: https workers are not supported; use http:// (TLS terminates in front of the gateway)"))
            }
            Some((scheme, _)) => return Err(format!("`{raw}`: unsupported scheme `{scheme}` (use http://)")),
            None => raw,
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
            format!("{host_port}:80")
        };
        let port_ok = authority
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_some_and(|p| p > 0);
        if !port_ok {
            return Err(format!("`{raw}`: invalid port"));
        }
        Ok((format!("http://{authority}"), authority))
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
            WorkerSpec::parse_url("http://10.0.0.1").unwrap().1,
            "10.0.0.1:80"
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            "https://a:1",
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
