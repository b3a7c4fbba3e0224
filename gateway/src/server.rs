//! Assembling and running the Pingora server: the proxy service on the public port and, in
//! the background, the admin service, the prober, the config watcher and the dashboard feed.
//! `main` calls [`run_forever`]; tests call [`spawn`], which runs the same server on a thread
//! and stops it on demand.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use tokio::sync::Notify;

use crate::admin::AdminService;
use crate::config::{Config, ConfigError};
use crate::dashboard::FeedSampler;
use crate::housekeeping::Housekeeping;
use crate::probe::prober::Prober;
use crate::proxy::Gateway;
use crate::reload::watch::ConfigWatcher;
use crate::reload::ConfigSource;
use crate::state::AppState;
use crate::tls::{self, CertStore, Rotation};

/// Build the state and the Pingora server for a validated config. With a `source`, the config
/// file is watched and edits are applied live.
pub fn build(
    config: Config,
    source: Option<ConfigSource>,
) -> Result<(Server, Arc<AppState>), ConfigError> {
    config.validate()?;
    for warning in crate::auth::exposure_warnings(&config.auth, &config.server) {
        tracing::warn!("{warning}");
    }
    let specs = config.worker_specs()?;
    let listen = format!("{}:{}", config.server.host, config.server.port);
    let tls = config.server.tls.clone();
    let certs = match &tls {
        Some(t) => Some(Arc::new(CertStore::open(
            Path::new(&t.cert_file),
            Path::new(&t.key_file),
        )?)),
        None => None,
    };
    // Checked here: Pingora's connector would panic on a bad CA bundle.
    tls::upstream::roots(config.upstream.ca_file.as_deref())?;
    let threads = match config.server.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let conf = ServerConf {
        threads,
        // The grace period is spent in `ShutdownSignals` (it ends as soon as in-flight
        // requests finished); Pingora's own fixed sleep is not needed after that.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(5),
        ca_file: config.upstream.ca_file.clone(),
        ..ServerConf::default()
    };
    let state = AppState::new(config, specs);
    {
        let mut reload = state.reload.lock();
        reload.path = source.as_ref().map(|s| s.path.clone());
        reload.source = source;
    }
    let (admin, admin_addr) = AdminService::bind(state.clone()).map_err(|e| {
        ConfigError::new(
            "admin",
            format!("cannot bind the internal admin listener: {e}"),
        )
    })?;

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let gateway = Gateway::new(state.clone(), admin_addr);
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    match (&tls, certs) {
        (Some(t), Some(store)) => {
            proxy.add_tls_with_settings(&listen, None, tls::listener_settings(t, store.clone())?);
            server.add_service(background_service(
                "tls-rotation",
                Rotation {
                    store,
                    interval: std::time::Duration::from_secs(t.reload_interval_seconds),
                    state: state.clone(),
                },
            ));
        }
        _ => proxy.add_tcp(&listen),
    }
    server.add_service(proxy);
    server.add_service(background_service("admin", admin));
    server.add_service(background_service(
        "prober",
        Prober {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "config-watcher",
        ConfigWatcher {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "dashboard-feed",
        FeedSampler {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "shared-heartbeat",
        crate::shared::heartbeat::Heartbeat {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "discovery",
        crate::discovery::Discovery {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "housekeeping",
        Housekeeping {
            state: state.clone(),
        },
    ));
    Ok((server, state))
}

/// How the gateway is asked to stop: Unix signals, or a [`Notify`] (tests, embedding).
/// SIGTERM (or the notify) drains: new LLM requests get 503, in-flight ones may finish
/// within `server.grace_period_seconds`, then the server stops and the process exits 0.
/// SIGINT stops at once; SIGQUIT hands the listeners to a new process (Pingora upgrade).
pub struct ShutdownSignals {
    state: Arc<AppState>,
    notify: Option<Arc<Notify>>,
}

async fn unix_signal(kind: tokio::signal::unix::SignalKind) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut s) => drop(s.recv().await),
        Err(_) => std::future::pending::<()>().await,
    }
}

#[async_trait]
impl ShutdownSignalWatch for ShutdownSignals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::SignalKind;
        let graceful = async {
            match &self.notify {
                Some(n) => n.notified().await,
                None => unix_signal(SignalKind::terminate()).await,
            }
        };
        let others = async {
            if self.notify.is_some() {
                return std::future::pending::<ShutdownSignal>().await;
            }
            tokio::select! {
                _ = unix_signal(SignalKind::interrupt()) => ShutdownSignal::FastShutdown,
                _ = unix_signal(SignalKind::quit()) => ShutdownSignal::GracefulUpgrade,
            }
        };
        tokio::select! {
            _ = graceful => {
                let grace = std::time::Duration::from_secs(self.state.config.load().server.grace_period_seconds);
                tracing::info!(in_flight = self.state.active_requests(), grace_seconds = grace.as_secs(), "draining before shutdown");
                self.state.drain(grace).await;
                // Launched engines stop here, while the runtimes still run (Pingora's own
                // grace period is 0, so a background service would get no time for it).
                self.state.engines.shutdown(&self.state).await;
                if let Some(tracer) = &self.state.tracer {
                    tracer.flush(std::time::Duration::from_secs(2)).await;
                }
                ShutdownSignal::GracefulTerminate
            }
            signal = others => {
                self.state.engines.terminate_all_now();
                signal
            }
        }
    }
}

/// Run until SIGTERM (graceful, see [`ShutdownSignals`]) or SIGINT (fast), then exit 0.
pub fn run_forever(server: Server, state: Arc<AppState>) -> ! {
    server.run(RunArgs {
        shutdown_signal: Box::new(ShutdownSignals {
            state,
            notify: None,
        }),
    });
    std::process::exit(0)
}

/// A gateway running on a background thread (tests, embedding).
pub struct RunningGateway {
    pub addr: SocketAddr,
    /// Whether the listener speaks HTTPS (`[server.tls]`).
    pub tls: bool,
    pub state: Arc<AppState>,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A free loopback port (the listener is closed again; Pingora binds by address).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Start a gateway on a thread. Port 0 picks a free loopback port. Returns once the listener
/// accepts connections.
pub fn spawn(config: Config) -> anyhow::Result<RunningGateway> {
    spawn_with_source(config, None)
}

/// [`spawn`], watching the config file of `source` for live changes.
pub fn spawn_with_source(
    mut config: Config,
    source: Option<ConfigSource>,
) -> anyhow::Result<RunningGateway> {
    if config.server.port == 0 {
        config.server.port = free_port()?;
    }
    let addr: SocketAddr = format!("{}:{}", config.server.host, config.server.port).parse()?;
    let tls = config.server.tls.is_some();
    let (server, state) = build(config, source)?;
    let stop = Arc::new(Notify::new());
    let signal = ShutdownSignals {
        state: state.clone(),
        notify: Some(stop.clone()),
    };
    let thread = std::thread::Builder::new()
        .name("sagellm-gateway".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            });
        })?;
    // Readiness: the listener accepts (bounded wait; Pingora binds within milliseconds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the gateway did not start listening on {addr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(RunningGateway {
        addr,
        tls,
        state,
        stop,
        thread: Some(thread),
    })
}

impl RunningGateway {
    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Graceful stop; waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}
