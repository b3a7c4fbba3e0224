//! `PUT /api/config`: a partial update merged into the live config, and the redacted view
//! `GET /api/config` shows.
//!
//! The body is a JSON object shaped like the TOML file (`{"routing":{"strategy":"round_robin"}}`);
//! dotted keys (`{"routing.strategy":"round_robin"}`) and the short names of the environment
//! settings (`routing_strategy`, `rate_limit_enabled`, `circuit_breaker_enabled`) work too.
//! Objects merge key by key; any other value (arrays included) replaces the old one.

use serde_json::{Map, Value};

use crate::config::{Config, ConfigError};

/// Shown instead of secrets.
pub const REDACTED: &str = "<redacted>";

/// Short names accepted at the top level of a patch (and by `sagellm config set`).
const ALIASES: [(&str, &str); 5] = [
    ("routing_strategy", "routing.strategy"),
    ("rate_limit_enabled", "rate_limit.enabled"),
    ("circuit_breaker_enabled", "circuit_breaker.enabled"),
    ("api_keys", "auth.api_keys"),
    ("admin_key", "auth.admin_key"),
];

/// `current` with `patch` merged in, parsed and validated. Errors name the field.
pub fn patched(current: &Config, patch: &Value) -> Result<Config, ConfigError> {
    let Value::Object(fields) = patch else {
        return Err(ConfigError::new(
            "body",
            "must be a JSON object, e.g. {\"routing\":{\"strategy\":\"round_robin\"}}",
        ));
    };
    let mut merged =
        serde_json::to_value(current).map_err(|e| ConfigError::new("config", e.to_string()))?;
    for (key, value) in fields {
        let path = ALIASES
            .iter()
            .find(|(short, _)| short == key)
            .map(|(_, long)| *long)
            .unwrap_or(key);
        if path.split('.').any(str::is_empty) {
            let field = if key.is_empty() { "body" } else { key };
            return Err(ConfigError::new(
                field,
                format!("`{key}` is not a valid key"),
            ));
        }
        // "a.b" = v becomes {"a":{"b":v}}.
        let mut nested = value.clone();
        for part in path.rsplit('.') {
            let mut m = Map::new();
            m.insert(part.to_string(), nested);
            nested = Value::Object(m);
        }
        merge(&mut merged, nested);
    }
    reject_redacted(&merged)?;
    reject_huge_integers(&merged, &mut String::new())?;
    let config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
        let field = e.path().to_string();
        ConfigError::new(
            if field == "." { "body".into() } else { field },
            e.inner().to_string(),
        )
    })?;
    config.validate()?;
    Ok(config)
}

fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The config file is the fleet's source of truth, so a patch may only set what TOML can
/// hold: integers up to `i64::MAX`. The error names the first field over it.
fn reject_huge_integers(v: &Value, path: &mut String) -> Result<(), ConfigError> {
    let len = path.len();
    let result = match v {
        Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_some() => Err(ConfigError::new(
            path.clone(),
            format!("{n} is too large (at most {})", i64::MAX),
        )),
        Value::Object(m) => m.iter().try_for_each(|(k, child)| {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            let r = reject_huge_integers(child, path);
            path.truncate(len);
            r
        }),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(i, child)| {
            path.push_str(&format!("[{i}]"));
            let r = reject_huge_integers(child, path);
            path.truncate(len);
            r
        }),
        _ => Ok(()),
    };
    result
}

