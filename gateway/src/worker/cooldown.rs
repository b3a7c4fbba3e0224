//! A worker's own overload signal: a `429` or `503` carrying `Retry-After` takes the worker
//! out of routing for that long (capped by `retry.max_retry_after_ms`), instead of sending
//! it the next request at once only to be refused again. The request itself is retried on
//! another worker as usual. Read lock-free on every routing decision.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime};

/// The clock the deadlines count from (milliseconds since the first use).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// Until when the worker asked not to get requests.
#[derive(Debug, Default)]
pub struct Cooldown {
    /// Milliseconds since [`EPOCH`]; 0 = none.
    until_ms: AtomicU64,
}

impl Cooldown {
    /// Skip the worker for `d` from now (a later deadline already set is kept).
    pub fn start(&self, d: Duration) {
        let until = now_ms().saturating_add(d.as_millis() as u64).max(1);
        self.until_ms.fetch_max(until, Relaxed);
    }

    /// Time left, if the worker is cooling down now.
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.until_ms.load(Relaxed);
        let now = now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    pub fn active(&self) -> bool {
        self.remaining().is_some()
    }

    /// Route to the worker again (an operator's reset, or tests).
    pub fn clear(&self) {
        self.until_ms.store(0, Relaxed);
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3), as a duration from
/// `now`. `None` for anything else, a date in the past, or an absurd number.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    at.duration_since(now).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "99999999999999999999999",
            "Wed, 21 Oct 2015 07:27:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn a_cooldown_runs_out_and_keeps_the_later_deadline() {
        let c = Cooldown::default();
        assert!(!c.active());
        c.start(Duration::from_secs(60));
        c.start(Duration::from_millis(1));
        assert!(c.remaining().unwrap() > Duration::from_secs(50));
        c.clear();
        assert!(!c.active());
        c.start(Duration::ZERO);
        assert!(!c.active(), "zero seconds is no cooldown");
    }
}
