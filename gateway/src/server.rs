//! Assembling and running the Pingora server: the proxy service on the public port and the
//! prober in the background. `main` calls [`run_forever`]; tests call [`spawn`], which runs the
//! same server on a thread and stops it on demand.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use tokio::sync::Notify;

use crate::config::{Config, ConfigError};
use crate::probe::prober::Prober;
use crate::proxy::Gateway;
use crate::state::AppState;

/// Build the state and the Pingora server for a validated config.
pub fn build(config: Config) -> Result<(Server, Arc<AppState>), ConfigError> {
    config.validate()?;
    let specs = config.worker_specs()?;
    let listen = format!("{}:{}", config.server.host, config.server.port);
    let threads = match config.server.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let state = AppState::new(config, specs);

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, Gateway::new(state.clone()));
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.add_service(background_service(
        "prober",
        Prober {
            state: state.clone(),
        },
    ));
    Ok((server, state))
}

/// Run until SIGTERM (graceful: in-flight requests finish within the grace period) or
/// SIGINT (fast). Never returns.
pub fn run_forever(server: Server) -> ! {
    server.run_forever()
}

/// A gateway running on a background thread (tests, embedding).
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct NotifySignal(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for NotifySignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::GracefulTerminate
    }
}

/// A free loopback port (the listener is closed again; Pingora binds by address).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Start a gateway on a thread. Port 0 picks a free loopback port. Returns once the listener
/// accepts connections.
pub fn spawn(mut config: Config) -> anyhow::Result<RunningGateway> {
    if config.server.port == 0 {
        config.server.port = free_port()?;
    }
    let addr: SocketAddr = format!("{}:{}", config.server.host, config.server.port).parse()?;
    let (server, state) = build(config)?;
    let stop = Arc::new(Notify::new());
    let signal = NotifySignal(stop.clone());
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
        state,
        stop,
        thread: Some(thread),
    })
}

impl RunningGateway {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
