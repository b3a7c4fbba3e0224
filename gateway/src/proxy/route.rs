//! Which endpoint a request is for, from its method and path alone.

use pingora::http::Method;

use crate::metrics::RouteLabel;

/// An LLM endpoint that is forwarded to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    /// Anthropic's Messages API, translated to chat completions for the worker.
    Messages,
    /// Any other `/v1/*` path: forwarded to a worker serving the body's `model` (if any).
    OtherV1,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Route {
    /// `GET /health`: answered by the gateway.
    Health,
    /// `GET /metrics`: the gateway's Prometheus series.
    Metrics,
    /// `GET /v1/models`: the fleet's models, aggregated.
    Models,
    /// `GET /v1/models/{id}`: one model of the fleet.
    Model(String),
    Llm(Endpoint),
    /// Management API, dashboard and control plane: served by the internal admin service.
    Admin,
    MethodNotAllowed,
    #[default]
    NotFound,
}

impl Route {
    /// The bounded `route` label of the metrics.
    pub fn label(&self) -> RouteLabel {
        match self {
            Route::Health => RouteLabel::Health,
            Route::Metrics => RouteLabel::Metrics,
            Route::Models | Route::Model(_) => RouteLabel::Models,
            Route::Llm(Endpoint::Chat) => RouteLabel::Chat,
            Route::Llm(Endpoint::Completions) => RouteLabel::Completions,
            Route::Llm(Endpoint::Embeddings) => RouteLabel::Embeddings,
            Route::Llm(Endpoint::Messages) => RouteLabel::Messages,
            Route::Llm(Endpoint::OtherV1) => RouteLabel::OtherV1,
            Route::Admin => RouteLabel::Admin,
            Route::MethodNotAllowed | Route::NotFound => RouteLabel::Other,
        }
    }
}

/// Paths served by the admin service: the management API, the control plane
/// (`/v1/management/*`), the dashboard (page, assets, WebSocket) and the session endpoints.
pub fn is_admin_path(path: &str) -> bool {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    matches!(path, "/" | "/ws" | "/favicon.ico")
        || under("/api")
        || under("/dashboard")
        || under("/sessions")
        || under("/v1/management")
}

pub fn classify(method: &Method, path: &str) -> Route {
    // Dot segments are never forwarded: a worker behind a path-based router could resolve them.
    if path.split('/').any(|seg| seg == ".." || seg == ".") || !path.starts_with('/') {
        return Route::NotFound;
    }
    if is_admin_path(path) {
        return Route::Admin;
    }
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    match path {
        "/health" => only(method, Method::GET, Route::Health),
        "/metrics" => only(method, Method::GET, Route::Metrics),
        "/v1/models" => only(method, Method::GET, Route::Models),
        "/v1/chat/completions" => only(method, Method::POST, Route::Llm(Endpoint::Chat)),
        "/v1/completions" => only(method, Method::POST, Route::Llm(Endpoint::Completions)),
        "/v1/embeddings" => only(method, Method::POST, Route::Llm(Endpoint::Embeddings)),
        "/v1/messages" => only(method, Method::POST, Route::Llm(Endpoint::Messages)),
        p => match p.strip_prefix("/v1/models/") {
            Some(id) if !id.is_empty() => only(method, Method::GET, Route::Model(id.to_string())),
            _ if p.starts_with("/v1/") => Route::Llm(Endpoint::OtherV1),
            _ => Route::NotFound,
        },
    }
}

fn only(method: &Method, allowed: Method, route: Route) -> Route {
    if *method == allowed || (allowed == Method::GET && *method == Method::HEAD) {
        route
    } else {
        Route::MethodNotAllowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(
            classify(&Method::POST, "/v1/chat/completions"),
            Route::Llm(Endpoint::Chat)
        );
        assert_eq!(
            classify(&Method::POST, "/v1/chat/completions/"),
            Route::Llm(Endpoint::Chat)
        );
        assert_eq!(
            classify(&Method::GET, "/v1/chat/completions"),
            Route::MethodNotAllowed
        );
        assert_eq!(classify(&Method::GET, "/v1/models"), Route::Models);
        assert_eq!(
            classify(&Method::GET, "/v1/models/llama"),
            Route::Model("llama".into())
        );
        assert_eq!(
            classify(&Method::POST, "/v1/rerank"),
            Route::Llm(Endpoint::OtherV1)
        );
        assert_eq!(
            classify(&Method::POST, "/v1/messages"),
            Route::Llm(Endpoint::Messages)
        );
        assert_eq!(classify(&Method::GET, "/health"), Route::Health);
        assert_eq!(classify(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(classify(&Method::GET, "/nope"), Route::NotFound);
        assert_eq!(classify(&Method::GET, "/v1"), Route::NotFound);
        assert_eq!(classify(&Method::GET, "/"), Route::Admin);
        assert_eq!(classify(&Method::GET, "/ws"), Route::Admin);
        assert_eq!(classify(&Method::GET, "/dashboard/app.js"), Route::Admin);
        assert_eq!(classify(&Method::GET, "/dashboard"), Route::Admin);
        assert_eq!(classify(&Method::GET, "/dashboards"), Route::NotFound);
        assert_eq!(classify(&Method::GET, "/apix"), Route::NotFound);
        assert_eq!(classify(&Method::POST, "/sessions"), Route::Admin);
        assert_eq!(
            classify(&Method::POST, "/v1/management/engines/start"),
            Route::Admin
        );
        assert_eq!(
            classify(&Method::POST, "/v1/managements"),
            Route::Llm(Endpoint::OtherV1)
        );
        assert_eq!(classify(&Method::DELETE, "/sessions/sess_1"), Route::Admin);
        assert_eq!(
            classify(&Method::GET, "/dashboard/../v1/models"),
            Route::NotFound
        );
        assert_eq!(
            classify(&Method::POST, "/api/workers/0/drain"),
            Route::Admin
        );
        assert_eq!(
            classify(&Method::GET, "/v1/../../etc/passwd"),
            Route::NotFound
        );
        assert_eq!(
            classify(&Method::POST, "/v1/./chat/completions"),
            Route::NotFound
        );
        assert_eq!(
            classify(&Method::POST, "/api/../v1/chat/completions"),
            Route::NotFound
        );
    }
}
