//! `[[quotas]]`: per-API-key quotas — requests and tokens per minute, requests in flight, and
//! the models a key may use. A key listed here is also a valid API key. Hot-reloaded; shared by
//! every replica when `[redis]` is set.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KeyQuota {
    /// The key's name: the label in `/api/usage`, in metrics and in refusals (never the secret).
    pub name: String,
    /// The secret the client sends (`Authorization: Bearer …` or `x-api-key`). Shown redacted.
    pub api_key: String,
    /// Requests per minute (0: no limit); the whole minute's allowance may be used at once.
    pub requests_per_minute: u32,
    /// Prompt + completion tokens per minute (0: no limit). Estimated from the prompt's size
    /// when a request is admitted, corrected to the response's usage when it ends.
    pub tokens_per_minute: u64,
    /// Requests of this key in flight at once (0: no limit).
    pub max_concurrent: u32,
    /// Models this key may use (empty: all).
    pub models: Vec<String>,
}

/// Names that stay bounded, printable metric labels.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub(crate) fn validate_quotas(quotas: &[KeyQuota]) -> Result<(), ConfigError> {
    for (i, q) in quotas.iter().enumerate() {
        let field = |f: &str| format!("quotas[{i}].{f}");
        check(
            valid_name(&q.name),
            &field("name"),
            "must be 1..=64 characters of letters, digits, '-', '_' or '.'",
        )?;
        check(
            !q.api_key.trim().is_empty(),
            &field("api_key"),
            "must not be empty",
        )?;
        check(
            q.tokens_per_minute <= 1_000_000_000_000,
            &field("tokens_per_minute"),
            "must be at most 10^12",
        )?;
        check(
            q.models.iter().all(|m| !m.trim().is_empty()),
            &field("models"),
            "must not contain an empty name",
        )?;
        if let Some(j) = quotas[..i].iter().position(|o| o.name == q.name) {
            return Err(ConfigError::new(
                field("name"),
                format!("`{}` is already the name of quotas[{j}]", q.name),
            ));
        }
        if let Some(j) = quotas[..i]
            .iter()
            .position(|o| o.api_key.trim() == q.api_key.trim())
        {
            return Err(ConfigError::new(
                field("api_key"),
                format!("is already the key of quotas[{j}]"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, key: &str) -> KeyQuota {
        KeyQuota {
            name: name.into(),
            api_key: key.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_and_keys_are_unique_and_bounded() {
        validate_quotas(&[q("team-a", "sk-a"), q("team_b.1", "sk-b")]).unwrap();
        let e = validate_quotas(&[q("a", "k1"), q("a", "k2")]).unwrap_err();
        assert_eq!(e.field, "quotas[1].name");
        let e = validate_quotas(&[q("a", "k1"), q("b", " k1")]).unwrap_err();
        assert_eq!(e.field, "quotas[1].api_key");
        assert!(!e.message.contains("k1"), "the secret is not echoed");
        for bad in ["", "has space", "quote\"", &"x".repeat(65)] {
            let e = validate_quotas(&[q(bad, "k")]).unwrap_err();
            assert_eq!(e.field, "quotas[0].name", "{bad:?}");
        }
        assert_eq!(
            validate_quotas(&[q("a", "  ")]).unwrap_err().field,
            "quotas[0].api_key"
        );
    }
}
