//! The web dashboard at `GET /`: embedded static files ([`assets`]), a once-a-second sample
//! of the gateway's traffic with five minutes of history ([`feed`]), and the WebSocket that
//! pushes it ([`ws`]). Served by the admin service on the public port; every action the page
//! offers goes through the management API, like the CLI's. The protocol is documented in
//! `docs/dashboard.md`.

pub mod assets;
pub mod feed;
pub mod quantile;
pub mod ws;

use std::sync::Arc;

use async_trait::async_trait;
use axum::routing::get;
use axum::Router;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

pub use feed::Feed;

use crate::state::AppState;

/// The dashboard's routes (merged into the admin router).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(assets::index))
        .route("/dashboard", get(assets::index))
        .route("/dashboard/", get(assets::index))
        .route("/dashboard/{name}", get(assets::file))
        .route("/favicon.ico", get(assets::favicon))
        .route("/ws", get(ws::upgrade))
}

/// Samples the feed every [`feed::INTERVAL`]; on shutdown closes the open dashboards.
pub struct FeedSampler {
    pub state: Arc<AppState>,
}

#[async_trait]
impl BackgroundService for FeedSampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut every = tokio::time::interval(feed::INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.state.feed.sample(&self.state),
                _ = shutdown.changed() => break,
            }
        }
        self.state.feed.close();
    }
}
