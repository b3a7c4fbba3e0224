//! `[control]`: how the gateway launches and stops `sagellm-engine` processes.
//!
//! Every value is read from the live configuration when it is used, so a change applies to the
//! next start, stop or restart.

use serde::{Deserialize, Serialize};

use crate::config::{check, ConfigError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Path of the `sagellm-engine` binary; empty = look beside the gateway's executable (and
    /// in its parent folder), then on `PATH`.
    pub engine_binary: String,
    /// Engines running (or stopping) at once; one more start is refused with 409.
    pub max_engines: usize,
    /// `--max-seqs` of an engine started without `max_seqs`.
    pub default_max_seqs: usize,
    /// An engine that is not READY this long after its start is stopped and marked ERROR.
    pub start_timeout_seconds: u64,
    /// Stopping an engine: how long its in-flight requests may take to finish after it stopped
    /// taking new ones.
    pub drain_timeout_seconds: u64,
    /// Stopping an engine: how long it may take to exit after SIGTERM before it gets SIGKILL.
    pub stop_grace_seconds: u64,
    /// Folders the engine-start API may load models from (relative = to the gateway's working
    /// directory); a model outside them is refused with 403 (`LLM_MODEL_DIRS`, comma-separated).
    pub model_dirs: Vec<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            engine_binary: String::new(),
            max_engines: 8,
            default_max_seqs: 8,
            start_timeout_seconds: 120,
            drain_timeout_seconds: 30,
            stop_grace_seconds: 10,
            model_dirs: vec!["models".into()],
        }
    }
}

/// Allowed `--max-seqs` (config default and `POST /v1/management/engines/start`).
pub const MAX_SEQS: std::ops::RangeInclusive<usize> = 1..=1024;

impl ControlConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=256).contains(&self.max_engines),
            "control.max_engines",
            "must be 1..=256",
        )?;
        check(
            MAX_SEQS.contains(&self.default_max_seqs),
            "control.default_max_seqs",
            "must be 1..=1024",
        )?;
        check(
            (1..=86_400).contains(&self.start_timeout_seconds),
            "control.start_timeout_seconds",
            "must be 1..=86400",
        )?;
        check(
            self.drain_timeout_seconds <= 86_400,
            "control.drain_timeout_seconds",
            "must be 0..=86400 (0 stops without waiting for in-flight requests)",
        )?;
        check(
            self.stop_grace_seconds <= 3_600,
            "control.stop_grace_seconds",
            "must be 0..=3600 (0 sends SIGKILL right after SIGTERM)",
        )?;
        for (i, d) in self.model_dirs.iter().enumerate() {
            check(
                !d.trim().is_empty(),
                &format!("control.model_dirs[{i}]"),
                "must be a folder path",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_field() {
        ControlConfig::default().validate().unwrap();
        let field = |c: ControlConfig| c.validate().unwrap_err().field;
        let d = ControlConfig::default;
        assert_eq!(
            field(ControlConfig {
                max_engines: 0,
                ..d()
            }),
            "control.max_engines"
        );
        assert_eq!(
            field(ControlConfig {
                default_max_seqs: 0,
                ..d()
            }),
            "control.default_max_seqs"
        );
        assert_eq!(
            field(ControlConfig {
                start_timeout_seconds: 0,
                ..d()
            }),
            "control.start_timeout_seconds"
        );
        assert_eq!(
            field(ControlConfig {
                stop_grace_seconds: 10_000,
                ..d()
            }),
            "control.stop_grace_seconds"
        );
    }
}
