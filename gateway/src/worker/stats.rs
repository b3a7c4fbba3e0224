//! Per-worker request statistics: EWMAs of end-to-end latency, time to first token, time
//! per output token and prefill time per 1,000 uncached prompt tokens, a time-decayed error
//! rate, and lifetime totals.
//!
//! The prefill rate learns only from streamed responses whose routing decision estimated the
//! uncached prompt tokens (the cache-aware policies) and found at least
//! [`PREFILL_SAMPLE_MIN_TOKENS`] of them: then the time to the first token is mostly
//! prefill, not the fixed cost of a request.
//!
//! The error rate is an EWMA of 0/1 outcomes whose value also halves every
//! [`ERROR_HALF_LIFE_MS`] without traffic, so a worker that failed once is not shunned forever
//! by cost-based policies that then never send it the traffic that would clear its record.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::atomic_f64::AtomicF64;

/// Weight of a new sample in the latency EWMAs.
pub const EWMA_ALPHA: f64 = 0.2;
/// Weight of a new outcome in the error-rate EWMA (≈ a 10-request window).
pub const ERROR_ALPHA: f64 = 0.1;
/// The error rate halves after this long without new outcomes.
pub const ERROR_HALF_LIFE_MS: f64 = 10_000.0;
/// Fewer uncached prompt tokens than this say too little about the prefill rate.
pub const PREFILL_SAMPLE_MIN_TOKENS: u32 = 256;

/// Milliseconds on a process-wide monotonic clock.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What one finished request tells about its worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub success: bool,
    pub latency: Duration,
    /// Time to the first token of a streamed response.
    pub ttft: Option<Duration>,
    pub completion_tokens: Option<u64>,
    /// The routing decision's estimate of the prompt tokens the worker had to prefill.
    pub prefill_tokens: Option<u32>,
}

impl Outcome {
    /// Time per output token after the first, when it can be computed.
    pub fn tpot(&self) -> Option<Duration> {
        let (ttft, n) = (self.ttft?, self.completion_tokens?);
        (n >= 2 && self.latency > ttft).then(|| (self.latency - ttft) / (n - 1) as u32)
    }

    /// Time to the first token per 1,000 prefilled tokens, in ms, when it says something.
    pub fn prefill_ms_per_1k(&self) -> Option<f64> {
        let (ttft, n) = (self.ttft?, self.prefill_tokens?);
        (n >= PREFILL_SAMPLE_MIN_TOKENS).then(|| ms(ttft) * 1000.0 / f64::from(n))
    }
}

#[derive(Debug)]
pub struct Stats {
    latency_ms: AtomicF64,
    ttft_ms: AtomicF64,
    tpot_ms: AtomicF64,
    prefill_ms_per_1k: AtomicF64,
    error_rate: AtomicF64,
    error_at_ms: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Learned cost of the `adaptive` policy (NaN = unexplored).
    pub adaptive_cost: AtomicF64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            latency_ms: AtomicF64::new(f64::NAN),
            ttft_ms: AtomicF64::new(f64::NAN),
            tpot_ms: AtomicF64::new(f64::NAN),
            prefill_ms_per_1k: AtomicF64::new(f64::NAN),
            error_rate: AtomicF64::new(0.0),
            error_at_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            adaptive_cost: AtomicF64::new(f64::NAN),
        }
    }
}

