//! A minimal Prometheus text parser for the load gauges the gateway routes on.
//!
//! | signal | vLLM | LMDeploy |
//! |---|---|---|
//! | running | `vllm:num_requests_running` | `lmdeploy:num_requests_running` |
//! | waiting | `vllm:num_requests_waiting` | `lmdeploy:num_requests_waiting` |
//! | KV-cache use (0..1) | `vllm:kv_cache_usage_perc`, else `vllm:gpu_cache_usage_perc` | `lmdeploy:gpu_cache_usage_perc` |
//! | asleep | `vllm:engine_sleep_state` (a non-`awake` state at 1, or `awake` at 0) | – |
//! | prefix cache (tokens) | `vllm:prefix_cache_hits_total`, `vllm:prefix_cache_queries_total` (V1) | – |
//!
//! Series of one name with several label sets (several engines or models behind one server)
//! are summed for the counts; the KV-cache use takes the maximum.

/// The load gauges found in one scrape (`None` when the name is absent).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gauges {
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    pub kv_cache: Option<f64>,
    pub asleep: Option<bool>,
    /// Prompt tokens found in the prefix cache, and looked up there, since the worker started.
    pub prefix_hits: Option<f64>,
    pub prefix_queries: Option<f64>,
}

impl Gauges {
    /// Whether the page carried the queue gauges at all.
    pub fn has_load(&self) -> bool {
        self.running.is_some() || self.waiting.is_some()
    }
}

/// Sums stay finite whatever a worker reports (a lying page cannot make a load infinite).
fn add(slot: &mut Option<f64>, v: f64) {
    *slot = Some((slot.unwrap_or(0.0) + v).clamp(f64::MIN, f64::MAX));
}

fn max(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.map_or(v, |o| o.max(v)));
}

/// The offset of the `}` that closes the label set starting at `text[0] == '{'`: braces
/// inside quoted label values (`path="/a}b"`, with `\"` escapes) do not count.
fn labels_end(text: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in text.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Split `name{labels} value [timestamp]` into (name, labels, value).
fn split_sample(line: &str) -> Option<(&str, &str, f64)> {
    let (head, rest) = match line.find('{') {
        Some(i) => {
            let close = labels_end(&line[i..])? + i;
            (&line[..i], (&line[i + 1..close], &line[close + 1..]))
        }
        None => {
            let sp = line.find(char::is_whitespace)?;
            (&line[..sp], ("", &line[sp..]))
        }
    };
    let (labels, tail) = rest;
    let value = tail.split_whitespace().next()?.parse::<f64>().ok()?;
    value.is_finite().then_some((head.trim(), labels, value))
}

/// Extract the routing gauges from a `/metrics` page.
pub fn parse(text: &str) -> Gauges {
    let mut g = Gauges::default();
    let mut kv_new: Option<f64> = None;
    let mut kv_old: Option<f64> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, v)) = split_sample(line) else {
            continue;
        };
        match name {
            "vllm:num_requests_running" | "lmdeploy:num_requests_running" => add(&mut g.running, v),
            "vllm:num_requests_waiting" | "lmdeploy:num_requests_waiting" => add(&mut g.waiting, v),
            "vllm:kv_cache_usage_perc" => max(&mut kv_new, v),
            "vllm:prefix_cache_hits_total" => add(&mut g.prefix_hits, v),
            "vllm:prefix_cache_queries_total" => add(&mut g.prefix_queries, v),
            "vllm:gpu_cache_usage_perc" | "lmdeploy:gpu_cache_usage_perc" => max(&mut kv_old, v),
            "vllm:engine_sleep_state" => {
                let awake_label = labels.contains("sleep_state=\"awake\"");
                let asleep = if awake_label { v < 0.5 } else { v >= 0.5 };
                g.asleep = Some(g.asleep.unwrap_or(false) || asleep);
            }
            _ => {}
        }
    }
    g.kv_cache = kv_new.or(kv_old);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_cache_counters_are_summed_over_engines() {
        let g = parse(
            "# TYPE vllm:prefix_cache_hits_total counter\n\
             vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"m\"} 96.0\n\
             vllm:prefix_cache_hits_total{engine=\"1\",model_name=\"m\"} 4.0\n\
             vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"m\"} 400.0\n",
        );
        assert_eq!(g.prefix_hits, Some(100.0));
        assert_eq!(g.prefix_queries, Some(400.0));
        assert_eq!(parse("vllm:num_requests_running 1\n").prefix_hits, None);
    }

    #[test]
    fn parses_vllm_v1_page() {
        let page = r#"
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 3.0
vllm:num_requests_running{engine="1",model_name="llama"} 2.0
vllm:num_requests_waiting{engine="0",model_name="llama"} 4.0
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="llama"} 0.5
vllm:gpu_cache_usage_perc{model_name="llama"} 0.9
vllm:engine_sleep_state{engine="0",model_name="llama",sleep_state="awake"} 1.0
vllm:engine_sleep_state{engine="0",model_name="llama",sleep_state="weights_offloaded"} 0.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="llama"} 12
"#;
        let g = parse(page);
        assert_eq!(g.running, Some(5.0));
        assert_eq!(g.waiting, Some(4.0));
        assert_eq!(g.kv_cache, Some(0.5), "v1 name preferred over the old one");
        assert_eq!(g.asleep, Some(false));
        assert!(g.has_load());
    }

    #[test]
    fn old_vllm_lmdeploy_and_sleep() {
        let g =
            parse("vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.7\nvllm:num_requests_waiting 1\n");
        assert_eq!(g.kv_cache, Some(0.7));
        let g = parse("lmdeploy:num_requests_running 2\nlmdeploy:num_requests_waiting 1\nlmdeploy:gpu_cache_usage_perc 0.3 1700000000\n");
        assert_eq!(
            (g.running, g.waiting, g.kv_cache),
            (Some(2.0), Some(1.0), Some(0.3))
        );
        let g = parse("vllm:engine_sleep_state{sleep_state=\"weights_offloaded\"} 1\n");
        assert_eq!(g.asleep, Some(true));
        let g = parse("vllm:engine_sleep_state{sleep_state=\"awake\"} 0\n");
        assert_eq!(g.asleep, Some(true));
    }

    #[test]
    fn garbage_is_ignored() {
        let g = parse(
            "vllm:num_requests_running{broken 3\nvllm:num_requests_waiting NaN\n\u{0}\nfoo 1\n",
        );
        assert_eq!(g, Gauges::default());
        assert!(!g.has_load());
    }

    /// Found by fuzzing: a `}` inside a quoted label value ended the label set early.
    #[test]
    fn braces_inside_label_values() {
        let g = parse("vllm:num_requests_running{model_name=\"a}b\",engine=\"0\"} 3\n");
        assert_eq!(g.running, Some(3.0));
        let g = parse("vllm:num_requests_running 1e308\nvllm:num_requests_running 1e308\n");
        assert!(g.running.is_some_and(f64::is_finite), "{:?}", g.running);
    }
}
