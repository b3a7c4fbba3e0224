//! The model a pod declares: `[discovery.k8s] model_label` as an annotation of the pod (model
//! names like `meta-llama/Llama-3.1-8B-Instruct` are valid annotation values, not label
//! values), else as its label. Each pod is read once (`GET` on the endpoint's `targetRef`)
//! when it first appears and forgotten when it leaves. Without permission to read pods (the
//! Role grants `get` on pods; a `403` otherwise) the slices' labels, the configured models or
//! each worker's `/v1/models` are used, and the refusal is logged once.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};

use super::k8s::Target;

/// Longest wait for one pod read (the watch waits meanwhile).
const POD_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

pub struct PodModels {
    api: Api<Pod>,
    key: String,
    /// Pod name → its declared model (None: it declares none).
    known: HashMap<String, Option<String>>,
    denied: bool,
}

/// The model `pod` declares under `key`: its annotation, else its label.
pub fn declared(pod: &Pod, key: &str) -> Option<String> {
    let m = &pod.metadata;
    m.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .or_else(|| m.labels.as_ref().and_then(|l| l.get(key)))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl PodModels {
    pub fn new(client: Client, namespace: &str, key: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            key: key.to_string(),
            known: HashMap::new(),
            denied: false,
        }
    }

    /// Give each target its pod's declared model (reading pods not seen before).
    pub async fn resolve(&mut self, targets: &mut [Target]) {
        if self.key.is_empty() {
            return;
        }
        self.known
            .retain(|pod, _| targets.iter().any(|t| t.pod.as_deref() == Some(pod)));
        for t in targets.iter_mut() {
            let Some(pod) = t.pod.clone() else { continue };
            if !self.known.contains_key(&pod) && !self.denied {
                let read = tokio::time::timeout(POD_READ_LIMIT, self.api.get_opt(&pod)).await;
                match read.unwrap_or_else(|_| Err(kube::Error::Service("timed out".into()))) {
                    Ok(found) => {
                        let model = found.as_ref().and_then(|p| declared(p, &self.key));
                        self.known.insert(pod.clone(), model);
                    }
                    Err(kube::Error::Api(s)) if s.is_forbidden() => {
                        tracing::warn!(%pod, "reading pods is not allowed: models come from the slices' labels, [discovery.k8s] models or each worker's /v1/models");
                        self.denied = true;
                    }
                    // Not cached: tried again at the next change.
                    Err(e) => tracing::warn!(%pod, error = %e, "reading a pod's model failed"),
                }
            }
            if let Some(Some(model)) = self.known.get(&pod) {
                t.models = vec![model.clone()];
            }
        }
    }
}