fn ewma(cell: &AtomicF64, sample: f64, alpha: f64) {
    cell.update(|old| {
        if old.is_nan() {
            sample
        } else {
            old + alpha * (sample - old)
        }
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A serialisable copy of the statistics (NaN-free: `None` when there is no sample yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatsView {
    pub latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    /// Time to first token per 1,000 uncached prompt tokens (see the module doc).
    #[serde(default)]
    pub prefill_ms_per_1k: Option<f64>,
    pub error_rate: f64,
    pub requests: u64,
    pub errors: u64,
}

impl Stats {
    pub fn record(&self, o: &Outcome) {
        self.record_at(o, now_ms())
    }

    pub fn record_at(&self, o: &Outcome, now: u64) {
        self.requests.fetch_add(1, Relaxed);
        if o.success {
            ewma(&self.latency_ms, ms(o.latency), EWMA_ALPHA);
            if let Some(t) = o.ttft {
                ewma(&self.ttft_ms, ms(t), EWMA_ALPHA);
            }
            if let Some(t) = o.tpot() {
                ewma(&self.tpot_ms, ms(t), EWMA_ALPHA);
            }
            if let Some(r) = o.prefill_ms_per_1k() {
                ewma(&self.prefill_ms_per_1k, r, EWMA_ALPHA);
            }
        } else {
            self.errors.fetch_add(1, Relaxed);
        }
        let decayed = self.error_rate_at(now);
        let sample = if o.success { 0.0 } else { 1.0 };
        self.error_rate
            .set(decayed + ERROR_ALPHA * (sample - decayed));
        self.error_at_ms.store(now, Relaxed);
    }

    pub fn error_rate(&self) -> f64 {
        self.error_rate_at(now_ms())
    }

    pub fn error_rate_at(&self, now: u64) -> f64 {
        let age = now.saturating_sub(self.error_at_ms.load(Relaxed)) as f64;
        self.error_rate.get() * 0.5f64.powf(age / ERROR_HALF_LIFE_MS)
    }

    /// EWMA end-to-end latency in ms (NaN before the first success).
    pub fn latency_ms(&self) -> f64 {
        self.latency_ms.get()
    }

    pub fn view(&self) -> StatsView {
        let opt = |v: f64| (!v.is_nan()).then_some(v);
        StatsView {
            latency_ms: opt(self.latency_ms.get()),
            ttft_ms: opt(self.ttft_ms.get()),
            tpot_ms: opt(self.tpot_ms.get()),
            prefill_ms_per_1k: opt(self.prefill_ms_per_1k.get()),
            error_rate: self.error_rate(),
            requests: self.requests.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(latency_ms: u64) -> Outcome {
        Outcome {
            success: true,
            latency: Duration::from_millis(latency_ms),
            ttft: Some(Duration::from_millis(10)),
            completion_tokens: Some(11),
            prefill_tokens: None,
        }
    }

    #[test]
    fn ewma_starts_at_first_sample_and_moves_by_alpha() {
        let s = Stats::default();
        assert_eq!(s.view().latency_ms, None);
        s.record_at(&ok(110), 0);
        assert_eq!(s.view().latency_ms, Some(110.0));
        assert_eq!(s.view().tpot_ms, Some(10.0));
        s.record_at(&ok(210), 0);
        assert!((s.latency_ms() - 130.0).abs() < 1e-9);
    }

    #[test]
    fn prefill_rate_learns_only_from_long_uncached_prompts() {
        let s = Stats::default();
        let with = |prefill_tokens, ttft_ms| Outcome {
            ttft: Some(Duration::from_millis(ttft_ms)),
            prefill_tokens,
            ..ok(500)
        };
        s.record_at(&with(None, 400), 0);
        s.record_at(&with(Some(PREFILL_SAMPLE_MIN_TOKENS - 1), 400), 0);
        assert_eq!(s.view().prefill_ms_per_1k, None);
        s.record_at(&with(Some(2000), 100), 0); // 50 ms per 1k
        assert_eq!(s.view().prefill_ms_per_1k, Some(50.0));
        s.record_at(&with(Some(1000), 100), 0); // 100 ms per 1k
        assert!((s.view().prefill_ms_per_1k.unwrap() - 60.0).abs() < 1e-9);
        let failed = Outcome {
            success: false,
            ..with(Some(1000), 900)
        };
        s.record_at(&failed, 0);
        assert!((s.view().prefill_ms_per_1k.unwrap() - 60.0).abs() < 1e-9);
    }

    #[test]
    fn error_rate_rises_and_decays() {
        let s = Stats::default();
        let fail = Outcome {
            success: false,
            ..Default::default()
        };
        for _ in 0..10 {
            s.record_at(&fail, 1_000);
        }
        let r = s.error_rate_at(1_000);
        assert!(r > 0.6 && r < 0.7, "{r}");
        assert!((s.error_rate_at(11_000) - r / 2.0).abs() < 1e-9);
        s.record_at(&ok(5), 11_000);
        assert!(s.error_rate_at(11_000) < r / 2.0);
        assert_eq!(s.view().errors, 10);
        assert_eq!(s.view().requests, 11);
    }
}
