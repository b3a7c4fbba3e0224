//! Parsing of the discovery endpoints: `GET /v1/models` (models, `owned_by` → kind) and
//! vLLM's `GET /version`.

use serde::Deserialize;

use crate::worker::{WorkerKind, WorkerMeta};

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
    #[serde(default)]
    owned_by: Option<String>,
}

/// Parse an OpenAI model list into worker metadata (kind from the first `owned_by`).
pub fn parse_models(body: &[u8]) -> Result<WorkerMeta, String> {
    let list: ModelList =
        serde_json::from_slice(body).map_err(|e| format!("invalid /v1/models response: {e}"))?;
    let mut meta = WorkerMeta::default();
    for m in list.data {
        if m.id.is_empty() || meta.models.contains(&m.id) {
            continue;
        }
        meta.owners.push(m.owned_by.unwrap_or_default());
        meta.models.push(m.id);
    }
    meta.kind = meta
        .owners
        .first()
        .map(|o| WorkerKind::from_owned_by(o))
        .unwrap_or(WorkerKind::Openai);
    Ok(meta)
}

/// Parse vLLM's `{"version": "0.11.0"}`.
pub fn parse_version(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct V {
        version: String,
    }
    serde_json::from_slice::<V>(body)
        .ok()
        .map(|v| v.version)
        .filter(|v| !v.is_empty() && v.len() < 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vllm_model_list() {
        let body = br#"{"object":"list","data":[{"id":"llama","object":"model","owned_by":"vllm","root":"llama"},
            {"id":"lora-a","object":"model","owned_by":"vllm"},{"id":"llama","owned_by":"vllm"}]}"#;
        let m = parse_models(body).unwrap();
        assert_eq!(m.models, vec!["llama", "lora-a"]);
        assert_eq!(m.kind, WorkerKind::Vllm);
        assert!(parse_models(b"{\"data\":5}").is_err());
        assert!(parse_models(b"<html>").is_err());
        assert_eq!(
            parse_version(br#"{"version":"0.11.0"}"#).as_deref(),
            Some("0.11.0")
        );
        assert_eq!(parse_version(b"nope"), None);
    }
}
