use serde_json::json;

use super::*;

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}

fn cfg() -> K8sDiscoveryConfig {
    K8sDiscoveryConfig {
        selector: "app=vllm".into(),
        ..Default::default()
    }
}

fn t(url: &str, models: &[&str], terminating: bool) -> Target {
    Target {
        url: url.into(),
        models: models.iter().map(|m| m.to_string()).collect(),
        terminating,
        pod: None,
    }
}

#[test]
fn ready_endpoints_are_workers_and_terminating_ones_drain() {
    let a = slice(json!({
        "metadata": {"name": "vllm-abc", "labels": {"sagellm.io/model": "llama"}},
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8000}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
            {"addresses": ["10.0.0.2"], "targetRef": {"kind": "Pod", "name": "vllm-7f9c"}},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
            {"addresses": ["10.0.0.4"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": [], "conditions": {"ready": true}}
        ]
    }));
    let mut c = cfg();
    c.port_name = "http".into();
    let with_pod = Target {
        pod: Some("vllm-7f9c".into()),
        ..t("http://10.0.0.2:8000", &["llama"], false)
    };
    assert_eq!(
        targets([&a], &c),
        [
            t("http://10.0.0.1:8000", &["llama"], false),
            with_pod,
            t("http://10.0.0.4:8000", &["llama"], true),
        ]
    );
    // No port name: the first port. No model label: the configured models.
    let mut c = cfg();
    c.model_label = "other".into();
    c.models = vec!["m".into()];
    assert_eq!(
        targets([&a], &c)[0],
        t("http://10.0.0.1:9090", &["m"], false)
    );
    // A named port the slice lacks: no workers from it.
    c.port_name = "grpc".into();
    assert!(targets([&a], &c).is_empty());
}

#[test]
fn a_pod_in_two_slices_counts_once_and_ipv6_is_bracketed() {
    let ports = json!([{"port": 8000}]);
    let old = slice(json!({
        "metadata": {"name": "old"}, "addressType": "IPv4", "ports": ports,
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": false, "terminating": true}}]
    }));
    let new = slice(json!({
        "metadata": {"name": "new"}, "addressType": "IPv4", "ports": ports,
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}]
    }));
    let v6 = slice(json!({
        "metadata": {"name": "v6"}, "addressType": "IPv6", "ports": ports,
        "endpoints": [{"addresses": ["fd00::5"]}]
    }));
    assert_eq!(
        targets([&old, &new, &v6], &cfg()),
        [
            t("http://10.0.0.1:8000", &[], false),
            t("http://[fd00::5]:8000", &[], false),
        ]
    );
    // Without ports (a Service without a selector's port yet): nothing.
    let bare = slice(json!({
        "metadata": {"name": "bare"}, "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.9"]}]
    }));
    assert!(targets([&bare], &cfg()).is_empty());
}

#[test]
fn a_pod_declares_its_model_by_annotation_then_label() {
    let pod = |v: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(v).unwrap()
    };
    let key = "sagellm.io/model";
    let both = pod(json!({"metadata": {
        "annotations": {"sagellm.io/model": "meta-llama/Llama-3.1-8B-Instruct"},
        "labels": {"sagellm.io/model": "llama"}
    }}));
    assert_eq!(
        super::super::k8s_pods::declared(&both, key).as_deref(),
        Some("meta-llama/Llama-3.1-8B-Instruct")
    );
    let label = pod(json!({"metadata": {"labels": {"sagellm.io/model": "llama"}}}));
    assert_eq!(
        super::super::k8s_pods::declared(&label, key).as_deref(),
        Some("llama")
    );
    let blank = pod(json!({"metadata": {"annotations": {"sagellm.io/model": " "}}}));
    assert_eq!(super::super::k8s_pods::declared(&blank, key), None);
    assert_eq!(
        super::super::k8s_pods::declared(&pod(json!({"metadata": {}})), key),
        None
    );
}
