//! Percentiles of one interval from two snapshots of a cumulative Prometheus histogram.
//!
//! The change of each bucket between the snapshots is the interval's distribution; inside the
//! bucket that holds the wanted rank the value is interpolated linearly, as Prometheus'
//! `histogram_quantile` does. A rank in the `+Inf` bucket is reported as the highest finite
//! bound (the histogram cannot say more).

use crate::metrics::Buckets;

/// The `q` quantile (0..=1) of the observations made between `prev` and `cur`, or `None`
/// when there were none (or the snapshots do not belong together).
pub fn quantile(prev: &Buckets, cur: &Buckets, q: f64) -> Option<f64> {
    let total = cur.count.checked_sub(prev.count)?;
    if total == 0 || (!prev.bounds.is_empty() && prev.bounds != cur.bounds) {
        return None;
    }
    let delta = |i: usize| {
        let before = prev.cumulative.get(i).copied().unwrap_or(0);
        cur.cumulative[i].saturating_sub(before)
    };
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut lower = 0.0;
    let mut below = 0u64;
    for (i, &upper) in cur.bounds.iter().enumerate() {
        let upto = delta(i);
        if upto as f64 >= rank && upto > below {
            let inside = (upto - below) as f64;
            return Some(lower + (upper - lower) * (rank - below as f64) / inside);
        }
        lower = upper;
        below = upto;
    }
    cur.bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(bounds: &[f64], per_bucket: &[u64], overflow: u64) -> Buckets {
        let mut cumulative = Vec::new();
        let mut run = 0;
        for n in per_bucket {
            run += n;
            cumulative.push(run);
        }
        Buckets {
            bounds: bounds.to_vec(),
            cumulative,
            count: run + overflow,
        }
    }

    const B: [f64; 4] = [0.001, 0.002, 0.004, 0.008];

    #[test]
    fn interpolates_inside_the_bucket_of_the_rank() {
        let prev = buckets(&B, &[0, 0, 0, 0], 0);
        // 10 observations in (2 ms, 4 ms]: the median is half-way through that bucket.
        let cur = buckets(&B, &[0, 0, 10, 0], 0);
        let p50 = quantile(&prev, &cur, 0.5).unwrap();
        assert!((p50 - 0.003).abs() < 1e-12, "{p50}");
        let p100 = quantile(&prev, &cur, 1.0).unwrap();
        assert!((p100 - 0.004).abs() < 1e-12, "{p100}");
    }

    #[test]
    fn only_the_interval_counts() {
        // 100 slow observations before the interval, 4 fast ones in it.
        let prev = buckets(&B, &[0, 0, 0, 100], 0);
        let cur = buckets(&B, &[4, 0, 0, 100], 0);
        let p99 = quantile(&prev, &cur, 0.99).unwrap();
        assert!(p99 <= 0.001, "{p99}");
    }

    #[test]
    fn mixed_buckets_pick_the_right_one() {
        let prev = buckets(&B, &[0, 0, 0, 0], 0);
        let cur = buckets(&B, &[50, 49, 0, 1], 0);
        let p50 = quantile(&prev, &cur, 0.5).unwrap();
        assert!(p50 > 0.0 && p50 <= 0.001, "{p50}");
        let p99 = quantile(&prev, &cur, 0.99).unwrap();
        assert!(p99 > 0.001 && p99 <= 0.002, "{p99}");
        let p100 = quantile(&prev, &cur, 1.0).unwrap();
        assert!(p100 > 0.004 && p100 <= 0.008, "{p100}");
    }

    #[test]
    fn overflow_reports_the_highest_bound() {
        let prev = buckets(&B, &[0, 0, 0, 0], 0);
        let cur = buckets(&B, &[0, 0, 0, 0], 3);
        assert_eq!(quantile(&prev, &cur, 0.5), Some(0.008));
    }

    #[test]
    fn nothing_observed_is_none() {
        let a = buckets(&B, &[1, 2, 3, 4], 0);
        assert_eq!(quantile(&a, &a, 0.5), None);
        // A counter reset (cur behind prev) or other buckets: no answer rather than a wrong one.
        let empty = buckets(&B, &[0, 0, 0, 0], 0);
        assert_eq!(quantile(&a, &empty, 0.5), None);
        let other = buckets(&[1.0, 2.0, 3.0, 4.0], &[1, 2, 3, 5], 0);
        assert_eq!(quantile(&a, &other, 0.5), None);
    }

    #[test]
    fn first_snapshot_from_nothing() {
        let cur = buckets(&B, &[0, 4, 0, 0], 0);
        let p50 = quantile(&Buckets::default(), &cur, 0.5).unwrap();
        assert!((p50 - 0.0015).abs() < 1e-12, "{p50}");
    }
}
