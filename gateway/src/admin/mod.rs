//! The internal admin service: the management API and the web dashboard, an axum app on
//! a loopback port inside a Pingora background service. The public listener forwards admin
//! paths to it, so everything is served on one port.
//!
//! Writes need `auth.admin_key` when it is set (`Authorization: Bearer <key>` or
//! `x-admin-key`); without one they are refused with 403 on a listener other hosts can reach
//! (see [`crate::auth::AdminCheck`]). Reads are open; secrets in them are masked. A write
//! changes the replica that received it; its answer names that replica (`x-sagellm-replica`). The session endpoints are served here too, but checked
//! against the API keys like the LLM endpoints (see [`crate::session::api`]).

mod breakers;
mod config;
mod workers;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Json;
use axum::Router;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::edge::reply;
use crate::state::AppState;
use crate::views::{fleet, RoutingStats, StatusInfo};

async fn require_admin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write {
        let verdict = state
            .auth
            .load()
            .check_admin_key(crate::auth::admin_key(req.headers()));
        if let Some(refusal) = verdict.refusal() {
            return reply::error(&refusal);
        }
    }
    let mut resp = next.run(req).await;
    if write {
        // A write changes this replica only (the config file is the fleet's): say which.
        if let Ok(id) = axum::http::HeaderValue::from_str(&state.shared.replica_id) {
            resp.headers_mut().insert(REPLICA_HEADER, id);
        }
    }
    resp
}

/// Names the replica that applied a management write.
pub const REPLICA_HEADER: &str = "x-sagellm-replica";

/// `GET /api/status`.
async fn status(State(state): State<Arc<AppState>>) -> Json<StatusInfo> {
    Json(fleet::status(&state))
}

/// `GET /api/usage`: per-key usage and quotas (fleet-wide with Redis).
async fn usage(State(state): State<Arc<AppState>>) -> Json<crate::quota::UsageView> {
    Json(crate::quota::usage(&state).await)
}

/// `GET /api/routing/stats`.
async fn routing_stats(State(state): State<Arc<AppState>>) -> Json<RoutingStats> {
    Json(fleet::routing(&state))
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/workers", get(workers::list).post(workers::create))
        .route("/api/workers/{id}", delete(workers::delete))
        .route("/api/workers/{id}/drain", post(workers::drain))
        .route("/api/workers/{id}/undrain", post(workers::undrain))
        .route("/api/routing/stats", get(routing_stats))
        .route("/api/usage", get(usage))
        .route("/api/circuit-breaker/stats", get(breakers::stats))
        .route("/api/circuit-breaker/{id}/reset", post(breakers::reset))
        .route("/api/config", get(config::get).put(config::put))
        .merge(crate::dashboard::routes())
        .merge(crate::control::api::routes())
        .fallback(reply::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_admin))
        // Sessions take the caller's API key, not the admin key.
        .merge(crate::session::api::routes())
        .with_state(state)
}

/// Runs [`router`] on a loopback listener bound when the server is built.
pub struct AdminService {
    listener: Mutex<Option<TcpListener>>,
    state: Arc<AppState>,
}

impl AdminService {
    /// Bind the loopback listener now (the proxy needs its address before it starts).
    pub fn bind(state: Arc<AppState>) -> std::io::Result<(Self, SocketAddr)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok((
            Self {
                listener: Mutex::new(Some(listener)),
                state,
            },
            addr,
        ))
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self.listener.lock().take() else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin service cannot listen");
                return;
            }
        };
        let app = router(self.state.clone());
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "admin service stopped");
        }
    }
}
