//! `[[workers]]`: the static worker list (one table per worker).

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};
use crate::worker::spec::{WorkerSpec, WEIGHTS};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Base URL, e.g. `http://10.0.0.5:8000` (a trailing `/v1` is accepted and dropped).
    pub url: String,
    /// Weight for `weighted_round_robin` and the consistent-hash ring.
    pub weight: u32,
    /// Models served. Empty = discover from the worker's `GET /v1/models`.
    pub models: Vec<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            weight: 1,
            models: Vec::new(),
        }
    }
}

/// Check every worker of the list; fields are named by index (`workers[1].url`).
pub(crate) fn validate_workers(workers: &[WorkerConfig]) -> Result<(), ConfigError> {
    for (i, w) in workers.iter().enumerate() {
        let field = format!("workers[{i}].url");
        WorkerSpec::parse_url(&w.url).map_err(|e| ConfigError::new(&field, e))?;
        check(
            WEIGHTS.contains(&w.weight),
            &format!("workers[{i}].weight"),
            "must be 1..=1000",
        )?;
    }
    Ok(())
}
