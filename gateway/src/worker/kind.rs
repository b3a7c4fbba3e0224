//! What software a worker runs, detected from `owned_by` in `/v1/models`, `GET /version` and
//! the metric names it exports. The kind decides nothing about routing; it tells operators
//! what they are looking at and which metric names to scrape.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerKind {
    #[default]
    Unknown,
    Vllm,
    Lmdeploy,
    Sglang,
    SagellmEngine,
    LlamaCpp,
    /// Any other OpenAI-compatible server.
    Openai,
}

impl WorkerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerKind::Unknown => "unknown",
            WorkerKind::Vllm => "vllm",
            WorkerKind::Lmdeploy => "lmdeploy",
            WorkerKind::Sglang => "sglang",
            WorkerKind::SagellmEngine => "sagellm-engine",
            WorkerKind::LlamaCpp => "llama-cpp",
            WorkerKind::Openai => "openai",
        }
    }

    /// Classify from a model's `owned_by`.
    pub fn from_owned_by(owned_by: &str) -> Self {
        let o = owned_by.to_ascii_lowercase();
        if o.contains("sagellm-engine") {
            WorkerKind::SagellmEngine
        } else if o.contains("vllm") {
            WorkerKind::Vllm
        } else if o.contains("lmdeploy") {
            WorkerKind::Lmdeploy
        } else if o.contains("sglang") {
            WorkerKind::Sglang
        } else if o.contains("llamacpp") || o.contains("llama.cpp") || o.contains("llama-cpp") {
            WorkerKind::LlamaCpp
        } else {
            WorkerKind::Openai
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_owned_by() {
        assert_eq!(WorkerKind::from_owned_by("vllm"), WorkerKind::Vllm);
        assert_eq!(WorkerKind::from_owned_by("lmdeploy"), WorkerKind::Lmdeploy);
        assert_eq!(WorkerKind::from_owned_by("sglang"), WorkerKind::Sglang);
        assert_eq!(
            WorkerKind::from_owned_by("sagellm-engine"),
            WorkerKind::SagellmEngine
        );
        assert_eq!(WorkerKind::from_owned_by("llamacpp"), WorkerKind::LlamaCpp);
        assert_eq!(
            WorkerKind::from_owned_by("organization-owner"),
            WorkerKind::Openai
        );
        assert_eq!(
            serde_json::to_string(&WorkerKind::SagellmEngine).unwrap(),
            "\"sagellm-engine\""
        );
    }
}
