//! Starting a simulated worker ([`spawn`], [`spawn_on`]) and driving its life from a test
//! ([`SimHandle`]: kill like a crash, restart on the same port, graceful shutdown).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::sleep;

use crate::config::SimConfig;
use crate::control::SimControl;
use crate::serve::serve;

/// Starts a simulated worker on `127.0.0.1:0` (a free port); it is listening on return.
pub async fn spawn(cfg: SimConfig) -> anyhow::Result<SimHandle> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding 127.0.0.1:0")?;
    spawn_on(listener, cfg).await
}

/// Starts a simulated worker on an already bound listener.
pub async fn spawn_on(listener: TcpListener, cfg: SimConfig) -> anyhow::Result<SimHandle> {
    let addr = listener
        .local_addr()
        .context("reading the listener address")?;
    let control = Arc::new(SimControl::new(&cfg));
    let server = Server::start(listener, Arc::clone(&control));
    Ok(SimHandle {
        addr,
        control,
        server: Some(server),
    })
}

/// One run of the accept loop.
struct Server {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Server {
    fn start(listener: TcpListener, control: Arc<SimControl>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, control, stopped));
        Self { task, stop }
    }
}

/// A running simulated worker. Dropping the handle kills the worker (like [`SimHandle::kill`]).
#[must_use = "dropping the SimHandle stops the simulated worker"]
pub struct SimHandle {
    addr: SocketAddr,
    control: Arc<SimControl>,
    server: Option<Server>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .field("running", &self.is_running())
            .finish()
    }
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (an unspecified bind address becomes loopback).
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    /// The shared live state: knobs and counters.
    pub fn control(&self) -> &SimControl {
        &self.control
    }

    /// The shared live state as an `Arc`, to hand to other tasks.
    pub fn control_arc(&self) -> Arc<SimControl> {
        Arc::clone(&self.control)
    }

    /// Whether the accept loop is alive (false after kill, `/sim/die` or shutdown).
    pub fn is_running(&self) -> bool {
        self.server.as_ref().is_some_and(|s| !s.task.is_finished())
    }

    /// Crashes the worker: the listener closes and every open connection drops, mid-stream
    /// included. The abort completes asynchronously; use [`SimHandle::kill_and_wait`] to be
    /// sure the port is closed before going on.
    pub fn kill(&mut self) {
        if let Some(server) = &self.server {
            server.task.abort();
        }
    }

    /// [`SimHandle::kill`], then waits until the listener is closed.
    pub async fn kill_and_wait(&mut self) {
        if let Some(server) = self.server.take() {
            server.task.abort();
            let _ = server.task.await;
        }
    }

    /// Brings the worker back on the same port with the same [`SimControl`] (killing it first if
    /// it still runs). Retries the bind with a short backoff while the port is briefly busy.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill_and_wait().await;
        let mut delay = Duration::from_millis(10);
        let mut attempt = 0;
        let listener = loop {
            attempt += 1;
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if attempt >= 20 => {
                    return Err(e).with_context(|| format!("rebinding {}", self.addr));
                }
                Err(_) => {
                    sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(250));
                }
            }
        };
        self.server = Some(Server::start(listener, Arc::clone(&self.control)));
        Ok(())
    }

    /// Graceful stop: no new connections; in-flight requests finish (bounded wait), idle
    /// connections close, hung requests are dropped.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop.send(true);
            let _ = server.task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.task.abort();
        }
    }
}
