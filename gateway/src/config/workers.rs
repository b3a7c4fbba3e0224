//! `[[workers]]`: the static worker list (one table per worker).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};
use crate::worker::spec::{WorkerOptions, WorkerSpec, WEIGHTS};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Base URL, e.g. `http://10.0.0.5:8000` or `https://api.example.com` (a trailing `/v1`
    /// is accepted and dropped).
    pub url: String,
    /// Weight for `weighted_round_robin` and the consistent-hash ring.
    pub weight: u32,
    /// Models served. Empty = discover from the worker's `GET /v1/models`.
    pub models: Vec<String>,
    /// `https://` only: accept any certificate from this worker (a warning is logged).
    pub insecure_skip_verify: bool,
    /// Headers sent with every request to this worker, replacing the client's of the same
    /// name (e.g. `Authorization = "Bearer ${OPENAI_API_KEY}"`). `${NAME}` is replaced by the
    /// environment variable when the config is loaded. Values are never logged or shown.
    pub headers: BTreeMap<String, String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            weight: 1,
            models: Vec::new(),
            insecure_skip_verify: false,
            headers: BTreeMap::new(),
        }
    }
}

/// Headers a worker entry may not set: the gateway computes them per request.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

/// Check every worker of the list; fields are named by index (`workers[1].url`).
pub(crate) fn validate_workers(workers: &[WorkerConfig]) -> Result<(), ConfigError> {
    for (i, w) in workers.iter().enumerate() {
        let field = format!("workers[{i}].url");
        let url = WorkerSpec::parse_url(&w.url).map_err(|e| ConfigError::new(&field, e))?;
        check(
            WEIGHTS.contains(&w.weight),
            &format!("workers[{i}].weight"),
            "must be 1..=1000",
        )?;
        check(
            url.tls || !w.insecure_skip_verify,
            &format!("workers[{i}].insecure_skip_verify"),
            "applies to https:// workers only",
        )?;
        for (name, value) in &w.headers {
            let field = format!("workers[{i}].headers.{name}");
            let parsed = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(&field, "is not a valid header name"))?;
            check(
                !RESERVED.contains(&parsed.as_str()),
                &field,
                "is set by the gateway itself",
            )?;
            expand(value).map_err(|e| ConfigError::new(&field, e))?;
        }
    }
    Ok(())
}

/// A worker entry's connection options, with `${NAME}` in header values taken from the
/// environment. Errors name the header, never its value.
pub(crate) fn worker_options(i: usize, w: &WorkerConfig) -> Result<WorkerOptions, ConfigError> {
    let mut headers = Vec::with_capacity(w.headers.len());
    for (name, value) in &w.headers {
        let field = format!("workers[{i}].headers.{name}");
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new(&field, "is not a valid header name"))?;
        let mut value =
            http::HeaderValue::from_str(&expand(value).map_err(|e| ConfigError::new(&field, e))?)
                .map_err(|_| {
                ConfigError::new(&field, "is not a valid header value (control characters?)")
            })?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    Ok(WorkerOptions {
        insecure_skip_verify: w.insecure_skip_verify,
        headers,
    })
}

/// `${NAME}` → the environment variable `NAME` (which must be set); `$$` → `$`.
fn expand(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or("has an unterminated `${` (write `$$` for a literal `$`)")?;
            let name = &body[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("`${{{name}}}` is not an environment variable name"));
            }
            let value = std::env::var(name)
                .map_err(|_| format!("uses the environment variable {name}, which is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_environment_variables() {
        std::env::set_var("SAGELLM_TEST_WORKER_KEY", "sk-123");
        assert_eq!(
            expand("Bearer ${SAGELLM_TEST_WORKER_KEY}").unwrap(),
            "Bearer sk-123"
        );
        assert_eq!(expand("a$$b $x").unwrap(), "a$b $x");
        assert!(expand("${SAGELLM_TEST_UNSET_VAR}")
            .unwrap_err()
            .contains("SAGELLM_TEST_UNSET_VAR"));
        assert!(expand("${OPEN").is_err());
        assert!(expand("${A-B}").is_err());
    }

    #[test]
    fn header_and_tls_options_are_checked() {
        let worker = |url: &str, insecure: bool, header: (&str, &str)| WorkerConfig {
            url: url.into(),
            insecure_skip_verify: insecure,
            headers: [(header.0.to_string(), header.1.to_string())].into(),
            ..Default::default()
        };
        let ok = worker("https://a:1", true, ("Authorization", "Bearer x"));
        validate_workers(std::slice::from_ref(&ok)).unwrap();
        let options = worker_options(0, &ok).unwrap();
        assert!(options.insecure_skip_verify);
        assert!(options.headers[0].1.is_sensitive());
        for (bad, field) in [
            (
                worker("http://a:1", true, ("x-a", "b")),
                "workers[0].insecure_skip_verify",
            ),
            (
                worker("http://a:1", false, ("bad name", "b")),
                "workers[0].headers.bad name",
            ),
            (
                worker("http://a:1", false, ("Host", "b")),
                "workers[0].headers.Host",
            ),
            (
                worker("http://a:1", false, ("x-a", "${NOPE_UNSET_1}")),
                "workers[0].headers.x-a",
            ),
        ] {
            assert_eq!(validate_workers(&[bad]).unwrap_err().field, field);
        }
        let e = worker_options(0, &worker("http://a:1", false, ("x-a", "a\nb"))).unwrap_err();
        assert_eq!(e.field, "workers[0].headers.x-a");
        assert!(!e.message.contains("a\nb"));
    }
}
