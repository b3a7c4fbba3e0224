//! One key's state in this process: its buckets (decisive without Redis, the fallback while
//! Redis is down), its requests in flight, and its usage counters (this replica's; the
//! metrics read them).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::bucket;

/// Which quota refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    RequestsPerMinute,
    TokensPerMinute,
    MaxConcurrent,
}

impl Exceeded {
    pub fn as_str(self) -> &'static str {
        match self {
            Exceeded::RequestsPerMinute => "requests_per_minute",
            Exceeded::TokensPerMinute => "tokens_per_minute",
            Exceeded::MaxConcurrent => "max_concurrent",
        }
    }
}

/// The limits one decision applies (a replica's share of them while Redis is down).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    pub rpm: u32,
    pub tpm: u64,
    pub concurrent: u32,
}

#[derive(Debug, Default)]
pub struct Usage {
    pub requests: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub refused: AtomicU64,
}

#[derive(Debug)]
pub struct KeyState {
    /// TATs of the requests and tokens buckets, µs since `epoch`.
    tats: Mutex<(f64, f64)>,
    epoch: Instant,
    pub in_flight: Arc<AtomicU32>,
    pub usage: Usage,
}

impl Default for KeyState {
    fn default() -> Self {
        Self {
            tats: Mutex::new((0.0, 0.0)),
            epoch: Instant::now(),
            in_flight: Arc::default(),
            usage: Usage::default(),
        }
    }
}

/// A request of this key in flight (dropped when the request ends).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl KeyState {
    fn now_us(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1e6
    }

    /// Count the request in flight (whoever decides: the guard is always held, so the
    /// count is right when the decision falls back here).
    pub fn enter(&self) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Decide here: the request (already counted in flight by `enter`) against `limits`,
    /// charging `estimate` tokens. Err: which quota, and the wait in µs.
    pub fn admit(&self, limits: Limits, estimate: u64) -> Result<(), (Exceeded, f64)> {
        if limits.concurrent > 0 && self.in_flight.load(Relaxed) > limits.concurrent {
            return Err((Exceeded::MaxConcurrent, 1e6));
        }
        let now = self.now_us();
        let mut tats = self.tats.lock();
        let requests = match limits.rpm {
            0 => tats.0,
            rpm => bucket::take_request(tats.0, now, rpm)
                .map_err(|w| (Exceeded::RequestsPerMinute, w))?,
        };
        let tokens = match limits.tpm {
            0 => tats.1,
            tpm => bucket::take_tokens(tats.1, now, tpm, estimate)
                .map_err(|w| (Exceeded::TokensPerMinute, w))?,
        };
        *tats = (requests, tokens);
        Ok(())
    }

    /// Correct the tokens bucket once the usage is known.
    pub fn adjust(&self, tpm: u64, delta: i64) {
        if tpm > 0 && delta != 0 {
            let now = self.now_us();
            let mut tats = self.tats.lock();
            tats.1 = bucket::adjust_tokens(tats.1, now, tpm, delta);
        }
    }

    pub fn record(&self, prompt: u64, completion: u64) {
        self.usage.requests.fetch_add(1, Relaxed);
        self.usage.prompt_tokens.fetch_add(prompt, Relaxed);
        self.usage.completion_tokens.fetch_add(completion, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_counts_until_the_guard_drops() {
        let k = KeyState::default();
        let limits = Limits {
            concurrent: 2,
            ..Default::default()
        };
        let a = k.enter();
        assert!(k.admit(limits, 0).is_ok());
        let b = k.enter();
        assert!(k.admit(limits, 0).is_ok());
        let c = k.enter();
        assert_eq!(k.admit(limits, 0).unwrap_err().0, Exceeded::MaxConcurrent);
        drop(c);
        drop(a);
        let _d = k.enter();
        assert!(k.admit(limits, 0).is_ok());
        drop(b);
        assert_eq!(k.in_flight.load(Relaxed), 1);
    }

    #[test]
    fn a_refusal_charges_nothing() {
        let k = KeyState::default();
        let limits = Limits {
            rpm: 1000,
            tpm: 100,
            concurrent: 0,
        };
        assert!(k.admit(limits, 150).is_ok());
        let before = *k.tats.lock();
        assert_eq!(
            k.admit(limits, 10).unwrap_err().0,
            Exceeded::TokensPerMinute
        );
        assert_eq!(
            *k.tats.lock(),
            before,
            "the requests bucket kept its cell too"
        );
        k.adjust(100, -150);
        assert!(k.admit(limits, 10).is_ok(), "refunded");
    }
}
