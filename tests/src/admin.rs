//! The simulator's own control endpoints for tests and demos:
//! `GET /sim/stats`, `POST /sim/config` (partial knobs) and `POST /sim/die`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::control::{SimControl, SimStats};
use crate::errors::bad_request;

/// `GET /sim/stats`
pub(crate) async fn stats(State(control): State<Arc<SimControl>>) -> Json<SimStats> {
    Json(control.stats())
}

/// `POST /sim/config`: applies a partial JSON of knobs (all or nothing) and returns the stats.
pub(crate) async fn config(State(control): State<Arc<SimControl>>, body: Bytes) -> Response {
    let patch = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(obj)) => Patch::parse(&obj),
        Ok(_) => Err("The body must be a JSON object of knobs.".to_string()),
        Err(e) => Err(format!("Invalid JSON body: {e}")),
    };
    match patch {
        Ok(patch) => {
            patch.apply(&control);
            Json(control.stats()).into_response()
        }
        Err(message) => bad_request(message),
    }
}

/// `POST /sim/die`: exits the process with code 1 in binary mode; in library mode it kills the
/// server like [`crate::SimHandle::kill`] (the connections drop, likely before this answer).
pub(crate) async fn die(State(control): State<Arc<SimControl>>) -> Json<Value> {
    if control.exit_on_die() {
        std::process::exit(1);
    }
    control.die.notify_waiters();
    Json(json!({"dying": true}))
}

/// A validated set of knob changes.
#[derive(Debug, Default)]
struct Patch {
    status: Option<Option<u16>>,
    hang: Option<bool>,
    fail_rate: Option<f64>,
    ttft_ms: Option<u64>,
    tpot_ms: Option<u64>,
    prefill_ms_per_1k_tokens: Option<u64>,
    batch_penalty: Option<f64>,
    speed: Option<f64>,
    output_tokens: Option<u32>,
    health_status: Option<u16>,
    sleeping: Option<bool>,
    break_after_tokens: Option<Option<u32>>,
    stall_after_tokens: Option<Option<u32>>,
    retry_after_secs: Option<Option<u64>>,
}

fn as_bool(key: &str, v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("`{key}` must be a boolean."))
}

fn as_u64(key: &str, v: &Value) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("`{key}` must be a non-negative integer."))
}

/// A token count, or `null` for none.
fn as_optional_count(key: &str, v: &Value) -> Result<Option<u32>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let n = as_u64(key, v)?;
    u32::try_from(n)
        .map(Some)
        .map_err(|_| format!("`{key}` is too large."))
}

fn as_status(key: &str, v: &Value) -> Result<u16, String> {
    match v.as_u64() {
        Some(code @ 100..=599) => Ok(code as u16),
        _ => Err(format!(
            "`{key}` must be an HTTP status between 100 and 599."
        )),
    }
}

impl Patch {
    fn parse(obj: &Map<String, Value>) -> Result<Self, String> {
        let mut p = Patch::default();
        for (key, v) in obj {
            let k = key.as_str();
            match k {
                "status" if v.is_null() => p.status = Some(None),
                "status" => p.status = Some(Some(as_status(k, v)?)),
                "hang" => p.hang = Some(as_bool(k, v)?),
                "fail_rate" => match v.as_f64() {
                    Some(r) if (0.0..=1.0).contains(&r) => p.fail_rate = Some(r),
                    _ => return Err("`fail_rate` must be a number in 0..=1.".to_string()),
                },
                "ttft_ms" => p.ttft_ms = Some(as_u64(k, v)?),
                "tpot_ms" => p.tpot_ms = Some(as_u64(k, v)?),
                "prefill_ms_per_1k_tokens" => p.prefill_ms_per_1k_tokens = Some(as_u64(k, v)?),
                "batch_penalty" => match v.as_f64() {
                    Some(x) if (0.0..=100.0).contains(&x) => p.batch_penalty = Some(x),
                    _ => return Err("`batch_penalty` must be a number in 0..=100.".to_string()),
                },
                "speed" => match v.as_f64() {
                    Some(x) if (0.01..=100.0).contains(&x) => p.speed = Some(x),
                    _ => return Err("`speed` must be a number in 0.01..=100.".to_string()),
                },
                "output_tokens" => {
                    let n = as_u64(k, v)?;
                    p.output_tokens =
                        Some(u32::try_from(n).map_err(|_| "`output_tokens` is too large.")?);
                }
                "health_status" => p.health_status = Some(as_status(k, v)?),
                "sleeping" => p.sleeping = Some(as_bool(k, v)?),
                "break_after_tokens" => p.break_after_tokens = Some(as_optional_count(k, v)?),
                "stall_after_tokens" => p.stall_after_tokens = Some(as_optional_count(k, v)?),
                "retry_after_secs" if v.is_null() => p.retry_after_secs = Some(None),
                "retry_after_secs" => p.retry_after_secs = Some(Some(as_u64(k, v)?)),
                other => {
                    return Err(format!(
                    "Unknown knob `{other}`; known: status, hang, fail_rate, ttft_ms, tpot_ms, \
                     prefill_ms_per_1k_tokens, batch_penalty, speed, output_tokens, \
                     health_status, sleeping, break_after_tokens, stall_after_tokens, \
                     retry_after_secs."
                ))
                }
            }
        }
        Ok(p)
    }

    fn apply(self, c: &SimControl) {
        if let Some(status) = self.status {
            c.set_status(status);
        }
        if let Some(hang) = self.hang {
            c.set_hang(hang);
        }
        if let Some(rate) = self.fail_rate {
            c.set_fail_rate(rate);
        }
        if let Some(ms) = self.ttft_ms {
            c.set_ttft(Duration::from_millis(ms));
        }
        if let Some(ms) = self.tpot_ms {
            c.set_tpot(Duration::from_millis(ms));
        }
        if let Some(ms) = self.prefill_ms_per_1k_tokens {
            c.set_prefill_per_1k_tokens(Duration::from_millis(ms));
        }
        if let Some(x) = self.batch_penalty {
            c.set_batch_penalty(x);
        }
        if let Some(x) = self.speed {
            c.set_speed(x);
        }
        if let Some(n) = self.output_tokens {
            c.set_output_tokens(n);
        }
        if let Some(status) = self.health_status {
            c.set_health_status(status);
        }
        if let Some(sleeping) = self.sleeping {
            c.set_sleeping(sleeping);
        }
        if let Some(n) = self.break_after_tokens {
            c.set_break_after_tokens(n);
        }
        if let Some(n) = self.stall_after_tokens {
            c.set_stall_after_tokens(n);
        }
        if let Some(s) = self.retry_after_secs {
            c.set_retry_after_secs(s);
        }
    }
}
