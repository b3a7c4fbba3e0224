//! [`swap_in`] on standalone parts: what changes, what is refused, what waits for a restart.

use std::sync::Arc;

use super::*;
use crate::config::{Strategy, WorkerConfig};
use crate::worker::spec::WorkerSpec;

/// The swappable parts, as the gateway builds them from `config`.
struct Live {
    config: ArcSwap<Config>,
    policy: ArcSwap<Box<dyn Policy>>,
    limits: ArcSwap<RateLimits>,
    auth: ArcSwap<Auth>,
    quotas: ArcSwap<crate::quota::Quotas>,
    pool: PoolHandle,
    engines: Engines,
    shared: crate::shared::Shared,
}

impl Live {
    fn new(config: Config) -> Self {
        let specs: Vec<WorkerSpec> = config.worker_specs().unwrap();
        Self {
            policy: ArcSwap::from_pointee(routing::build(&config.routing)),
            limits: ArcSwap::from_pointee(RateLimits::new(&config.rate_limit)),
            auth: ArcSwap::from_pointee(crate::auth::for_config(&config)),
            quotas: ArcSwap::from_pointee(crate::quota::Quotas::new(&config.quotas)),
            pool: PoolHandle::new(specs),
            engines: Engines::default(),
            shared: crate::shared::Shared::new(&config.redis),
            config: ArcSwap::from_pointee(config),
        }
    }

    fn targets(&self) -> Targets<'_> {
        Targets {
            config: &self.config,
            policy: &self.policy,
            limits: &self.limits,
            shared: &self.shared,
            auth: &self.auth,
            quotas: &self.quotas,
            pool: &self.pool,
            engines: &self.engines,
        }
    }
}

fn worker(port: u16) -> WorkerConfig {
    WorkerConfig {
        url: format!("http://127.0.0.1:{port}"),
        ..Default::default()
    }
}

#[test]
fn a_routing_change_swaps_the_policy_and_nothing_else() {
    let live = Live::new(Config::default());
    let limits = live.limits.load_full();
    let mut new = Config::default();
    new.routing.strategy = Strategy::LeastQueue;
    let applied = swap_in(&live.targets(), new).unwrap();
    assert_eq!(applied.changed, ["routing"]);
    assert!(applied.restart.is_empty());
    assert_eq!(live.policy.load().strategy(), Strategy::LeastQueue);
    assert_eq!(live.config.load().routing.strategy, Strategy::LeastQueue);
    assert!(
        Arc::ptr_eq(&limits, &live.limits.load_full()),
        "limits kept"
    );
}

#[test]
fn an_invalid_change_changes_nothing() {
    let live = Live::new(Config::default());
    let before = live.config.load_full();
    let mut new = Config::default();
    new.routing.strategy = Strategy::RoundRobin;
    new.routing.adaptive.epsilon = 2.0;
    let e = swap_in(&live.targets(), new).unwrap_err();
    assert_eq!(e.field, "routing.adaptive.epsilon");
    assert!(Arc::ptr_eq(&before, &live.config.load_full()));
    assert_eq!(live.policy.load().strategy(), Strategy::CacheAware);
}

#[test]
fn server_settings_wait_for_a_restart() {
    let live = Live::new(Config::default());
    let mut new = Config::default();
    new.server.port = 9999;
    new.upstream.idle_timeout_ms = 1_000;
    new.retry.max_attempts = 1;
    let applied = swap_in(&live.targets(), new).unwrap();
    assert_eq!(applied.restart.len(), 2, "{:?}", applied.restart);
    assert_eq!(applied.restart[0], "server");
    assert!(applied.changed.contains(&"upstream") && applied.changed.contains(&"retry"));
    let now = live.config.load();
    assert_eq!(now.server.port, 9000, "the listener keeps its address");
    assert_eq!(
        (now.retry.max_attempts, now.upstream.idle_timeout_ms),
        (1, 1_000)
    );
}

#[test]
fn a_new_worker_list_replaces_the_pool_and_keeps_the_workers_that_stay() {
    let mut config = Config {
        workers: vec![worker(31_001), worker(31_002)],
        ..Default::default()
    };
    let live = Live::new(config.clone());
    let staying = live.pool.load().workers[1].clone();
    config.workers = vec![worker(31_002), worker(31_003)];
    let applied = swap_in(&live.targets(), config).unwrap();
    assert_eq!(applied.changed, ["workers"]);
    let pool = live.pool.load();
    let ids: Vec<&str> = pool.workers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["127.0.0.1:31002", "127.0.0.1:31003"]);
    assert!(
        Arc::ptr_eq(&pool.workers[0], &staying),
        "same worker, same state"
    );
}

#[test]
fn keys_and_rate_limits_are_rebuilt_when_they_change() {
    let live = Live::new(Config::default());
    let mut new = Config::default();
    new.auth.api_keys = vec!["sk-reload-1".into()];
    new.rate_limit.enabled = false;
    let applied = swap_in(&live.targets(), new).unwrap();
    assert_eq!(applied.changed, ["rate_limit", "auth"]);
    assert!(live.auth.load().check_api_key(Some("sk-reload-1")));
    assert!(!live.auth.load().check_api_key(None));
    assert!(!live.limits.load().enabled());
}
