//! The CLI's HTTP client for the management API: one place for the base URL, the admin key,
//! and turning transport failures and API errors into one clear line.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct Api {
    base: String,
    admin_key: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(url: &str, admin_key: Option<String>) -> Result<Self> {
        let base = url.trim().trim_end_matches('/').to_string();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "--url must start with http:// (got `{url}`)"
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            base,
            admin_key,
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send a request and return the status and the JSON body (API errors included).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(k) = &self.admin_key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| unreachable(&self.base, &e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {method} {url}"))?;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_string()));
        Ok((status, value))
    }

    /// A call that must succeed (2xx), parsed as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let (status, value) = self.call(method.clone(), path, body).await?;
        if !status.is_success() {
            return Err(api_error(status, &value));
        }
        serde_json::from_value(value).with_context(|| {
            format!(
                "unexpected answer to {method} {path} (is {} a sageLLM gateway?)",
                self.base
            )
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(Method::GET, path, None).await
    }
}

fn unreachable(base: &str, e: &reqwest::Error) -> anyhow::Error {
    let why = if e.is_connect() {
        "connection refused or host unreachable"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    anyhow!("cannot reach the gateway at {base}: {why} (is it running? set --url or SAGELLM_URL)")
}

/// `{"error":{"message":…}}` → "HTTP 404: message".
fn api_error(status: StatusCode, v: &Value) -> anyhow::Error {
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    match status {
        StatusCode::UNAUTHORIZED => {
            anyhow!("{message} (pass --admin-key or set SAGELLM_ADMIN_KEY)")
        }
        _ => anyhow!("the gateway answered {}: {message}", status.as_u16()),
    }
}
