//! API keys. LLM endpoints need one of `auth.api_keys` when any is configured
//! (`Authorization: Bearer …` or `x-api-key`); management writes need `auth.admin_key` when it
//! is set, and without one they are refused (403) on a listener other hosts can reach unless
//! `auth.allow_insecure_admin` says otherwise ([`AdminCheck`]). Keys are kept only as SHA-256
//! digests and compared in constant time; they never appear in logs, errors or metrics.
//!
//! This is the one place that reads keys off request headers ([`api_key`], [`admin_key`]) and
//! digests them ([`owner_of`] names a session's owner by its key's digest).

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, ServerConfig};
use crate::error::GatewayError;

/// `Authorization: Bearer <token>`, trimmed.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?.trim();
    (v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ")).then(|| v[7..].trim())
}

/// The caller's API key: `Authorization: Bearer …`, else `x-api-key`.
pub fn api_key(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    })
}

/// The admin key presented with a management request: `x-admin-key`, else
/// `Authorization: Bearer …`.
pub fn admin_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-admin-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| bearer(headers))
}

/// The answer to a request without a valid API key.
pub fn key_required() -> GatewayError {
    GatewayError::Unauthorized("a valid API key is required (Authorization: Bearer <key>)".into())
}

/// Who owns a session: the SHA-256 digest of the API key that created it (`None` without
/// a key).
pub type Owner = Option<[u8; 32]>;

/// The owner a request acts for, from its API key.
pub fn owner_of(api_key: Option<&str>) -> Owner {
    api_key.map(str::trim).filter(|k| !k.is_empty()).map(digest)
}

#[derive(Debug, Default)]
pub struct Auth {
    api_keys: Vec<[u8; 32]>,
    admin_key: Option<[u8; 32]>,
    /// No admin key, a listener other hosts can reach, and no opt-out: writes are refused.
    writes_locked: bool,
}

/// The verdict on a management write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminCheck {
    Allowed,
    /// An admin key is set and the request did not present it (401).
    KeyNeeded,
    /// No admin key is set and the listener is not loopback (403 until one is set).
    Locked,
}

impl AdminCheck {
    /// The refusal sent to the client (`None` when allowed).
    pub fn refusal(self) -> Option<GatewayError> {
        match self {
            AdminCheck::Allowed => None,
            AdminCheck::KeyNeeded => Some(GatewayError::Unauthorized(
                "this management endpoint needs the admin key (Authorization: Bearer <admin key>)"
                    .into(),
            )),
            AdminCheck::Locked => Some(GatewayError::Forbidden(LOCKED.into())),
        }
    }
}

/// Why a management write is refused on an exposed listener without an admin key.
pub const LOCKED: &str = "management writes are disabled: this gateway listens on a \
    non-loopback address and has no admin key. Set LLM_ADMIN_KEY (or [auth] admin_key) and \
    send it as `Authorization: Bearer <admin key>`, bind to 127.0.0.1, or set \
    LLM_ALLOW_INSECURE_ADMIN=true to allow unauthenticated management writes";

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.trim().as_bytes()).into()
}

/// Equality that takes the same time wherever the inputs differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The keys of a whole config: `[auth]` and the keys of `[[quotas]]`.
pub fn for_config(config: &crate::config::Config) -> Auth {
    Auth::new(&config.auth, &config.server)
        .with_keys(config.quotas.iter().map(|q| q.api_key.as_str()))
}

impl Auth {
    /// Keys from `cfg`; `server` decides whether writes without an admin key are allowed.
    pub fn new(cfg: &AuthConfig, server: &ServerConfig) -> Self {
        let admin_key = cfg.admin_key.as_deref().map(digest);
        Self {
            api_keys: cfg.api_keys.iter().map(|k| digest(k)).collect(),
            writes_locked: admin_key.is_none()
                && !server.is_loopback()
                && !cfg.allow_insecure_admin,
            admin_key,
        }
    }

    /// Also accept these keys (the keys of `[[quotas]]`).
    pub fn with_keys<'a>(mut self, extra: impl IntoIterator<Item = &'a str>) -> Self {
        self.api_keys.extend(extra.into_iter().map(digest));
        self
    }

    /// Whether LLM endpoints require a key.
    pub fn keys_required(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// Whether `presented` is one of the API keys (every key is compared).
    pub fn check_api_key(&self, presented: Option<&str>) -> bool {
        if !self.keys_required() {
            return true;
        }
        let Some(p) = presented else { return false };
        let d = digest(p);
        self.api_keys.iter().fold(false, |ok, k| ok | ct_eq(k, &d))
    }

    /// Whether a management write presenting `presented` may go ahead.
    pub fn check_admin_key(&self, presented: Option<&str>) -> AdminCheck {
        match (&self.admin_key, presented) {
            (None, _) if self.writes_locked => AdminCheck::Locked,
            (None, _) => AdminCheck::Allowed,
            (Some(k), Some(p)) if ct_eq(k, &digest(p)) => AdminCheck::Allowed,
            (Some(_), _) => AdminCheck::KeyNeeded,
        }
    }

    pub fn admin_required(&self) -> bool {
        self.admin_key.is_some()
    }

    /// Management writes are refused until an admin key is set ([`AdminCheck::Locked`]).
    pub fn writes_locked(&self) -> bool {
        self.writes_locked
    }
}

