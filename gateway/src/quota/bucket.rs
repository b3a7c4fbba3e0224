//! The arithmetic of the per-key buckets, on plain numbers (µs), shared by the in-memory
//! buckets ([`super::local`]) and mirrored line for line by the Redis script
//! ([`super::shared`]).
//!
//! Both buckets are GCRA: a TAT (theoretical arrival time) per bucket.
//! - requests: period `T = 60 s / rpm`, burst `rpm`: admitted when `TAT − now ≤ (rpm − 1)·T`,
//!   then `TAT = max(TAT, now) + T`;
//! - tokens: period `T = 60 s / tpm` per token, a minute's window: admitted while
//!   `TAT − now < 60 s` (tokens are left), then charged `n` tokens: `TAT = max(TAT, now) + n·T`.
//!   The estimate charged at admission is corrected when the usage is known
//!   (`TAT += (actual − estimate)·T`, never below now).

/// One minute in µs: the requests bucket's refill time and the tokens bucket's window.
pub const MINUTE_US: f64 = 60e6;

/// A request against a requests bucket: the new TAT, or the wait (µs) until one is free.
pub fn take_request(tat: f64, now: f64, rpm: u32) -> Result<f64, f64> {
    let period = MINUTE_US / f64::from(rpm);
    let tat = tat.max(now);
    let wait = (tat - now) - (f64::from(rpm) - 1.0) * period;
    if wait > 0.0 {
        Err(wait)
    } else {
        Ok(tat + period)
    }
}

/// `tokens` charged against a tokens bucket: the new TAT, or the wait (µs) until tokens are
/// left again.
pub fn take_tokens(tat: f64, now: f64, tpm: u64, tokens: u64) -> Result<f64, f64> {
    let period = MINUTE_US / tpm as f64;
    let tat = tat.max(now);
    if tat - now >= MINUTE_US {
        return Err(tat - now - MINUTE_US + period);
    }
    Ok(tat + tokens as f64 * period)
}

/// Correct a tokens bucket by `delta` tokens (positive: more were used than estimated).
pub fn adjust_tokens(tat: f64, now: f64, tpm: u64, delta: i64) -> f64 {
    let period = MINUTE_US / tpm as f64;
    (tat.max(now) + delta as f64 * period).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_burst_then_refill() {
        let mut tat = 0.0;
        for i in 0..60 {
            tat = take_request(tat, 0.0, 60).unwrap_or_else(|_| panic!("request {i}"));
        }
        let wait = take_request(tat, 0.0, 60).unwrap_err();
        assert!((wait - 1e6).abs() < 1.0, "{wait}");
        assert!(
            take_request(tat, 1e6, 60).is_ok(),
            "one more after a second"
        );
    }

    #[test]
    fn tokens_are_spent_then_refunded() {
        // 1000 tokens per minute; an estimate of 600, twice: the second still fits (tokens
        // were left when it came), the third does not.
        let t = take_tokens(0.0, 0.0, 1000, 600).unwrap();
        let t = take_tokens(t, 0.0, 1000, 600).unwrap();
        let wait = take_tokens(t, 0.0, 1000, 600).unwrap_err();
        assert!(wait > 0.0 && wait < 60e6, "{wait}");
        // The answers were short: 400 of each estimate come back.
        let t = adjust_tokens(t, 0.0, 1000, -800);
        assert!(take_tokens(t, 0.0, 1000, 600).is_ok());
        // A refund never makes the bucket fuller than full.
        assert_eq!(adjust_tokens(10.0, 50.0, 1000, -1_000_000), 50.0);
    }
}