/// A client that sends back what `GET /api/config` showed must not set keys to the mask.
fn reject_redacted(v: &Value) -> Result<(), ConfigError> {
    let auth = &v["auth"];
    let masked = |x: &Value| x.as_str() == Some(REDACTED);
    if auth["api_keys"]
        .as_array()
        .is_some_and(|keys| keys.iter().any(masked))
    {
        return Err(ConfigError::new(
            "auth.api_keys",
            "contains the redaction mask; send the real keys",
        ));
    }
    if masked(&auth["admin_key"]) {
        return Err(ConfigError::new(
            "auth.admin_key",
            "is the redaction mask; send the real key",
        ));
    }
    for (i, worker) in v["workers"].as_array().into_iter().flatten().enumerate() {
        let headers = worker["headers"].as_object().into_iter().flatten();
        if let Some((name, _)) = headers.into_iter().find(|(_, value)| masked(value)) {
            return Err(ConfigError::new(
                format!("workers[{i}].headers.{name}"),
                "is the redaction mask; send the real value",
            ));
        }
    }
    let telemetry = v["telemetry"]["headers"].as_object().into_iter().flatten();
    if let Some((name, _)) = telemetry.into_iter().find(|(_, value)| masked(value)) {
        return Err(ConfigError::new(
            format!("telemetry.headers.{name}"),
            "is the redaction mask; send the real value",
        ));
    }
    for (field, list) in [
        ("scheduler.slo", &v["scheduler"]["slo"]),
        ("quotas", &v["quotas"]),
    ] {
        if let Some(i) = list
            .as_array()
            .and_then(|l| l.iter().position(|s| masked(&s["api_key"])))
        {
            return Err(ConfigError::new(
                format!("{field}[{i}].api_key"),
                "is the redaction mask; send the real key",
            ));
        }
    }
    Ok(())
}

