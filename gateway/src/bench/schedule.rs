//! The open-loop arrival schedule of `--rate`: a Poisson process, i.e. exponentially
//! distributed gaps with mean `1 / rate`, drawn from a seeded RNG so that a run's plan is
//! reproducible (the same seed sends at the same offsets).

use std::time::Duration;

/// Exponential inter-arrival gaps for `rate` arrivals per second.
#[derive(Clone, Debug)]
pub struct PoissonGaps {
    rng: fastrand::Rng,
    rate: f64,
}

impl PoissonGaps {
    /// `rate` must be finite and > 0 (see [`super::args::parse_rate`]).
    pub fn new(rate: f64, seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            rate,
        }
    }

    /// The next gap: `−ln(U) / rate` with `U` uniform in (0, 1].
    pub fn next_gap(&mut self) -> Duration {
        let u = 1.0 - self.rng.f64(); // f64() is in [0, 1): keep ln away from 0.
        Duration::from_secs_f64(-u.ln() / self.rate)
    }
}

/// Arrival offsets from the start of the run: the running sum of [`PoissonGaps`], ending before
/// `duration` and after `limit` arrivals (whichever comes first; one of them should be set).
#[derive(Clone, Debug)]
pub struct Arrivals {
    gaps: PoissonGaps,
    offset: Duration,
    duration: Option<Duration>,
    remaining: Option<u64>,
}

impl Arrivals {
    pub fn new(rate: f64, seed: u64, duration: Option<Duration>, limit: Option<u64>) -> Self {
        Self {
            gaps: PoissonGaps::new(rate, seed),
            offset: Duration::ZERO,
            duration,
            remaining: limit,
        }
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.remaining == Some(0) {
            return None;
        }
        let offset = self.offset.saturating_add(self.gaps.next_gap());
        if self.duration.is_some_and(|d| offset >= d) {
            self.remaining = Some(0);
            return None;
        }
        self.offset = offset;
        if let Some(r) = &mut self.remaining {
            *r -= 1;
        }
        Some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_average_one_over_rate() {
        let mut gaps = PoissonGaps::new(50.0, 42);
        let n = 20_000;
        let total: f64 = (0..n).map(|_| gaps.next_gap().as_secs_f64()).sum();
        let mean = total / n as f64;
        // The standard error of the mean is 0.02 / sqrt(20000) ≈ 0.00014 s.
        assert!((mean - 0.02).abs() < 0.001, "mean gap {mean}");
    }

    #[test]
    fn same_seed_same_schedule() {
        let a: Vec<_> = Arrivals::new(10.0, 7, None, Some(50)).collect();
        let b: Vec<_> = Arrivals::new(10.0, 7, None, Some(50)).collect();
        let c: Vec<_> = Arrivals::new(10.0, 8, None, Some(50)).collect();
        assert_eq!(a.len(), 50);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[0] <= w[1]), "offsets never go back");
    }

    #[test]
    fn arrivals_stop_at_duration_or_limit() {
        let d = Duration::from_secs(100);
        let all: Vec<_> = Arrivals::new(20.0, 1, Some(d), None).collect();
        assert!(all.iter().all(|o| *o < d));
        // 2000 expected; a Poisson count has a standard deviation of about 45.
        assert!((1800..2200).contains(&all.len()), "{}", all.len());
        assert_eq!(Arrivals::new(20.0, 1, Some(d), Some(5)).count(), 5);
    }
}
