//! The session endpoints: `POST /sessions`, `GET /sessions` (paged), `GET /sessions/{id}`
//! (with the messages), `DELETE /sessions/{id}`. They take the API key like the LLM endpoints
//! (not the admin key): a session is visible only to the key that created it.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::store::{NewSession, Session, SessionView};
use super::{new_id, now_ms, owner_of, Owner};
use crate::edge::reply::parse_json;
use crate::error::GatewayError;
use crate::state::AppState;

/// Largest page of `GET /sessions`.
pub const MAX_PAGE: usize = 100;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/sessions", get(list).post(create))
        .route("/sessions/{id}", get(show).delete(delete))
}

/// The caller's key (`Authorization: Bearer` or `x-api-key`), checked like on `/v1/*`.
fn caller(state: &AppState, headers: &HeaderMap) -> Result<Owner, GatewayError> {
    let key = crate::auth::api_key(headers);
    if !state.auth.load().check_api_key(key) {
        return Err(crate::auth::key_required());
    }
    Ok(owner_of(key))
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::SessionNotFound(id.chars().take(100).collect())
}

async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<SessionView>), GatewayError> {
    let owner = caller(&state, &headers)?;
    let new: NewSession = if body.iter().all(u8::is_ascii_whitespace) {
        NewSession::default()
    } else {
        parse_json(&body)?
    };
    let cfg = state.config.load();
    let limits = &cfg.sessions;
    let too_long = |field: &str, text: &Option<String>| match text {
        Some(t) if t.len() > limits.max_text_bytes => Err(GatewayError::invalid(
            format!("`{field}` is longer than {} bytes", limits.max_text_bytes),
            Some(field),
        )),
        _ => Ok(()),
    };
    too_long("title", &new.title)?;
    too_long("system_prompt", &new.system_prompt)?;
    let ttl = new.ttl_seconds.unwrap_or(limits.default_ttl_seconds);
    if ttl == 0 || ttl > limits.max_ttl_seconds {
        return Err(GatewayError::invalid(
            format!("`ttl_seconds` must be 1..={}", limits.max_ttl_seconds),
            Some("ttl_seconds"),
        ));
    }
    let now = now_ms();
    let session = Session {
        id: new_id(),
        owner,
        title: new.title,
        system_prompt: new.system_prompt,
        created_ms: now,
        last_used_ms: now,
        ttl_seconds: ttl,
        messages: VecDeque::new(),
        trimmed: 0,
        worker: None,
        seq: 0, // set by the store
    };
    let view = session.view(false);
    state.sessions.create(session, limits).await?;
    tracing::debug!(session = %view.id, "session created");
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    20
}

/// `GET /sessions`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionList {
    pub object: String,
    pub data: Vec<SessionView>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, GatewayError> {
    let owner = caller(&state, &headers)?;
    let Query(page) = page.map_err(|e| GatewayError::invalid(e.body_text(), Some("query")))?;
    if page.limit == 0 || page.limit > MAX_PAGE {
        return Err(GatewayError::invalid(
            format!("`limit` must be 1..={MAX_PAGE}"),
            Some("limit"),
        ));
    }
    let (sessions, total) = state
        .sessions
        .list(&owner, page.offset, page.limit, now_ms())
        .await?;
    Ok(Json(SessionList {
        object: "list".into(),
        data: sessions.iter().map(|s| s.view(false)).collect(),
        total,
        offset: page.offset,
        limit: page.limit,
    }))
}

async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, GatewayError> {
    let owner = caller(&state, &headers)?;
    let session = state
        .sessions
        .get(&id, &owner, now_ms())
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(session.view(true)))
}

async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, GatewayError> {
    let owner = caller(&state, &headers)?;
    if !state.sessions.delete(&id, &owner).await? {
        return Err(not_found(&id));
    }
    Ok(Json(
        serde_json::json!({ "id": id, "object": "session", "deleted": true }),
    ))
}
