//! `GET /ws`: the dashboard's WebSocket. Sends a `hello` (history included) and the present
//! tick at once, then every tick of the [`Feed`](super::feed::Feed) until the client leaves
//! or the gateway stops. Read-only: what the client sends is ignored (pings are answered).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use super::feed::Subscription;
use crate::edge::reply;
use crate::error::GatewayError;
use crate::state::AppState;

/// A client that does not take a message within this time is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn upgrade(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    let Some(sub) = state.feed.join() else {
        return reply::error(&GatewayError::RateLimited {
            message: "too many open dashboards; close one and reload".into(),
            retry_after: Duration::from_secs(5),
        });
    };
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| serve(socket, state, sub))
        .into_response()
}

async fn send(socket: &mut WebSocket, text: Utf8Bytes) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await,
        Ok(Ok(()))
    )
}

fn json<T: serde::Serialize>(value: &T) -> Option<Utf8Bytes> {
    serde_json::to_string(value).ok().map(Utf8Bytes::from)
}

/// Resolves once the gateway stops (the guard of `wait_for` is not `Send`: drop it here).
async fn stopping(closed: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closed.wait_for(|closed| *closed).await;
}

async fn serve(mut socket: WebSocket, state: Arc<AppState>, mut sub: Subscription) {
    let hello = json(&state.feed.hello(&state));
    let now = json(&state.feed.tick_now(&state));
    for msg in [hello, now].into_iter().flatten() {
        if !send(&mut socket, msg).await {
            return;
        }
    }
    loop {
        tokio::select! {
            tick = sub.ticks.recv() => match tick {
                Ok(text) => if !send(&mut socket, text).await { return },
                // A slow client skips the ticks it missed; the next one is complete.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
            _ = stopping(&mut sub.closed) => break,
        }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
}
