//! The fleet's prefix-cache hit rate over a run, when the target is a sagellm gateway: its
//! `GET /api/workers` carries each worker's scraped `vllm:prefix_cache_hits_total` /
//! `queries_total`; the rate is the change of their sums from before the run to after it.
//! Other targets (a worker itself, another router) have no such endpoint: no rate.

use std::time::Duration;

use super::target::Target;
use crate::views::WorkerInfo;

/// How long to wait after a run for the gateway's next scrape of its workers (its default
/// `health.scrape_interval_ms` is 1 s).
pub const SETTLE: Duration = Duration::from_millis(1_500);

/// Summed prefix-cache counters of the gateway's workers, `(hits, queries)`; `None` when the
/// target is no sagellm gateway or no worker exports them.
pub async fn counters(target: &Target) -> Option<(f64, f64)> {
    let resp = target
        .get("/api/workers")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let workers: Vec<WorkerInfo> = resp.json().await.ok()?;
    let mut sum: Option<(f64, f64)> = None;
    for w in &workers {
        if let (Some(h), Some(q)) = (w.load.prefix_cache_hits, w.load.prefix_cache_queries) {
            let (sh, sq) = sum.unwrap_or((0.0, 0.0));
            sum = Some((sh + h, sq + q));
        }
    }
    sum
}

/// The hit rate between two readings (`None` without both, or without queries between them).
pub fn hit_rate(before: Option<(f64, f64)>, after: Option<(f64, f64)>) -> Option<f64> {
    let ((h0, q0), (h1, q1)) = (before?, after?);
    let queries = q1 - q0;
    (queries > 0.0).then(|| ((h1 - h0) / queries).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_change_over_the_run() {
        assert_eq!(
            hit_rate(Some((10.0, 100.0)), Some((70.0, 200.0))),
            Some(0.6)
        );
        assert_eq!(hit_rate(None, Some((1.0, 2.0))), None);
        assert_eq!(
            hit_rate(Some((1.0, 2.0)), Some((1.0, 2.0))),
            None,
            "no traffic"
        );
        // A worker restarted (counters went back): never outside 0..1.
        assert_eq!(hit_rate(Some((50.0, 100.0)), Some((0.0, 150.0))), Some(0.0));
    }
}
