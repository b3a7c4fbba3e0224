//! Requests in flight, as the vLLM-style gauges on `/metrics` report them.
//!
//! mistral.rs exposes no queue statistics, so the engine counts its own requests: a guard is
//! taken when a generation starts and lives inside the response body stream, so it is released
//! when the stream ends or the client disconnects, not when the handler returns.
//!
//! - `running` = min(in flight, max_seqs): mistral.rs schedules at most `max_seqs` sequences
//!   per step; `waiting` = the rest, queued inside the engine.
//! - KV-cache usage (estimate): the tokens (prompt + generated so far) held by the requests in
//!   flight, divided by `max_seqs × context length`, the most the engine can hold at once.
//!   On CPU mistral.rs allocates KV memory per sequence as it grows (no paged pool), so this is
//!   the fraction of that maximum in use, not a measured allocator statistic.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Debug)]
pub struct Inflight {
    count: AtomicUsize,
    tokens: AtomicU64,
    max_seqs: usize,
    capacity_tokens: u64,
}

/// The gauges at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub running: usize,
    pub waiting: usize,
    pub kv_cache_usage: f64,
}

impl Inflight {
    pub fn new(max_seqs: usize, max_seq_len: usize) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicUsize::new(0),
            tokens: AtomicU64::new(0),
            max_seqs: max_seqs.max(1),
            capacity_tokens: (max_seqs.max(1) * max_seq_len.max(1)) as u64,
        })
    }

    /// Start tracking one request holding `prompt_tokens`.
    pub fn begin(self: &Arc<Self>, prompt_tokens: u64) -> InflightGuard {
        self.count.fetch_add(1, Relaxed);
        self.tokens.fetch_add(prompt_tokens, Relaxed);
        InflightGuard {
            inflight: self.clone(),
            tokens: prompt_tokens,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let n = self.count.load(Relaxed);
        let running = n.min(self.max_seqs);
        Snapshot {
            running,
            waiting: n - running,
            kv_cache_usage: (self.tokens.load(Relaxed) as f64 / self.capacity_tokens as f64)
                .min(1.0),
        }
    }
}

/// One request in flight; dropping it releases the request.
#[derive(Debug)]
pub struct InflightGuard {
    inflight: Arc<Inflight>,
    tokens: u64,
}

impl InflightGuard {
    /// The request generated one more token.
    pub fn add_token(&mut self) {
        self.tokens += 1;
        self.inflight.tokens.fetch_add(1, Relaxed);
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.inflight.count.fetch_sub(1, Relaxed);
        self.inflight.tokens.fetch_sub(self.tokens, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_waiting_and_kv() {
        let f = Inflight::new(2, 100);
        let mut a = f.begin(50);
        let _b = f.begin(30);
        let c = f.begin(20);
        assert_eq!(
            f.snapshot(),
            Snapshot {
                running: 2,
                waiting: 1,
                kv_cache_usage: 0.5
            }
        );
        a.add_token();
        drop(c);
        assert_eq!(f.snapshot().waiting, 0);
        assert!((f.snapshot().kv_cache_usage - 0.405).abs() < 1e-9);
        drop(a);
        drop(_b);
        assert_eq!(
            f.snapshot(),
            Snapshot {
                running: 0,
                waiting: 0,
                kv_cache_usage: 0.0
            }
        );
    }
}