/// The config as JSON with API and admin keys (also those of `scheduler.slo`) and the
/// values of workers' headers masked.
pub fn redacted(config: &Config) -> Value {
    let mut v = serde_json::to_value(config).unwrap_or(Value::Null);
    for worker in v["workers"].as_array_mut().into_iter().flatten() {
        for value in worker["headers"]
            .as_object_mut()
            .into_iter()
            .flat_map(|h| h.values_mut())
        {
            *value = Value::String(REDACTED.into());
        }
    }
    for value in v["telemetry"]["headers"]
        .as_object_mut()
        .into_iter()
        .flat_map(|h| h.values_mut())
    {
        *value = Value::String(REDACTED.into());
    }
    if let Some(keys) = v["auth"]["api_keys"].as_array_mut() {
        keys.iter_mut()
            .for_each(|k| *k = Value::String(REDACTED.into()));
    }
    if v["auth"]["admin_key"].is_string() {
        v["auth"]["admin_key"] = Value::String(REDACTED.into());
    }
    for list in ["/scheduler/slo", "/quotas"] {
        if let Some(items) = v.pointer_mut(list).and_then(Value::as_array_mut) {
            items
                .iter_mut()
                .for_each(|s| s["api_key"] = Value::String(REDACTED.into()));
        }
    }
    // `redis://user:password@host`: the credentials.
    if let Some(url) = v["redis"]["url"].as_str() {
        if let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@')) {
            if at > scheme {
                let shown = format!("{}{REDACTED}{}", &url[..scheme + 3], &url[at..]);
                v["redis"]["url"] = Value::String(shown);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Strategy;
    use serde_json::json;

    #[test]
    fn nested_dotted_and_short_names() {
        let c = Config::default();
        let a = patched(&c, &json!({"routing": {"strategy": "round_robin"}})).unwrap();
        let b = patched(&c, &json!({"routing.strategy": "round_robin"})).unwrap();
        let d = patched(&c, &json!({"routing_strategy": "round_robin"})).unwrap();
        assert_eq!(a.routing.strategy, Strategy::RoundRobin);
        assert_eq!(a, b);
        assert_eq!(a, d);
        // Untouched fields keep their values.
        assert_eq!(a.routing.p2c, c.routing.p2c);
        let e = patched(
            &c,
            &json!({"rate_limit.per_user_rpm": 5, "retry": {"max_attempts": 1}}),
        )
        .unwrap();
        assert_eq!((e.rate_limit.per_user_rpm, e.retry.max_attempts), (5, 1));
    }

    #[test]
    fn errors_name_the_field() {
        let c = Config::default();
        let e = patched(&c, &json!({"routing": {"strategy": "fastest"}})).unwrap_err();
        assert_eq!(e.field, "routing.strategy");
        let e = patched(&c, &json!({"limits": {"max_body_bytes": -1}})).unwrap_err();
        assert_eq!(e.field, "limits.max_body_bytes");
        let e = patched(&c, &json!({"routing": {"colour": 1}})).unwrap_err();
        assert_eq!(e.field, "routing.colour");
        assert!(e.message.contains("colour"), "{}", e.message);
        let e = patched(&c, &json!({"routing.adaptive.epsilon": 2.0})).unwrap_err();
        assert_eq!(e.field, "routing.adaptive.epsilon");
        let e = patched(&c, &json!([1, 2])).unwrap_err();
        assert_eq!(e.field, "body");
        let e = patched(&c, &json!({"routing..strategy": "x"})).unwrap_err();
        assert_eq!(e.field, "routing..strategy");
    }

    #[test]
    fn secrets_are_masked_and_the_mask_is_refused() {
        let mut c = Config::default();
        c.auth.api_keys = vec!["sk-secret".into()];
        c.auth.admin_key = Some("admin-secret".into());
        let shown = redacted(&c).to_string();
        assert!(!shown.contains("secret"), "{shown}");
        let e = patched(&c, &redacted(&c)).unwrap_err();
        assert_eq!(e.field, "auth.api_keys");
        let kept = patched(&c, &json!({"routing_strategy": "least_queue"})).unwrap();
        assert_eq!(kept.auth, c.auth, "keys survive unrelated patches");

        // The keys of per-key quotas.
        let q = Config {
            quotas: vec![crate::config::KeyQuota {
                name: "team-a".into(),
                api_key: "sk-quota-secret".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let shown = redacted(&q);
        assert!(!shown.to_string().contains("secret"), "{shown}");
        assert_eq!(shown["quotas"][0]["name"], "team-a");
        let e = patched(&q, &json!({"quotas": shown["quotas"].clone()})).unwrap_err();
        assert_eq!(e.field, "quotas[0].api_key");

        // Redis credentials too.
        let mut r = Config::default();
        r.redis.url = Some("redis://gw:hunter2@10.0.0.5:6379/0".into());
        assert_eq!(
            redacted(&r)["redis"]["url"],
            format!("redis://{REDACTED}@10.0.0.5:6379/0")
        );

        // Keys of per-key TTL objectives are secrets too.
        let mut c = Config::default();
        c.scheduler.slo = vec![crate::config::KeySlo {
            api_key: "sk-slo-secret".into(),
            ttft_ms: 500,
        }];
        let shown = redacted(&c);
        assert!(!shown.to_string().contains("secret"), "{shown}");
        assert_eq!(shown["scheduler"]["slo"][0]["ttft_ms"], 500);
        let e = patched(&c, &json!({"scheduler": shown["scheduler"].clone()})).unwrap_err();
        assert_eq!(e.field, "scheduler.slo[0].api_key");
        let kept = patched(&c, &json!({"scheduler.policy": "slo"})).unwrap();
        assert_eq!(kept.scheduler.slo, c.scheduler.slo);

        // So are the headers a worker entry sends (e.g. a hosted endpoint's key).
        let c = Config {
            workers: vec![crate::config::WorkerConfig {
                url: "https://127.0.0.1:1".into(),
                headers: [(
                    "Authorization".to_string(),
                    "Bearer sk-hosted-secret".to_string(),
                )]
                .into(),
                ..Default::default()
            }],
            ..Config::default()
        };
        let shown = redacted(&c);
        assert!(!shown.to_string().contains("secret"), "{shown}");
        assert_eq!(shown["workers"][0]["url"], "https://127.0.0.1:1");
        let e = patched(&c, &json!({"workers": shown["workers"].clone()})).unwrap_err();
        assert_eq!(e.field, "workers[0].headers.Authorization");

        // And those of the trace exporter (a collector's key).
        let c = Config {
            telemetry: crate::config::TelemetryConfig {
                headers: [(
                    "x-honeycomb-team".to_string(),
                    "collector-secret".to_string(),
                )]
                .into(),
                ..Default::default()
            },
            ..Config::default()
        };
        let shown = redacted(&c);
        assert!(!shown.to_string().contains("secret"), "{shown}");
        let e = patched(&c, &json!({"telemetry": shown["telemetry"].clone()})).unwrap_err();
        assert_eq!(e.field, "telemetry.headers.x-honeycomb-team");
    }

    /// Found by fuzzing: integers TOML cannot hold, and an empty key.
    #[test]
    fn huge_integers_and_empty_keys_name_the_field() {
        let c = Config::default();
        let e = patched(&c, &json!({"retry": {"max_backoff_ms": u64::MAX}})).unwrap_err();
        assert_eq!(e.field, "retry.max_backoff_ms");
        let e = patched(&c, &json!({"": 1})).unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.message.contains("not a valid key"), "{}", e.message);
    }
}
