//! The first decision of `request_filter`: answer a request here (health, metrics, models,
//! a refusal), hand it to the admin service, or admit it as an LLM request and send it on —
//! through Pingora, or on the gateway's own forwarding path.

use bytes::Bytes;
use pingora::proxy::Session;

use super::admit::{self, Admitted};
use super::ctx::{Kind, RequestCtx};
use super::local;
use super::route::Route;
use super::Gateway;
use crate::error::GatewayError;

/// Where `request_filter` sends a request.
pub(super) enum Flow {
    /// Answered here: status, content type, body.
    Reply(u16, &'static str, Vec<u8>),
    /// Pingora proxies it (to a worker, or to the admin service).
    Proxy,
    /// The gateway forwards this body on its own path (`forward`).
    Forward(Bytes),
}

impl Flow {
    pub(super) fn json(status: u16, value: &serde_json::Value) -> Flow {
        Flow::Reply(
            status,
            "application/json",
            serde_json::to_vec(value).unwrap_or_default(),
        )
    }
}

/// What to do with the request: answer it, refuse it, or send it on.
pub(super) async fn decide(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> std::result::Result<Flow, GatewayError> {
    match ctx.route.clone() {
        Route::Llm(endpoint) => Ok(match admit::admit(gw, session, ctx, endpoint).await? {
            Admitted::Proxy => Flow::Proxy,
            Admitted::Forward(body) => Flow::Forward(body),
        }),
        Route::Admin => {
            ctx.kind = Kind::Admin;
            Ok(Flow::Proxy)
        }
        Route::Health => {
            let (status, body) = local::health(&gw.state);
            Ok(Flow::json(status, &body))
        }
        Route::Metrics => {
            let text = gw.state.metrics.render(&gw.state);
            Ok(Flow::Reply(
                200,
                crate::metrics::CONTENT_TYPE,
                text.into_bytes(),
            ))
        }
        Route::Models => {
            admit::authorize(gw, session.req_header())?;
            Ok(Flow::json(200, &local::models(&gw.state)))
        }
        Route::Model(id) => {
            admit::authorize(gw, session.req_header())?;
            match local::model(&gw.state, &id) {
                Some(m) => Ok(Flow::json(200, &m)),
                None => Err(GatewayError::ModelNotFound(id)),
            }
        }
        Route::MethodNotAllowed => {
            let req = session.req_header();
            Err(GatewayError::MethodNotAllowed {
                method: req.method.to_string(),
                path: req.uri.path().to_string(),
            })
        }
        Route::NotFound => {
            let path: String = session.req_header().uri.path().chars().take(200).collect();
            Err(GatewayError::NotFound(path))
        }
    }
}
