//! API keys. LLM endpoints need one of `auth.api_keys` when any is configured
//! (`Authorization: Bearer …` or `x-api-key`); management endpoints need `auth.admin_key` when
//! it is set. Keys are kept only as SHA-256 digests and compared in constant time; they never
//! appear in logs, errors or metrics.
//!
//! This is the one place that reads keys off request headers ([`api_key`], [`admin_key`]) and
//! digests them ([`owner_of`] names a session's owner by its key's digest).

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
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
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.trim().as_bytes()).into()
}

/// Equality that takes the same time wherever the inputs differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(cfg: &AuthConfig) -> Self {
        Self {
            api_keys: cfg.api_keys.iter().map(|k| digest(k)).collect(),
            admin_key: cfg.admin_key.as_deref().map(digest),
        }
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

    /// Whether management writes are open or `presented` is the admin key.
    pub fn check_admin_key(&self, presented: Option<&str>) -> bool {
        match (&self.admin_key, presented) {
            (None, _) => true,
            (Some(k), Some(p)) => ct_eq(k, &digest(p)),
            (Some(_), None) => false,
        }
    }

    pub fn admin_required(&self) -> bool {
        self.admin_key.is_some()
    }
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

    #[test]
    fn keys() {
        let open = Auth::new(&AuthConfig::default());
        assert!(open.check_api_key(None) && open.check_admin_key(None));
        let a = Auth::new(&AuthConfig {
            api_keys: vec!["key-one-1234".into(), "key-two-1234".into()],
            admin_key: Some("admin-12345".into()),
        });
        assert!(a.check_api_key(Some("key-two-1234")));
        assert!(!a.check_api_key(Some("key-two-123")));
        assert!(!a.check_api_key(None));
        assert!(
            !a.check_api_key(Some("admin-12345")),
            "the admin key is not an API key"
        );
        assert!(a.check_admin_key(Some("admin-12345")));
        assert!(!a.check_admin_key(Some("key-one-1234")));
        assert!(!a.check_admin_key(None));
    }
}
