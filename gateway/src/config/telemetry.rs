//! `[telemetry]`: OpenTelemetry traces over OTLP/HTTP (protobuf). Off unless an endpoint is
//! set, in the file or through the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_TRACES_SAMPLER_ARG`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SDK_DISABLED`,
//! `OTEL_TRACES_EXPORTER=none`; see `sources`). Read at start-up: a change needs a restart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};

/// The samplers of `OTEL_TRACES_SAMPLER`.
pub const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`
    /// (`https://` is checked against `upstream.ca_file` or the system's roots). Unset: no
    /// traces.
    pub traces_endpoint: Option<String>,
    /// `service.name` of the spans' resource.
    pub service_name: String,
    /// Which requests are traced (the names of `OTEL_TRACES_SAMPLER`).
    pub sampler: String,
    /// The ratio of the `traceidratio` samplers, 0.0..=1.0.
    pub sampler_arg: f64,
    /// Headers sent with every export (a collector's API key); shown redacted.
    pub headers: BTreeMap<String, String>,
    /// A batch is sent at least this often (when there is something to send).
    pub export_interval_ms: u64,
    /// Spans per export request.
    pub max_batch_spans: usize,
    /// Spans waiting for export; beyond that new spans are dropped (and counted), never
    /// waited for.
    pub max_queue_spans: usize,
    /// One export request's time limit.
    pub export_timeout_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            traces_endpoint: None,
            service_name: "sagellm-gateway".into(),
            sampler: "parentbased_always_on".into(),
            sampler_arg: 1.0,
            headers: BTreeMap::new(),
            export_interval_ms: 2_000,
            max_batch_spans: 512,
            max_queue_spans: 4_096,
            export_timeout_ms: 5_000,
        }
    }
}

impl TelemetryConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.traces_endpoint {
            check(
                url.starts_with("http://") || url.starts_with("https://"),
                "telemetry.traces_endpoint",
                "must be an http:// or https:// URL (e.g. http://127.0.0.1:4318/v1/traces)",
            )?;
            check(
                url.parse::<http::Uri>()
                    .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty())),
                "telemetry.traces_endpoint",
                "is not a valid URL",
            )?;
        }
        check(
            !self.service_name.trim().is_empty(),
            "telemetry.service_name",
            "must not be empty",
        )?;
        check(
            SAMPLERS.contains(&self.sampler.as_str()),
            "telemetry.sampler",
            "must be one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio",
        )?;
        check(
            (0.0..=1.0).contains(&self.sampler_arg),
            "telemetry.sampler_arg",
            "must be between 0.0 and 1.0",
        )?;
        for (name, value) in &self.headers {
            check(
                http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                    && http::HeaderValue::from_str(value).is_ok(),
                "telemetry.headers",
                "must be valid HTTP header names and values",
            )?;
        }
        check(
            self.export_interval_ms >= 10,
            "telemetry.export_interval_ms",
            "must be >= 10",
        )?;
        check(
            self.max_batch_spans >= 1,
            "telemetry.max_batch_spans",
            "must be >= 1",
        )?;
        check(
            self.max_queue_spans >= self.max_batch_spans,
            "telemetry.max_queue_spans",
            "must be >= max_batch_spans",
        )?;
        check(
            self.export_timeout_ms >= 1,
            "telemetry.export_timeout_ms",
            "must be >= 1",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_field() {
        let ok = TelemetryConfig {
            traces_endpoint: Some("http://127.0.0.1:4318/v1/traces".into()),
            ..Default::default()
        };
        ok.validate().unwrap();
        for (bad, field) in [
            (
                TelemetryConfig {
                    traces_endpoint: Some("127.0.0.1:4318".into()),
                    ..ok.clone()
                },
                "telemetry.traces_endpoint",
            ),
            (
                TelemetryConfig {
                    sampler: "sometimes".into(),
                    ..ok.clone()
                },
                "telemetry.sampler",
            ),
            (
                TelemetryConfig {
                    sampler_arg: 1.5,
                    ..ok.clone()
                },
                "telemetry.sampler_arg",
            ),
            (
                TelemetryConfig {
                    headers: [("bad name".into(), "x".into())].into(),
                    ..ok.clone()
                },
                "telemetry.headers",
            ),
            (
                TelemetryConfig {
                    max_queue_spans: 1,
                    ..ok.clone()
                },
                "telemetry.max_queue_spans",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().field, field);
        }
    }
}
