//! The `/metrics` scrape parser (`probe::prom::parse`), which reads whatever a worker serves.
//!
//! Invariants: no panic on any text; a page rendered from known gauges (several series per
//! name, label values with escapes and braces, comments, timestamps, other metrics around
//! them) parses back to exactly those gauges.

use super::{run, Gen};
use crate::probe::prom::{parse, Gauges};

/// A label set in Prometheus's text format, values escaped as the format says.
fn labels(g: &mut Gen) -> String {
    if g.one_in(4) {
        return String::new();
    }
    let pairs: Vec<String> = (0..g.rng.usize(0..4))
        .map(|i| {
            let value = g
                .text(10)
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("l{i}=\"{value}\"")
        })
        .collect();
    format!("{{{}}}", pairs.join(","))
}

fn value(g: &mut Gen) -> (f64, String) {
    let v = f64::from(g.rng.u16(..)) / 4.0;
    let text = match g.rng.u8(0..3) {
        0 => format!("{v}"),
        1 => format!("{v:e}"),
        _ => format!("{v:.2}"),
    };
    (text.parse().unwrap(), text)
}

/// Noise a real page carries: help and type lines, histograms, other families, NaN/Inf.
fn noise(g: &mut Gen) -> String {
    match g.rng.u8(0..5) {
        0 => "# HELP vllm:num_requests_running Number of requests.".into(),
        1 => "# TYPE vllm:num_requests_waiting gauge".into(),
        2 => format!(
            "vllm:time_to_first_token_seconds_bucket{{le=\"+Inf\"}} {}",
            g.rng.u32(..)
        ),
        3 => "vllm:num_requests_running_total{x=\"y\"} NaN".into(),
        _ => format!("process_cpu_seconds_total {}", g.rng.f64()),
    }
}

#[test]
fn rendered_pages_parse_back() {
    const SUMMED: [&str; 4] = [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
    ];
    run("prom-round-trip", |g| {
        let mut want = Gauges::default();
        let mut lines = Vec::new();
        for _ in 0..g.rng.usize(0..10) {
            if g.one_in(3) {
                lines.push(noise(g));
                continue;
            }
            let which = g.rng.usize(0..SUMMED.len() + 1);
            let (v, text) = value(g);
            let name = if which == SUMMED.len() {
                let slot = want.kv_cache.get_or_insert(v);
                *slot = slot.max(v);
                "vllm:kv_cache_usage_perc"
            } else {
                let slot = match which {
                    0 => &mut want.running,
                    1 => &mut want.waiting,
                    2 => &mut want.prefix_hits,
                    _ => &mut want.prefix_queries,
                };
                *slot = Some(slot.unwrap_or(0.0) + v);
                SUMMED[which]
            };
            let ts = if g.one_in(3) { " 1700000000000" } else { "" };
            lines.push(format!("{name}{} {text}{ts}", labels(g)));
        }
        let nl = if g.one_in(4) { "\r\n" } else { "\n" };
        let page = lines.join(nl);
        assert_eq!(parse(&page), want, "{page}");
    });
}

#[test]
fn any_text_is_read_without_panic() {
    run("prom-any", |g| {
        let page = if g.bool() {
            g.text(120)
        } else {
            let base = "vllm:num_requests_running{a=\"b\"} 3\nvllm:kv_cache_usage_perc 0.5\n";
            String::from_utf8_lossy(&g.mutate(base.as_bytes())).into_owned()
        };
        let got = parse(&page);
        for v in [
            got.running,
            got.waiting,
            got.kv_cache,
            got.prefix_hits,
            got.prefix_queries,
        ]
        .into_iter()
        .flatten()
        {
            assert!(v.is_finite(), "{v} from {page:?}");
        }
    });
}
