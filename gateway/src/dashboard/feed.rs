//! The dashboard's live feed: once a second the sampler turns the gateway's cumulative
//! counters into one [`Point`] of traffic, keeps the last [`HISTORY`] of them, and pushes a
//! `tick` (status, routing shares, the new point) to every open WebSocket.
//!
//! The tick is serialised once per second however many dashboards watch; nothing is
//! serialised when none do. Message shapes are documented in `docs/dashboard.md`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::quantile::quantile;
use crate::metrics::TrafficTotals;
use crate::routing::Strategy;
use crate::state::AppState;
use crate::views::{fleet, RoutingStats, StatusInfo};

/// Points kept for the charts: five minutes at one per second.
pub const HISTORY: usize = 300;
/// How often the sampler runs.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Open dashboard sockets at most; more are refused with 503.
pub const MAX_CLIENTS: usize = 64;

/// One interval of traffic (the charts' unit).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Unix time of the sample, milliseconds.
    pub t: u64,
    /// LLM requests answered per second.
    pub qps: f64,
    /// Share of them answered with a 4xx/5xx, 0..1.
    pub error_rate: f64,
    /// 5xx answers per second.
    pub errors_per_s: f64,
    /// Rate-limit rejections (429) per second.
    pub rejected_per_s: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    /// Completion tokens per second.
    pub tokens_per_s: f64,
    /// LLM requests in flight at the sample.
    pub active: usize,
    /// `running + waiting` per worker id.
    pub load: BTreeMap<String, f64>,
}

impl Point {
    /// The interval between two snapshots of the totals, `secs` long.
    pub fn between(prev: &TrafficTotals, cur: &TrafficTotals, secs: f64) -> Self {
        let secs = secs.max(1e-3);
        let d = |a: u64, b: u64| b.saturating_sub(a);
        let requests = d(prev.requests, cur.requests);
        let failed =
            d(prev.client_errors, cur.client_errors) + d(prev.server_errors, cur.server_errors);
        let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
        Point {
            qps: requests as f64 / secs,
            error_rate: if requests == 0 {
                0.0
            } else {
                failed as f64 / requests as f64
            },
            errors_per_s: d(prev.server_errors, cur.server_errors) as f64 / secs,
            rejected_per_s: d(prev.rejected, cur.rejected) as f64 / secs,
            latency_p50_ms: ms(quantile(&prev.latency, &cur.latency, 0.5)),
            latency_p99_ms: ms(quantile(&prev.latency, &cur.latency, 0.99)),
            ttft_p50_ms: ms(quantile(&prev.ttft, &cur.ttft, 0.5)),
            tokens_per_s: d(prev.completion_tokens, cur.completion_tokens) as f64 / secs,
            ..Default::default()
        }
    }
}

/// Sent once when a dashboard connects.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    pub interval_ms: u64,
    pub strategies: Vec<String>,
    pub admin_key_required: bool,
    pub history: Vec<Point>,
}

/// Sent every [`INTERVAL`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tick {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: StatusInfo,
    pub routing: RoutingStats,
    pub point: Point,
}

struct Sampled {
    history: VecDeque<Point>,
    last: Option<(Instant, TrafficTotals)>,
}

pub struct Feed {
    sampled: Mutex<Sampled>,
    ticks: broadcast::Sender<Utf8Bytes>,
    closed: watch::Sender<bool>,
    clients: Arc<std::sync::atomic::AtomicUsize>,
}

/// One open dashboard socket (see [`Feed::join`]).
pub struct Subscription {
    pub ticks: broadcast::Receiver<Utf8Bytes>,
    pub closed: watch::Receiver<bool>,
    _slot: ClientSlot,
}

