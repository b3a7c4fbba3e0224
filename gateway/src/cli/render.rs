//! Human output of the CLI: aligned plain-text tables.

use crate::views::{StatusInfo, WorkerInfo};

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into())
}

pub fn workers(workers: &[WorkerInfo]) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                w.index.to_string(),
                w.url.clone(),
                w.source.as_str().to_string(),
                w.kind.as_str().to_string(),
                w.models.join(","),
                w.state.as_str().to_string(),
                w.breaker.state.as_str().to_string(),
                w.load.inflight.to_string(),
                format!("{:.0}/{:.0}", w.load.running, w.load.waiting),
                format!("{:.0}%", w.load.kv_cache * 100.0),
                w.load
                    .prefix_cache_hit_rate
                    .map_or_else(|| "-".into(), |r| format!("{:.0}%", r * 100.0)),
                ms(w.stats.latency_ms),
                ms(w.stats.ttft_ms),
                w.served.to_string(),
                w.stats.errors.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "#", "URL", "SOURCE", "KIND", "MODELS", "STATE", "BREAKER", "INFLIGHT", "RUN/WAIT",
            "KV", "HIT", "LAT_MS", "TTFT_MS", "SERVED", "ERRORS",
        ],
        &rows,
    )
}

pub fn status(s: &StatusInfo) -> String {
    let mut out = format!(
        "sageLLM Gateway {}  up {}  strategy {}\nworkers {}/{} healthy  active requests {}  requests {}  errors {}{}\n",
        s.version,
        uptime(s.uptime_seconds),
        s.routing_strategy,
        s.workers_healthy,
        s.workers_total,
        s.active_requests,
        s.requests_total,
        s.errors_total,
        if s.shutting_down { "  SHUTTING DOWN" } else { "" },
    );
    if let Some(e) = &s.config_error {
        out.push_str(&format!("last config change rejected: {e}\n"));
    }
    out
}

pub fn uptime(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(5.2), "5s");
        assert_eq!(uptime(125.0), "2m05s");
        assert_eq!(uptime(7320.0), "2h02m");
    }
}
