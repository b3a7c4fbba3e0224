//! The accept loop of a simulated worker.
//!
//! It is our own rather than `axum::serve` because every connection task lives in a `JoinSet`
//! owned by the loop: aborting the loop task (a simulated crash) drops the listener *and* every
//! open connection at once, mid-stream included. A graceful stop instead closes the listener,
//! lets in-flight requests finish, and then drops what is left (hung requests).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};

use crate::control::SimControl;
use crate::router::router;

/// Longest a graceful stop waits for in-flight requests.
const GRACE: Duration = Duration::from_secs(10);

/// Serves `listener` until `stop` turns true (graceful) or `/sim/die` fires (crash).
pub(crate) async fn serve(
    listener: TcpListener,
    control: Arc<SimControl>,
    mut stop: watch::Receiver<bool>,
) {
    let app = router(Arc::clone(&control));
    let mut conns = JoinSet::new();
    let died = control.die.notified();
    tokio::pin!(died);
    died.as_mut().enable();
    loop {
        tokio::select! {
            // Returning drops `conns`, which aborts every connection: a crash.
            _ = &mut died => return,
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => spawn_connection(&mut conns, stream, app.clone(), stop.clone()),
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    drain(conns, &control).await;
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn spawn_connection(
    conns: &mut JoinSet<()>,
    stream: TcpStream,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    conns.spawn(async move {
        let service = TowerToHyperService::new(app);
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    });
}

/// Waits for in-flight connections after a graceful stop, up to [`GRACE`]; stops early once no
/// simulated request is running or queued (what is left then is idle or hung forever).
async fn drain(mut conns: JoinSet<()>, control: &SimControl) {
    let deadline = Instant::now() + GRACE;
    while !conns.is_empty() && Instant::now() < deadline {
        tokio::select! {
            _ = conns.join_next() => {}
            _ = sleep(Duration::from_millis(10)) => {
                if control.running() == 0 && control.waiting() == 0 {
                    break;
                }
            }
        }
    }
}
