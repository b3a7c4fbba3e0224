//! The three queue orders, as one comparison: which of two waiting requests gets the next
//! free worker slot.

use std::cmp::Ordering;
use tokio::time::Instant;

use crate::config::QueuePolicy;

/// What the order looks at in a waiting request.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// Arrival order (ties and `fifo`).
    pub seq: u64,
    /// `X-Priority` / `priority`, higher first.
    pub priority: i64,
    /// When the first token is due (`slo`).
    pub deadline: Option<Instant>,
    pub since: Instant,
}

/// Priority after aging: one class up per `aging_ms` waited.
pub fn effective_priority(k: &Key, now: Instant, aging_ms: u64) -> i64 {
    let waited = now.saturating_duration_since(k.since).as_millis() as u64;
    k.priority
        .saturating_add((waited / aging_ms.max(1)).min(i64::MAX as u64) as i64)
}

/// `Less` when `a` goes before `b`.
pub fn compare(policy: QueuePolicy, a: &Key, b: &Key, now: Instant, aging_ms: u64) -> Ordering {
    let by_arrival = a.seq.cmp(&b.seq);
    match policy {
        QueuePolicy::Fifo => by_arrival,
        QueuePolicy::Priority => effective_priority(b, now, aging_ms)
            .cmp(&effective_priority(a, now, aging_ms))
            .then(by_arrival),
        // Requests with a deadline first, earliest first; the others after them, FIFO.
        QueuePolicy::Slo => match (a.deadline, b.deadline) {
            (Some(x), Some(y)) => x.cmp(&y).then(by_arrival),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => by_arrival,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(seq: u64, priority: i64, since: Instant, deadline: Option<Instant>) -> Key {
        Key {
            seq,
            priority,
            deadline,
            since,
        }
    }

    fn sorted(policy: QueuePolicy, keys: &[Key], now: Instant) -> Vec<u64> {
        let mut v = keys.to_vec();
        v.sort_by(|a, b| compare(policy, a, b, now, 1000));
        v.iter().map(|k| k.seq).collect()
    }

    #[test]
    fn fifo_is_arrival_order() {
        let t = Instant::now();
        let keys = [key(2, 9, t, None), key(0, -5, t, None), key(1, 0, t, None)];
        assert_eq!(sorted(QueuePolicy::Fifo, &keys, t), [0, 1, 2]);
    }

    #[test]
    fn priority_is_higher_first_then_fifo() {
        let t = Instant::now();
        let keys = [
            key(0, 0, t, None),
            key(1, 5, t, None),
            key(2, 5, t, None),
            key(3, -1, t, None),
        ];
        assert_eq!(sorted(QueuePolicy::Priority, &keys, t), [1, 2, 0, 3]);
    }

    #[test]
    fn aging_lets_an_old_low_priority_request_overtake() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        // Waiting 10 s at priority 0 is worth priority 10: it beats a fresh 9, not a fresh 11.
        let old = key(0, 0, t0, None);
        assert_eq!(effective_priority(&old, now, 1000), 10);
        assert_eq!(
            sorted(QueuePolicy::Priority, &[key(1, 9, now, None), old], now),
            [0, 1]
        );
        assert_eq!(
            sorted(QueuePolicy::Priority, &[key(1, 11, now, None), old], now),
            [1, 0]
        );
    }

    #[test]
    fn slo_is_earliest_deadline_first() {
        let t = Instant::now();
        let d = |ms| Some(t + Duration::from_millis(ms));
        let keys = [
            key(0, 0, t, None),
            key(1, 0, t, d(500)),
            key(2, 0, t, d(100)),
            key(3, 0, t, None),
            key(4, 0, t, d(100)),
        ];
        assert_eq!(sorted(QueuePolicy::Slo, &keys, t), [2, 4, 1, 0, 3]);
    }
}
