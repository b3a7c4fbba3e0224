//! The standard OpenTelemetry environment variables, read into `[telemetry]`
//! (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>):
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | `traces_endpoint`, as given |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | `traces_endpoint` = this + `/v1/traces` |
//! | `OTEL_SERVICE_NAME` | `service_name` |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `sampler`, `sampler_arg` |
//! | `OTEL_EXPORTER_OTLP_HEADERS` (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`) | `headers` (`k=v,k2=v2`, values percent-decoded) |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` (`…_TRACES_TIMEOUT`) | `export_timeout_ms` |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_MAX_QUEUE_SIZE` | the batching |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | no traces, whatever else is set |
//!
//! A protocol other than `http/protobuf` (`OTEL_EXPORTER_OTLP_PROTOCOL`) or an exporter other
//! than `otlp`/`none` is an error naming the variable, not a silent "no traces".

use std::collections::BTreeMap;

use super::{ConfigError, TelemetryConfig};

/// `[telemetry]` values from the environment (each `None` when its variable is unset).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtelEnv {
    pub traces_endpoint: Option<String>,
    pub disabled: bool,
    pub service_name: Option<String>,
    pub sampler: Option<String>,
    pub sampler_arg: Option<f64>,
    pub headers: Option<BTreeMap<String, String>>,
    pub export_timeout_ms: Option<u64>,
    pub export_interval_ms: Option<u64>,
    pub max_batch_spans: Option<usize>,
    pub max_queue_spans: Option<usize>,
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| ConfigError::new(name, format!("`{v}` is not a number")))
}

/// `%XX` sequences decoded (the spec's encoding of header values).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn headers(name: &str, v: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, val) = pair.split_once('=').ok_or_else(|| {
            ConfigError::new(name, "expected key=value pairs separated by commas")
        })?;
        out.insert(k.trim().to_string(), percent_decode(val.trim()));
    }
    Ok(out)
}

impl OtelEnv {
    pub fn from_env(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(p) = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .map(|p| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", p))
            .or_else(|| {
                get("OTEL_EXPORTER_OTLP_PROTOCOL").map(|p| ("OTEL_EXPORTER_OTLP_PROTOCOL", p))
            })
        {
            if p.1.trim() != "http/protobuf" {
                return Err(ConfigError::new(
                    p.0,
                    format!("`{}`: the gateway exports OTLP over http/protobuf only (port 4318 on a collector)", p.1.trim()),
                ));
            }
        }
        let exporter = get("OTEL_TRACES_EXPORTER");
        if let Some(e) = exporter.as_deref().map(str::trim) {
            if e != "otlp" && e != "none" {
                return Err(ConfigError::new(
                    "OTEL_TRACES_EXPORTER",
                    format!("`{e}`: only otlp or none"),
                ));
            }
        }
        let sdk_disabled = match get("OTEL_SDK_DISABLED") {
            Some(v) => super::sources::parse_bool("OTEL_SDK_DISABLED", &v)?,
            None => false,
        };
        let traces_endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .map(|e| e.trim().to_string())
            .or_else(|| {
                get("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|e| format!("{}/v1/traces", e.trim().trim_end_matches('/')))
            });
        let timeout = get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", v))
            .or_else(|| {
                get("OTEL_EXPORTER_OTLP_TIMEOUT").map(|v| ("OTEL_EXPORTER_OTLP_TIMEOUT", v))
            });
        let header_var = get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", v))
            .or_else(|| {
                get("OTEL_EXPORTER_OTLP_HEADERS").map(|v| ("OTEL_EXPORTER_OTLP_HEADERS", v))
            });
        Ok(Self {
            traces_endpoint,
            disabled: sdk_disabled || exporter.as_deref().map(str::trim) == Some("none"),
            service_name: get("OTEL_SERVICE_NAME").map(|s| s.trim().to_string()),
            sampler: get("OTEL_TRACES_SAMPLER").map(|s| s.trim().to_ascii_lowercase()),
            sampler_arg: get("OTEL_TRACES_SAMPLER_ARG")
                .map(|v| number("OTEL_TRACES_SAMPLER_ARG", &v))
                .transpose()?,
            headers: header_var.map(|(n, v)| headers(n, &v)).transpose()?,
            export_timeout_ms: timeout.map(|(n, v)| number(n, &v)).transpose()?,
            export_interval_ms: get("OTEL_BSP_SCHEDULE_DELAY")
                .map(|v| number("OTEL_BSP_SCHEDULE_DELAY", &v))
                .transpose()?,
            max_batch_spans: get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .map(|v| number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &v))
                .transpose()?,
            max_queue_spans: get("OTEL_BSP_MAX_QUEUE_SIZE")
                .map(|v| number("OTEL_BSP_MAX_QUEUE_SIZE", &v))
                .transpose()?,
        })
    }

    pub fn apply(&self, t: &mut TelemetryConfig) {
        if let Some(e) = &self.traces_endpoint {
            t.traces_endpoint = Some(e.clone());
        }
        if self.disabled {
            t.traces_endpoint = None;
        }
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        set(&mut t.service_name, &self.service_name);
        set(&mut t.sampler, &self.sampler);
        set(&mut t.sampler_arg, &self.sampler_arg);
        set(&mut t.headers, &self.headers);
        set(&mut t.export_timeout_ms, &self.export_timeout_ms);
        set(&mut t.export_interval_ms, &self.export_interval_ms);
        set(&mut t.max_batch_spans, &self.max_batch_spans);
        set(&mut t.max_queue_spans, &self.max_queue_spans);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let o = OtelEnv::from_env(&|k: &str| map.get(k).cloned())?;
        let mut t = TelemetryConfig::default();
        o.apply(&mut t);
        Ok(t)
    }

    #[test]
    fn the_standard_variables() {
        assert_eq!(
            env(&[]).unwrap(),
            TelemetryConfig::default(),
            "off when unset"
        );
        let t = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_SERVICE_NAME", "edge-gw"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%3Db,x-team = blue "),
            ("OTEL_BSP_SCHEDULE_DELAY", "500"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(
            t.traces_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(t.service_name, "edge-gw");
        assert_eq!(
            (t.sampler.as_str(), t.sampler_arg),
            ("parentbased_traceidratio", 0.25)
        );
        assert_eq!(t.headers["api-key"], "a=b");
        assert_eq!(t.headers["x-team"], "blue");
        assert_eq!(t.export_interval_ms, 500);
        // The per-signal endpoint wins, as given.
        let t = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:9999/traces"),
        ])
        .unwrap();
        assert_eq!(t.traces_endpoint.as_deref(), Some("http://b:9999/traces"));
    }

    #[test]
    fn switched_off_and_refused() {
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let t = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"), off]).unwrap();
            assert_eq!(t.traces_endpoint, None, "{off:?}");
        }
        for (bad, field) in [
            (
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (("OTEL_TRACES_EXPORTER", "zipkin"), "OTEL_TRACES_EXPORTER"),
            (
                ("OTEL_TRACES_SAMPLER_ARG", "half"),
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (("OTEL_SDK_DISABLED", "perhaps"), "OTEL_SDK_DISABLED"),
        ] {
            assert_eq!(env(&[bad]).unwrap_err().field, field);
        }
    }
}
