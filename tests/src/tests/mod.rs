//! Tests that run the simulator on port 0 and talk to it over real sockets.

mod api;
mod cache;
mod client;
mod faults;
mod streaming;

use std::time::Duration;

use crate::SimConfig;

/// A fast configuration for tests.
fn fast() -> SimConfig {
    SimConfig {
        ttft: Duration::from_millis(1),
        tpot: Duration::from_millis(1),
        ..SimConfig::default()
    }
}

/// Polls `cond` until it holds (or panics after 3 s): readiness of asynchronous effects.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
