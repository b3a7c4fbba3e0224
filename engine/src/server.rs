//! Running the engine: listen first (so `/health` answers 503 while loading), load the model,
//! then serve until SIGTERM / Ctrl-C.

use anyhow::Context;
use std::net::SocketAddr;
use tokio::net::TcpListener;

use crate::args::EngineArgs;
use crate::state::EngineState;
use crate::{api, loader};

/// Bind the listener of `args` (port 0 picks a free port).
pub async fn bind(args: &EngineArgs) -> anyhow::Result<TcpListener> {
    let addr = format!("{}:{}", args.host, args.port);
    TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serve on `listener`: load the model in the background, answer until `shutdown` resolves.
pub async fn run(
    args: EngineArgs,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = EngineState::new(args.model_name(), args.max_seqs)?;
    let app = api::router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    let started = std::time::Instant::now();
    let model = loader::load(&args).await?;
    tracing::info!(
        model = %model.name,
        context = model.max_seq_len,
        max_seqs = args.max_seqs,
        seconds = started.elapsed().as_secs_f64(),
        "model loaded, ready"
    );
    state.set_ready(model);
    server.await.context("server task")?.context("serving")?;
    Ok(())
}

/// Wait for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The address a listener is bound to, for the startup line.
pub fn local_addr(l: &TcpListener) -> SocketAddr {
    l.local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}
