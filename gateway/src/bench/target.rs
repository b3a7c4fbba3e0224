//! The endpoint under test: normalising its base URL, building the HTTP client, checking that
//! it can be reached, and finding a model to ask for when `--model` is not given.

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;

/// How long a connection attempt (and the model lookup) may take before the target counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A resolved target: where to send requests, with which client and credentials.
#[derive(Clone, Debug)]
pub struct Target {
    /// Base URL without a trailing `/` or `/v1`, e.g. `http://127.0.0.1:9000`.
    pub base: String,
    pub client: reqwest::Client,
    pub api_key: Option<String>,
}

impl Target {
    /// Validates `url` and builds a client sized for `concurrency` connections.
    pub fn new(url: &str, api_key: Option<String>, concurrency: u32) -> anyhow::Result<Self> {
        let base = normalize_base(url)?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(concurrency as usize)
            .user_agent(concat!("sagellm-bench/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            client,
            api_key,
        })
    }

    /// `base + path`, e.g. `…/v1/chat/completions`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A GET with the bearer key (when one is set).
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.authorize(self.client.get(self.url(path)))
    }

    /// A POST with the bearer key (when one is set).
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.authorize(self.client.post(self.url(path)))
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Fails with `cannot reach <base>: <why>` unless a TCP connection opens.
    pub async fn check_reachable(&self) -> anyhow::Result<()> {
        let url = reqwest::Url::parse(&self.base).context("parsing the base URL")?;
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => bail!("cannot reach {}: {}", self.base, describe_io(&e)),
            Err(_) => bail!(
                "cannot reach {}: no connection within {CONNECT_TIMEOUT:?}",
                self.base
            ),
        }
    }

    /// The first model id of `GET /v1/models`, with a message that says what to do when there
    /// is none.
    pub async fn first_model(&self) -> anyhow::Result<String> {
        let url = self.url("/v1/models");
        let req = self
            .authorize(self.client.get(&url))
            .timeout(CONNECT_TIMEOUT);
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {}", self.base, describe(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: reading the body: {}", describe(&e)))?;
        if !status.is_success() {
            bail!(
                "GET {url} answered {}: {}; pass --model to skip the lookup",
                status.as_u16(),
                error_message(&body)
            );
        }
        let models: Value = serde_json::from_slice(&body)
            .with_context(|| format!("GET {url}: the body is not JSON; pass --model"))?;
        models["data"]
            .as_array()
            .and_then(|data| data.iter().find_map(|m| m["id"].as_str()))
            .map(str::to_string)
            .with_context(|| {
                format!(
                    "{} serves no models (GET {url} lists none); pass --model",
                    self.base
                )
            })
    }
}

/// `http://h:1/v1/` → `http://h:1`; only `http` and `https` URLs with a host pass.
pub fn normalize_base(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    let parsed = reqwest::Url::parse(trimmed)
        .with_context(|| format!("`{url}` is not a URL (expected e.g. http://127.0.0.1:9000)"))?;
    match parsed.scheme() {
        "http" => {}
        // The gateway crate builds reqwest without a TLS backend.
        "https" => bail!("`{url}`: https is not supported by sagellm bench; use http://"),
        other => bail!("`{url}`: unsupported scheme `{other}` (expected http://)"),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        bail!("`{url}` has no host (expected e.g. http://127.0.0.1:9000)");
    }
    Ok(trimmed.to_string())
}

/// A short reason for a transport failure: the innermost I/O error when there is one
/// (`connection refused`), else the innermost message.
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut innermost = e.to_string();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return describe_io(io);
        }
        innermost = err.to_string();
        source = err.source();
    }
    innermost
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        std::io::ErrorKind::TimedOut => "timed out".to_string(),
        _ => e.to_string(),
    }
}

/// `error.message` of an OpenAI-shaped error body, else the body's first 200 characters.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let message = v["error"]["message"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .or_else(|| v["detail"].as_str())
            .or_else(|| v["message"].as_str());
        if let Some(m) = message {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        text.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_lose_trailing_slash_and_v1() {
        for url in [
            "http://h:9000",
            "http://h:9000/",
            "http://h:9000/v1",
            "http://h:9000/v1/",
        ] {
            assert_eq!(normalize_base(url).unwrap(), "http://h:9000", "{url}");
        }
        assert_eq!(normalize_base("http://h/api/v1").unwrap(), "http://h/api");
    }

    #[test]
    fn bad_urls_are_clear_errors() {
        for (url, says) in [
            ("h:9000", "unsupported scheme"),
            ("not a url", "not a URL"),
            ("https://h", "https"),
            ("ftp://h", "unsupported scheme"),
        ] {
            let e = normalize_base(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn error_messages_from_bodies() {
        assert_eq!(error_message(br#"{"error":{"message":"busy"}}"#), "busy");
        assert_eq!(error_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message(b"plain text"), "plain text");
        assert_eq!(error_message(b""), "(empty body)");
    }
}
