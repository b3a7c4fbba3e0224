//! `[discovery.k8s]`: the EndpointSlices that list the workers when `mode = "k8s"` (see
//! [`crate::discovery`]). Checked whatever the mode; required fields only for `k8s`.

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct K8sDiscoveryConfig {
    /// The namespace of the EndpointSlices. Empty: the kubeconfig context's namespace (in a
    /// pod, its own namespace), else `default`.
    pub namespace: String,
    /// A label selector of EndpointSlices, e.g. `kubernetes.io/service-name=vllm` (the slices
    /// of one Service) or `app=vllm` (slices carry their Service's labels).
    pub selector: String,
    /// The slice port that is the workers' HTTP port, by name. Empty: the slice's first port.
    pub port_name: String,
    /// A kubeconfig file. Unset: in-cluster (the pod's ServiceAccount), else `$KUBECONFIG`,
    /// else `~/.kube/config`.
    pub kubeconfig: Option<String>,
    /// The key naming a worker's model: an annotation or label of its pod (read once per
    /// pod), else a label of its slice (from the Service's labels). Empty: not looked up.
    pub model_label: String,
    /// Models of workers whose pod and slice name none. Empty: each worker's
    /// `GET /v1/models`.
    pub models: Vec<String>,
}

impl Default for K8sDiscoveryConfig {
    fn default() -> Self {
        Self {
            namespace: String::new(),
            selector: String::new(),
            port_name: String::new(),
            kubeconfig: None,
            model_label: "sagellm.io/model".into(),
            models: Vec::new(),
        }
    }
}

/// A label key or value: letters, digits, `-`, `_`, `.` and `/` (the API server checks the
/// rest; this catches typos and injection before a request is made).
fn label_text(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

impl K8sDiscoveryConfig {
    pub(crate) fn validate(&self, required: bool) -> Result<(), ConfigError> {
        check(
            self.namespace.len() <= 63
                && self
                    .namespace
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "discovery.k8s.namespace",
            "must be a namespace name (lowercase letters, digits, '-')",
        )?;
        // `key=value`, `key!=value`, `key`, `!key`, joined by commas (no set-based syntax).
        let selector_ok = self.selector.split(',').all(|term| {
            let term = term.trim();
            let term = term.strip_prefix('!').unwrap_or(term);
            let (k, v) = term
                .split_once("!=")
                .or_else(|| term.split_once("=="))
                .or_else(|| term.split_once('='))
                .unwrap_or((term, ""));
            !k.is_empty() && label_text(k) && label_text(v)
        });
        check(
            self.selector.is_empty() || selector_ok,
            "discovery.k8s.selector",
            "must be a label selector like `kubernetes.io/service-name=vllm`",
        )?;
        if required {
            check(
                !self.selector.trim().is_empty(),
                "discovery.k8s.selector",
                "is needed with mode = \"k8s\" (e.g. `kubernetes.io/service-name=vllm`)",
            )?;
            check(
                cfg!(feature = "k8s"),
                "discovery.mode",
                "`k8s` needs a gateway built with the cargo feature `k8s` (on by default)",
            )?;
        }
        check(
            self.model_label.is_empty() || label_text(&self.model_label),
            "discovery.k8s.model_label",
            "must be a label key",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(selector: &str) -> K8sDiscoveryConfig {
        K8sDiscoveryConfig {
            selector: selector.into(),
            ..Default::default()
        }
    }

    #[test]
    fn selectors_and_namespaces_are_checked() {
        for ok in [
            "kubernetes.io/service-name=vllm",
            "app=vllm,tier!=canary",
            "app==vllm, !legacy",
            "app",
        ] {
            with(ok).validate(true).unwrap();
        }
        let field = |c: K8sDiscoveryConfig, required| c.validate(required).unwrap_err().field;
        assert_eq!(field(with(""), true), "discovery.k8s.selector");
        with("").validate(false).unwrap();
        assert_eq!(field(with("app=v&x=1"), false), "discovery.k8s.selector");
        assert_eq!(field(with("app=vllm,"), false), "discovery.k8s.selector");
        assert_eq!(field(with("=vllm"), false), "discovery.k8s.selector");
        let mut c = with("app=vllm");
        c.namespace = "LLM".into();
        assert_eq!(field(c, true), "discovery.k8s.namespace");
        let mut c = with("app=vllm");
        c.model_label = "model name".into();
        assert_eq!(field(c, true), "discovery.k8s.model_label");
    }
}
