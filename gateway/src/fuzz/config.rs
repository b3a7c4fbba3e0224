//! The config parser (`Config::from_toml` + `validate`), `PUT /api/config` patches
//! (`reload::patch::patched`) and `LLM_WORKER_URLS` (`config::sources::parse_worker_urls`).
//!
//! Invariants: no panic; every rejection names a field; an accepted config survives a TOML
//! round trip unchanged; patching a config with itself changes nothing; a rendered worker
//! list parses back to itself.

use serde_json::{Map, Value};

use super::{run, Gen};
use crate::config::sources::parse_worker_urls;
use crate::config::{Config, ConfigError, WorkerConfig};
use crate::reload::patch::patched;

const EXAMPLE: &str = include_str!("../../../conf/gateway.toml");

fn assert_named(e: &ConfigError) {
    assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}");
}

/// A config accepted by validation is the same after a TOML round trip.
fn round_trips(config: &Config) {
    let text = toml::to_string(config).expect("a config renders as TOML");
    let back = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e:?} in\n{text}"));
    assert_eq!(&back, config, "TOML round trip changed the config:\n{text}");
}

#[test]
fn any_toml_is_parsed_or_refused_with_a_field() {
    run("config-toml", |g| {
        let text = match g.rng.u8(0..3) {
            0 => String::from_utf8_lossy(&g.mutate(EXAMPLE.as_bytes())).into_owned(),
            1 => {
                // A valid file with one key's value replaced by another TOML value.
                let lines: Vec<&str> = EXAMPLE.lines().collect();
                let at = g.rng.usize(0..lines.len());
                let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                if let Some((key, _)) = lines[at].split_once(" = ") {
                    let value = g.pick(&[
                        "-1",
                        "0",
                        "1e400",
                        "\"\"",
                        "[]",
                        "true",
                        "4294967296",
                        "\"x\"",
                        "{}",
                    ]);
                    out[at] = format!("{key} = {value}");
                }
                out.join("\n")
            }
            _ => g.text(80),
        };
        match Config::from_toml(&text) {
            Ok(config) => match config.validate() {
                Ok(()) => round_trips(&config),
                Err(e) => assert_named(&e),
            },
            Err(e) => assert_named(&e),
        }
    });
}

/// Every `a.b.c` path to a leaf of `v`.
fn leaf_paths(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(child, p, out);
            }
        }
        _ => out.push(prefix),
    }
}

/// A value for a leaf: of its own kind, nudged, or anything at all.
fn leaf_value(g: &mut Gen, old: &Value) -> Value {
    match (g.rng.u8(0..3), old) {
        (0, Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(0.0);
            let nudged = *g.pick(&[0.0, -1.0, x * 2.0, x + 1.0, x - 1.0, 1e12, 0.5]);
            if n.is_f64() {
                serde_json::Number::from_f64(nudged).map_or(Value::Null, Value::Number)
            } else {
                (nudged as i64).into()
            }
        }
        (0, Value::Bool(b)) => Value::Bool(!b),
        (0, Value::String(_)) => Value::String(g.text(12)),
        (1, _) => g.json(2, &["url", "weight", "models", "enabled"]),
        _ => old.clone(),
    }
}

#[test]
fn any_patch_is_applied_or_refused_with_a_field() {
    let base = Config::from_toml(EXAMPLE).expect("the example config parses");
    let base_json = serde_json::to_value(&base).unwrap();
    let mut paths = Vec::new();
    leaf_paths(&base_json, String::new(), &mut paths);
    run("config-patch", |g| {
        let patch = if g.one_in(5) {
            g.json(
                3,
                &["routing", "strategy", "workers", "limits", "auth", "retry"],
            )
        } else {
            let mut m = Map::new();
            for _ in 0..g.rng.usize(1..4) {
                let path = g.pick(&paths).clone();
                let old = base_json.pointer(&format!("/{}", path.replace('.', "/")));
                let value = leaf_value(g, old.unwrap_or(&Value::Null));
                m.insert(path, value);
            }
            Value::Object(m)
        };
        match patched(&base, &patch) {
            Ok(config) => {
                round_trips(&config);
                let itself = serde_json::to_value(&config).unwrap();
                assert_eq!(
                    patched(&config, &itself).as_ref(),
                    Ok(&config),
                    "self-patch"
                );
            }
            Err(e) => assert_named(&e),
        }
    });
}

fn render(workers: &[WorkerConfig], g: &mut Gen) -> String {
    let mut parts = Vec::new();
    for w in workers {
        let pad = if g.bool() { " " } else { "" };
        let mut entry = format!("{pad}{}{pad}", w.url);
        if w.weight != 1 || g.bool() {
            entry.push_str(&format!(";{pad}weight={}", w.weight));
        }
        parts.push(entry);
        if g.one_in(5) {
            parts.push(String::new());
        }
    }
    parts.join(",")
}

#[test]
fn worker_url_lists_parse_back() {
    run("worker-urls", |g| {
        let workers: Vec<WorkerConfig> = (0..g.rng.usize(0..5))
            .map(|i| WorkerConfig {
                url: format!("http://10.0.0.{i}:{}", g.rng.u16(1..)),
                weight: g.rng.u32(1..=1000),
                ..Default::default()
            })
            .collect();
        let text = render(&workers, g);
        assert_eq!(
            parse_worker_urls(&text).as_deref(),
            Ok(&workers[..]),
            "{text:?}"
        );
        let mutated = String::from_utf8_lossy(&g.mutate(text.as_bytes())).into_owned();
        if let Err(e) = parse_worker_urls(&mutated) {
            assert!(!e.is_empty());
        }
    });
}
