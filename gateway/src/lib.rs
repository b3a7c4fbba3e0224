//! # sageLLM Gateway
//!
//! An OpenAI-compatible front door for a fleet of LLM workers (vLLM, LMDeploy, SGLang,
//! llama.cpp, the bundled `sagellm-engine`), built on Cloudflare's Pingora.
//!
//! ## Where to start reading
//! - `proxy`: one request through Pingora's phases. Start at its phase chart (`proxy/mod.rs`),
//!   then `proxy/decide.rs` (answered here, sent to the admin service, or admitted) and the
//!   admission pipeline (`proxy/admit.rs`), whose stages run in this order:
//!   open → authorize (`auth`) → reserve → read body → translate (`anthropic`) → parse →
//!   queue class → limits (`limits`, `shared`) → quota (`quota`) → model → rewrite (`session`);
//!   any refusal is answered in
//!   one place. Then `proxy/select.rs` (the gateway's queue `sched`, then the worker pick),
//!   `proxy/forward.rs` (the gateway's own forwarding path) and `proxy/account.rs` (ending an
//!   attempt: stats, breaker, metrics).
//! - `routing`: the policies behind `routing::Policy`, one file each, one factory.
//! - `worker`: what the gateway knows about each worker (load, stats, lifecycle, breaker) and
//!   the atomically swapped `worker::pool::Pool`; `probe` keeps it fresh (health checks, model
//!   discovery, `/metrics` scrapes).
//! - `edge`: pieces every edge shares (the response-translator contract, `model` checks, JSON
//!   replies of the axum services); [`views`]: the JSON pictures of the fleet that the API, the
//!   CLI and the dashboard show.
//! - Edges on axum (served through the public port by an internal service): `admin` (the
//!   management API), `control` (engines started through `/v1/management/*`), `session`
//!   (`/sessions`), `dashboard` (`/` and `/ws`).
//! - [`config`]: one file per section, each with its defaults and validation; `reload` applies
//!   changes live (watched file, `PUT /api/config`); `metrics`: the series of `GET /metrics`.
//! - [`server`]: assembling and running the Pingora server ([`server::spawn`] for tests);
//!   `tls`: HTTPS on the listener (certificate files, live rotation); `otel`: OpenTelemetry
//!   traces (one span per LLM request, OTLP export off the request path); `auth`: API and admin
//!   keys, and which management writes an exposed listener refuses; `shared`: state several
//!   replicas share through Redis (`[redis]`: the replica heartbeat, the shared buckets);
//!   `discovery`: workers found by DNS (`[discovery]`);
//!   [`cli`]: the `sagellm` command line; [`bench`]: `sagellm bench`.
//!
//! ## Where the state lives
//! `state::AppState` holds the live parts, each swapped atomically and read with one `load()`:
//! the config (`ArcSwap<Config>`), the pool (`PoolHandle`), the routing policy, the rate limits
//! and the keys; beside them the gateway's queue (`sched::Scheduler`), sessions, launched
//! engines, metrics and the dashboard feed. The axum edges take `AppState`; the core takes
//! only the snapshots it reads: one request sees one config snapshot (`proxy`'s context), the
//! worker pick gets the pool, policy, limits and breaker settings, the queue gets the pool and
//! the config, a reload gets the parts it swaps.
//!
//! ## Using it
//! ```text
//! LLM_WORKER_URLS=http://10.0.0.1:8000,http://10.0.0.2:8000 sagellm-gateway
//! curl localhost:9000/v1/chat/completions -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! ## The library's surface
//! The binaries and the tests use [`server`] (run a gateway), [`config`] (build its
//! configuration), [`views`] (read its API's answers), [`cli`] and [`bench`]. Everything else
//! is internal.

#![forbid(unsafe_code)]

mod admin;
mod anthropic;
mod auth;
pub mod bench;
pub mod cli;
pub mod config;
mod control;
mod dashboard;
mod discovery;
mod edge;
mod error;
#[cfg(test)]
mod fuzz;
mod housekeeping;
mod http_client;
mod limits;
mod metrics;
mod otel;
mod probe;
mod proxy;
mod quota;
mod reload;
mod routing;
mod sched;
pub mod server;
mod session;
mod shared;
mod sse;
mod state;
mod tls;
pub mod views;
mod worker;
