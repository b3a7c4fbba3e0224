//! Pieces every edge of the gateway shares, below their users: the Pingora proxy, the axum
//! services (management API, sessions, control plane, dashboard) and the API translations
//! (`anthropic`, `session::chat`).
//!
//! - [`translate`]: the contract of a response translator ([`ResponseTranslator`],
//!   [`Translation`]) that rewrites a worker's answer for the client;
//! - [`model`]: the checks of a request's `model` field;
//! - [`reply`]: JSON replies and JSON request bodies of the axum services.

pub(crate) mod model;
pub(crate) mod reply;
pub(crate) mod translate;

pub(crate) use model::check_model;
pub(crate) use translate::Translation;