/// What an operator must hear at startup about who can reach this gateway: an exposed
/// listener without API keys (the LLM endpoints are open; like vLLM, the gateway warns rather
/// than refuses), management writes locked for want of an admin key, or the explicit opt-out.
pub fn exposure_warnings(auth: &AuthConfig, server: &ServerConfig) -> Vec<String> {
    if server.is_loopback() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let at = format!("{}:{}", server.host, server.port);
    if auth.api_keys.is_empty() {
        out.push(format!(
            "the LLM endpoints on {at} are open to anyone who can reach them: set \
             LLM_API_KEYS (or [auth] api_keys) to require a key"
        ));
    }
    if auth.admin_key.is_none() {
        out.push(if auth.allow_insecure_admin {
            format!(
                "LLM_ALLOW_INSECURE_ADMIN is set: anyone who can reach {at} can add workers and \
                 change the configuration; set LLM_ADMIN_KEY instead"
            )
        } else {
            format!(
                "management writes on {at} are disabled (403) until an admin key is set: \
                 LLM_ADMIN_KEY (or [auth] admin_key)"
            )
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_off_the_headers() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert_eq!(api_key(&h(&[("authorization", "Bearer  k1 ")])), Some("k1"));
        assert_eq!(api_key(&h(&[("authorization", "bearer k1")])), Some("k1"));
        assert_eq!(
            api_key(&h(&[("authorization", "Basic x"), ("x-api-key", " k2 ")])),
            Some("k2")
        );
        assert_eq!(api_key(&h(&[])), None);
        let both = h(&[("authorization", "Bearer b"), ("x-admin-key", "a")]);
        assert_eq!(admin_key(&both), Some("a"));
        assert_eq!(api_key(&both), Some("b"));
        assert_eq!(admin_key(&h(&[("authorization", "Bearer b")])), Some("b"));
    }

    #[test]
    fn owners_are_key_digests() {
        assert_eq!(owner_of(None), None);
        assert_eq!(owner_of(Some("  ")), None);
        assert_eq!(owner_of(Some("k-1")), owner_of(Some(" k-1 ")));
        assert_ne!(owner_of(Some("k-1")), owner_of(Some("k-2")));
        assert_eq!(owner_of(Some("k-1")), Some(digest("k-1")));
    }

    fn server(host: &str) -> ServerConfig {
        ServerConfig {
            host: host.into(),
            ..Default::default()
        }
    }

    #[test]
    fn keys() {
        let open = Auth::new(&AuthConfig::default(), &server("127.0.0.1"));
        assert!(open.check_api_key(None));
        assert_eq!(open.check_admin_key(None), AdminCheck::Allowed);
        let a = Auth::new(
            &AuthConfig {
                api_keys: vec!["key-one-1234".into(), "key-two-1234".into()],
                admin_key: Some("admin-12345".into()),
                ..Default::default()
            },
            &server("0.0.0.0"),
        );
        assert!(a.check_api_key(Some("key-two-1234")));
        assert!(!a.check_api_key(Some("key-two-123")));
        assert!(!a.check_api_key(None));
        assert!(
            !a.check_api_key(Some("admin-12345")),
            "the admin key is not an API key"
        );
        assert_eq!(a.check_admin_key(Some("admin-12345")), AdminCheck::Allowed);
        assert_eq!(
            a.check_admin_key(Some("key-one-1234")),
            AdminCheck::KeyNeeded
        );
        assert_eq!(a.check_admin_key(None), AdminCheck::KeyNeeded);
        assert!(!a.writes_locked());
    }

    #[test]
    fn exposed_listeners_without_an_admin_key_refuse_writes() {
        for host in ["0.0.0.0", "::", "10.1.2.3", "gateway.internal"] {
            let a = Auth::new(&AuthConfig::default(), &server(host));
            assert_eq!(a.check_admin_key(None), AdminCheck::Locked, "{host}");
            assert_eq!(
                a.check_admin_key(Some("anything-at-all")),
                AdminCheck::Locked
            );
            assert_eq!(a.check_admin_key(None).refusal().unwrap().status(), 403);
        }
        for host in ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"] {
            let a = Auth::new(&AuthConfig::default(), &server(host));
            assert_eq!(a.check_admin_key(None), AdminCheck::Allowed, "{host}");
        }
        let opted_out = Auth::new(
            &AuthConfig {
                allow_insecure_admin: true,
                ..Default::default()
            },
            &server("0.0.0.0"),
        );
        assert_eq!(opted_out.check_admin_key(None), AdminCheck::Allowed);
        assert!(!opted_out.writes_locked());
    }

    #[test]
    fn exposed_listeners_are_warned_about() {
        let open = AuthConfig::default();
        assert!(exposure_warnings(&open, &server("127.0.0.1")).is_empty());
        let w = exposure_warnings(&open, &server("0.0.0.0"));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("LLM_API_KEYS") && w[1].contains("disabled (403)"));
        let keyed = AuthConfig {
            api_keys: vec!["key-one-1234".into()],
            allow_insecure_admin: true,
            ..Default::default()
        };
        let w = exposure_warnings(&keyed, &server("0.0.0.0"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("LLM_ALLOW_INSECURE_ADMIN is set"));
    }
}
