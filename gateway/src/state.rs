//! The state every part of the gateway shares: the live configuration, the worker pool, the
//! routing policy, and a readiness signal. Everything is swapped atomically; readers on the
//! request path only `load()`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::auth::Auth;
use crate::config::Config;
use crate::http_client::{self, HttpClient};
use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::reload::ReloadStatus;
use crate::routing::{self, Policy, Strategy, STRATEGIES};
use crate::worker::pool::PoolHandle;
use crate::worker::spec::WorkerSpec;

pub struct AppState {
    pub config: ArcSwap<Config>,
    pub pool: PoolHandle,
    /// The routing policy built from `config.routing` (rebuilt when it changes).
    pub policy: ArcSwap<Box<dyn Policy>>,
    /// Token buckets built from `config.rate_limit` (rebuilt when it changes).
    pub limits: ArcSwap<RateLimits>,
    /// State shared with other replicas through Redis (`[redis]`), or local.
    pub shared: Arc<crate::shared::Shared>,
    /// API and admin keys built from `config.auth` (and the keys of `config.quotas`).
    pub auth: ArcSwap<Auth>,
    /// Per-key quotas built from `config.quotas` (their counters outlive rebuilds).
    pub quotas: ArcSwap<crate::quota::Quotas>,
    pub started: Instant,
    /// Number of routable workers, published after every health check.
    routable: watch::Sender<usize>,
    /// Client for the gateway's own requests to workers (probes, large-body forwarding).
    pub client: HttpClient,
    /// LLM requests in flight through the gateway.
    active: Arc<AtomicUsize>,
    /// Set when the gateway is shutting down: new LLM requests get 503.
    draining: AtomicBool,
    pub metrics: Metrics,
    /// Routing choices per strategy (index of `Strategy::ALL`), kept across worker removals.
    selections: [AtomicU64; STRATEGIES],
    /// Where the config came from and how the last reload went.
    pub reload: parking_lot::Mutex<ReloadStatus>,
    /// The dashboard's per-second samples and its WebSocket subscribers.
    pub feed: crate::dashboard::Feed,
    /// Conversations kept by the gateway (outlive config reloads).
    pub sessions: Arc<dyn crate::session::SessionStore>,
    /// The gateway-side queue for requests that find every worker at its cap.
    pub scheduler: crate::sched::Scheduler,
    /// `sagellm-engine` processes launched through the control plane.
    pub engines: crate::control::Engines,
    /// OpenTelemetry traces, when `[telemetry]` names a collector (built once, at start).
    pub tracer: Option<crate::otel::Tracer>,
    /// What DNS discovery found and how its lookups went (`[discovery]`).
    pub discovery: crate::discovery::DiscoveryState,
}

/// One LLM request in flight (see [`AppState::begin_request`]).
#[derive(Debug)]
pub struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Build the state from a validated config and its resolved worker list.
    pub fn new(config: Config, specs: Vec<WorkerSpec>) -> Arc<Self> {
        let policy: Box<dyn Policy> = routing::build(&config.routing);
        let u = &config.upstream;
        // `server::build` checked the CA bundle; a test building the state directly gets the
        // system roots when it is unreadable.
        let roots = crate::tls::upstream::roots(u.ca_file.as_deref()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "using the system's CA roots");
            crate::tls::upstream::roots(None).unwrap_or_else(|_| rustls::RootCertStore::empty())
        });
        let client = http_client::build(
            Duration::from_millis(u.connect_timeout_ms),
            Duration::from_millis(u.idle_timeout_ms),
            roots.clone(),
        );
        let metrics = Metrics::new();
        let tracer = crate::otel::Tracer::start(&config.telemetry, roots, metrics.span_counters())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "no traces");
                None
            });
        let shared = Arc::new(crate::shared::Shared::new(&config.redis));
        let sessions: Arc<dyn crate::session::SessionStore> = match shared.client() {
            Some(_) => Arc::new(crate::session::redis_store::RedisStore::new(shared.clone())),
            None => Arc::new(crate::session::MemoryStore::default()),
        };
        Arc::new(Self {
            pool: PoolHandle::new(specs),
            policy: ArcSwap::from_pointee(policy),
            limits: ArcSwap::from_pointee(shared.local_limits(&config.rate_limit)),
            shared,
            auth: ArcSwap::from_pointee(crate::auth::for_config(&config)),
            quotas: ArcSwap::from_pointee(crate::quota::Quotas::new(&config.quotas)),
            config: ArcSwap::from_pointee(config),
            started: Instant::now(),
            routable: watch::channel(0).0,
            client,
            active: Arc::new(AtomicUsize::new(0)),
            draining: AtomicBool::new(false),
            metrics,
            tracer,
            selections: Default::default(),
            reload: Default::default(),
            feed: Default::default(),
            sessions,
            scheduler: Default::default(),
            engines: Default::default(),
            discovery: Default::default(),
        })
    }

    /// What the gateway's queue reads: the live pool and config.
    pub fn fleet(&self) -> crate::sched::Fleet<'_> {
        crate::sched::Fleet {
            pool: &self.pool,
            config: &self.config,
        }
    }

    /// Count one LLM request in flight, unless `max` (0 = unlimited) are already.
    pub fn begin_request(&self, max: usize) -> Option<ActiveGuard> {
        let n = self.active.fetch_add(1, Relaxed);
        let guard = ActiveGuard(self.active.clone());
        (max == 0 || n < max).then_some(guard)
    }

    pub fn active_requests(&self) -> usize {
        self.active.load(Relaxed)
    }

    /// Start shutting down: new LLM requests are refused from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Shut down gracefully: refuse new requests, then wait until the in-flight ones finished
    /// or `grace` elapsed. Returns whether everything finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.start_draining();
        let deadline = tokio::time::Instant::now() + grace;
        while self.active_requests() > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = self.active_requests(),
                    "grace period over, stopping anyway"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Recount routable workers and publish the number.
    pub fn publish_routable(&self) {
        let n = self.pool.load().routable_count();
        self.routable
            .send_if_modified(|cur| std::mem::replace(cur, n) != n);
    }

    /// Wait until at least `n` workers are routable (readiness for tests and scripts).
    pub async fn wait_routable(&self, n: usize) {
        self.wait_routable_where(|c| c >= n).await
    }

    /// Wait until the number of routable workers satisfies `pred`.
    pub async fn wait_routable_where(&self, pred: impl Fn(usize) -> bool) {
        let mut rx = self.routable.subscribe();
        let _ = rx.wait_for(|&c| pred(c)).await;
    }

    pub fn count_selection(&self, strategy: Strategy) {
        self.selections[strategy.index()].fetch_add(1, Relaxed);
    }

    /// Routing choices per strategy since start, in `Strategy::ALL` order.
    pub fn selections(&self) -> [u64; STRATEGIES] {
        std::array::from_fn(|i| self.selections[i].load(Relaxed))
    }

    /// Replace the routing policy (strategy switch).
    pub fn set_policy(&self, routing: &crate::config::RoutingConfig) {
        self.policy.store(Arc::new(routing::build(routing)));
    }
}