struct ClientSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            sampled: Mutex::new(Sampled {
                history: VecDeque::with_capacity(HISTORY),
                last: None,
            }),
            ticks: broadcast::channel(8).0,
            closed: watch::channel(false).0,
            clients: Default::default(),
        }
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Feed {
    /// Take one sample now: append its point to the history and push a tick to the open
    /// dashboards. The first call only sets the baseline.
    pub fn sample(&self, state: &AppState) {
        let now = Instant::now();
        let totals = state.metrics.requests.totals();
        let mut s = self.sampled.lock();
        let Some((then, prev)) = s.last.replace((now, totals.clone())) else {
            return;
        };
        let mut point = Point::between(&prev, &totals, (now - then).as_secs_f64());
        point.t = unix_ms();
        point.active = state.active_requests();
        point.load = state
            .pool
            .load()
            .workers
            .iter()
            .map(|w| (w.id.clone(), w.load.view().queue()))
            .collect();
        if s.history.len() == HISTORY {
            s.history.pop_front();
        }
        s.history.push_back(point.clone());
        drop(s);
        if self.ticks.receiver_count() == 0 {
            return;
        }
        match serde_json::to_string(&Self::tick(state, point)) {
            Ok(json) => {
                let _ = self.ticks.send(Utf8Bytes::from(json));
            }
            Err(e) => tracing::warn!(error = %e, "serialising the dashboard tick"),
        }
    }

    fn tick(state: &AppState, point: Point) -> Tick {
        Tick {
            kind: "tick".into(),
            status: fleet::status(state),
            routing: fleet::routing(state),
            point,
        }
    }

    /// A tick of the present moment with the latest point (for a dashboard that just
    /// connected, so it need not wait for the next sample).
    pub fn tick_now(&self, state: &AppState) -> Tick {
        let point = self
            .sampled
            .lock()
            .history
            .back()
            .cloned()
            .unwrap_or_default();
        Self::tick(state, point)
    }

    /// The points of the last [`HISTORY`] seconds, oldest first.
    pub fn history(&self) -> Vec<Point> {
        self.sampled.lock().history.iter().cloned().collect()
    }

    pub fn hello(&self, state: &AppState) -> Hello {
        Hello {
            kind: "hello".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            interval_ms: INTERVAL.as_millis() as u64,
            strategies: Strategy::ALL.iter().map(|s| s.as_str().into()).collect(),
            admin_key_required: state.auth.load().admin_required(),
            history: self.history(),
        }
    }

    /// A new dashboard socket, or `None` when [`MAX_CLIENTS`] are open already.
    pub fn join(&self) -> Option<Subscription> {
        use std::sync::atomic::Ordering::Relaxed;
        let slot = ClientSlot(self.clients.clone());
        if self.clients.fetch_add(1, Relaxed) >= MAX_CLIENTS {
            return None; // the slot's drop gives the count back
        }
        Some(Subscription {
            ticks: self.ticks.subscribe(),
            closed: self.closed.subscribe(),
            _slot: slot,
        })
    }

    /// Open dashboard sockets now.
    pub fn clients(&self) -> usize {
        self.clients.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The gateway is stopping: every socket is closed.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Buckets;

    fn latency(cum: &[u64]) -> Buckets {
        Buckets {
            bounds: vec![0.001, 0.002, 0.004],
            cumulative: cum.to_vec(),
            count: *cum.last().unwrap(),
        }
    }

    #[test]
    fn a_point_is_the_change_over_its_interval() {
        let prev = TrafficTotals {
            requests: 100,
            client_errors: 5,
            server_errors: 5,
            rejected: 3,
            completion_tokens: 1000,
            latency: latency(&[10, 50, 100]),
            ttft: Buckets::default(),
        };
        let cur = TrafficTotals {
            requests: 120,
            client_errors: 7,
            server_errors: 8,
            rejected: 4,
            completion_tokens: 1400,
            latency: latency(&[10, 70, 120]),
            ttft: Buckets::default(),
        };
        let p = Point::between(&prev, &cur, 2.0);
        assert_eq!(p.qps, 10.0);
        assert_eq!(p.error_rate, 5.0 / 20.0);
        assert_eq!(p.errors_per_s, 1.5);
        assert_eq!(p.rejected_per_s, 0.5);
        assert_eq!(p.tokens_per_s, 200.0);
        // All 20 new observations are in (1 ms, 2 ms].
        let p50 = p.latency_p50_ms.unwrap();
        assert!((p50 - 1.5).abs() < 1e-9, "{p50}");
        assert_eq!(p.ttft_p50_ms, None, "no streams in the interval");
    }

    #[test]
    fn an_idle_interval_has_no_percentiles_and_no_errors() {
        let t = TrafficTotals {
            requests: 5,
            latency: latency(&[1, 2, 5]),
            ..Default::default()
        };
        let p = Point::between(&t, &t, 1.0);
        assert_eq!(p.qps, 0.0);
        assert_eq!(p.error_rate, 0.0);
        assert_eq!(p.latency_p50_ms, None);
        assert_eq!(p.latency_p99_ms, None);
    }

    #[test]
    fn clients_are_capped_and_released() {
        let feed = Feed::default();
        let subs: Vec<_> = (0..MAX_CLIENTS).map(|_| feed.join().unwrap()).collect();
        assert_eq!(feed.clients(), MAX_CLIENTS);
        assert!(feed.join().is_none());
        assert_eq!(
            feed.clients(),
            MAX_CLIENTS,
            "a refused join gives its slot back"
        );
        drop(subs);
        assert_eq!(feed.clients(), 0);
        assert!(feed.join().is_some());
    }
}
