//! `[failover]`: mid-stream failover of streamed chat completions (see `proxy::resume`).

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

/// When a worker dies or stalls in the middle of a streamed chat completion, the gateway
/// continues the generation on another worker (the text so far as a partial assistant
/// message, vLLM's `continue_final_message`) and splices the streams into one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverConfig {
    /// Off: a stream whose worker breaks off ends with an SSE error event, as before.
    pub enabled: bool,
    /// A stream that has started and then sends nothing for this long counts as stalled and
    /// moves to another worker, when there is one (0 = only broken connections move).
    pub stall_timeout_ms: u64,
    /// Times one stream may move to another worker.
    pub max_resumes: u32,
    /// No move starts later than this after the request arrived.
    pub total_timeout_ms: u64,
    /// Non-streamed chat completions (and Messages) are asked of workers that can continue
    /// a partial message as streams, so they can move too; the client still gets one JSON
    /// response, sent when it is whole. Off: they go to the worker as they came.
    pub non_streamed: bool,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            stall_timeout_ms: 3_000,
            max_resumes: 2,
            total_timeout_ms: 600_000,
            non_streamed: true,
        }
    }
}

impl FailoverConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=10).contains(&self.max_resumes),
            "failover.max_resumes",
            "must be 1..=10 (set failover.enabled = false to turn failover off)",
        )?;
        check(
            self.stall_timeout_ms == 0 || self.stall_timeout_ms >= 100,
            "failover.stall_timeout_ms",
            "must be 0 (off) or >= 100",
        )?;
        check(
            self.total_timeout_ms >= 1,
            "failover.total_timeout_ms",
            "must be >= 1",
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn parses_and_validates() {
        let c = Config::from_toml("[failover]\nstall_timeout_ms = 2000\nmax_resumes = 3\n")
            .expect("parses");
        assert_eq!(c.failover.stall_timeout_ms, 2000);
        assert_eq!(c.failover.max_resumes, 3);
        assert!(c.failover.enabled);
        c.validate().expect("valid");
        for bad in [
            "max_resumes = 0",
            "stall_timeout_ms = 5",
            "total_timeout_ms = 0",
        ] {
            let c = Config::from_toml(&format!("[failover]\n{bad}\n")).expect("parses");
            let e = c.validate().expect_err(bad);
            assert!(e.field.starts_with("failover."), "{e}");
        }
        let e = Config::from_toml("[failover]\nstall_ms = 1\n").expect_err("unknown key");
        assert_eq!(e.field, "failover.stall_ms");
    }
}
