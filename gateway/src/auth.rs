//! API keys. LLM endpoints need one of `auth.api_keys` when any is configured
//! (`Authorization: Bearer …` or `x-api-key`); management endpoints need `auth.admin_key` when
//! it is set. Keys are kept only as SHA-256 digests and compared in constant time; they never
//! appear in logs, errors or metrics.

use sha2::{Digest, Sha256};

use crate::config::AuthConfig;

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
