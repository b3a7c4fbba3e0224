//! Accumulating outcomes: counts, errors by kind, output tokens, and HdrHistograms of the
//! latencies (recorded in microseconds, summarised in milliseconds).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::driver::Outcome;
use super::report::{ErrorSummary, Percentiles};

/// Largest latency recorded exactly; longer ones saturate at it (one hour, in µs).
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency distribution with 3 significant digits from 1 µs to 1 h.
#[derive(Clone, Debug)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self(
            Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .expect("static histogram bounds are valid"),
        )
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// p50/p95/p99/mean/max in milliseconds; `None` without samples.
    pub fn summary(&self) -> Option<Percentiles> {
        if self.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Percentiles {
            count: self.len(),
            mean: (self.0.mean()).round() / 1000.0,
            p50: ms(self.0.value_at_quantile(0.50)),
            p95: ms(self.0.value_at_quantile(0.95)),
            p99: ms(self.0.value_at_quantile(0.99)),
            max: ms(self.0.max()),
        })
    }
}

/// Everything counted so far in a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub ok: u64,
    pub errors: BTreeMap<String, ErrorSummary>,
    pub output_tokens: u64,
    /// Successful requests whose token count was estimated (no `usage` in the response).
    pub without_usage: u64,
    pub e2e: LatencyHistogram,
    pub ttft: LatencyHistogram,
    pub itl: LatencyHistogram,
    pub tpot: LatencyHistogram,
}

impl Stats {
    /// Counts one finished request. Latencies are those of successful requests only.
    pub fn record(&mut self, outcome: &Outcome) {
        match &outcome.result {
            Ok(m) => {
                self.ok += 1;
                self.output_tokens += m.output_tokens;
                self.without_usage += u64::from(!m.usage_reported);
                self.e2e.record(outcome.e2e);
                if let Some(ttft) = m.ttft {
                    self.ttft.record(ttft);
                }
                for gap in &m.itl {
                    self.itl.record(*gap);
                }
                if let Some(tpot) = m.tpot(outcome.e2e) {
                    self.tpot.record(tpot);
                }
            }
            Err(f) => {
                let entry = self
                    .errors
                    .entry(f.kind.clone())
                    .or_insert_with(|| ErrorSummary {
                        count: 0,
                        first_message: f.message.clone(),
                    });
                entry.count += 1;
            }
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }

    /// Requests that finished, successfully or not.
    pub fn finished(&self) -> u64 {
        self.ok + self.error_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::driver::{Failure, Measured};

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.summary(), None);
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary().unwrap();
        assert_eq!(s.count, 100);
        // 3 significant digits: within 0.1 % of the exact order statistic.
        for (got, want) in [(s.p50, 50.0), (s.p95, 95.0), (s.p99, 99.0), (s.max, 100.0)] {
            assert!((got - want).abs() <= want * 0.001, "{got} vs {want}");
        }
        assert!((s.mean - 50.5).abs() < 0.1, "{}", s.mean);
    }

    #[test]
    fn huge_latencies_saturate_instead_of_failing() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::from_secs(10 * 3600));
        h.record(Duration::ZERO);
        assert_eq!(h.len(), 2);
        assert!(h.summary().unwrap().max >= 3_599_000.0);
    }

    #[test]
    fn records_successes_and_errors_by_kind() {
        let mut stats = Stats::default();
        let ok = Outcome {
            e2e: Duration::from_millis(280),
            result: Ok(Measured {
                ttft: Some(Duration::from_millis(100)),
                itl: vec![Duration::from_millis(20); 9],
                output_tokens: 10,
                usage_reported: true,
            }),
        };
        stats.record(&ok);
        for message in ["first", "second"] {
            stats.record(&Outcome {
                e2e: Duration::from_millis(1),
                result: Err(Failure::new("503", message)),
            });
        }
        assert_eq!((stats.ok, stats.error_count(), stats.finished()), (1, 2, 3));
        assert_eq!(stats.errors["503"].count, 2);
        assert_eq!(stats.errors["503"].first_message, "first");
        assert_eq!(stats.output_tokens, 10);
        assert_eq!(stats.e2e.len(), 1, "failed requests have no latency");
        assert_eq!(stats.itl.len(), 9);
        let tpot = stats.tpot.summary().unwrap();
        assert!((tpot.p50 - 20.0).abs() < 0.05, "{tpot:?}");
    }
}
