//! # sageLLM Gateway
//!
//! An OpenAI-compatible front door for a fleet of LLM workers (vLLM, LMDeploy, SGLang,
//! llama.cpp, the bundled `sagellm-engine`), built on Cloudflare's Pingora.
//!
//! ## Where to start reading
//! - [`proxy`]: one request through Pingora's phases (read/validate, pick a worker, stream the
//!   response back, retry on another worker, account). Start at [`proxy::Gateway`].
//! - [`routing`]: the seven policies behind [`routing::Policy`], one file each.
//! - [`worker`]: what the gateway knows about each worker (load, stats, lifecycle) and the
//!   atomically swapped [`worker::pool::Pool`].
//! - [`probe`]: health checks, model discovery and `/metrics` scrapes.
//! - Protection: [`worker::breaker`] (circuit breakers), [`proxy::retry`] (failover),
//!   [`limits`] (token buckets), [`auth`] (API keys).
//! - [`anthropic`]: Anthropic's Messages API (`/v1/messages`) translated to and from the
//!   workers' OpenAI chat completions.
//! - [`admin`]: the management API, served on the public port through an internal service.
//! - [`control`]: the control plane: `sagellm-engine` processes started, supervised and stopped
//!   through `/v1/management/*`.
//! - [`dashboard`]: the web dashboard at `/` and its WebSocket feed `/ws`.
//! - [`session`]: multi-turn sessions kept by the gateway (`/sessions`, `X-Session-ID`).
//! - [`sched`]: the gateway-side queue (FIFO, priority, SLO) for requests that find every
//!   worker at its concurrency cap.
//! - [`config`]: the configuration struct, its defaults and sources; [`reload`] applies
//!   changes live (watched file, `PUT /api/config`).
//! - [`metrics`]: the Prometheus series of `GET /metrics`.
//! - [`cli`]: the `sagellm` operator command line (a client of the management API).
//! - [`server`]: assembling and running the Pingora server ([`server::spawn`] for tests).
//! - [`bench`]: `sagellm bench`, a load generator for any OpenAI-compatible endpoint.
//!
//! ## Using it
//! ```text
//! LLM_WORKER_URLS=http://10.0.0.1:8000,http://10.0.0.2:8000 sagellm-gateway
//! curl localhost:9000/v1/chat/completions -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
//! ```

#![forbid(unsafe_code)]

pub mod admin;
pub mod anthropic;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod error;
pub mod housekeeping;
pub mod http_client;
pub mod limits;
pub mod metrics;
pub mod probe;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod sched;
pub mod server;
pub mod session;
pub mod sse;
pub mod state;
pub mod worker;
