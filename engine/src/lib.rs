//! # sagellm-engine
//!
//! The bundled inference worker of sageLLM: a local GGUF model run by mistral.rs behind an
//! OpenAI-compatible HTTP API, with `/metrics` in vLLM's names so the gateway (and any vLLM
//! dashboard) sees it like a vLLM worker.
//!
//! ## Where to start reading
//! - [`server::run`]: bind, serve `/health` (503) while [`loader::load`] loads the model, then
//!   serve requests.
//! - [`api`]: the routes; [`api::types`] validates requests, [`api::openai`] shapes answers
//!   and SSE streams.
//! - [`generate::Generation`]: one request inside mistral.rs (always streaming internally, so
//!   a client that disconnects cancels its sequence).
//! - [`inflight`] and [`metrics`]: the vLLM gauges and histograms.
//! - [`sampling`]: sampling parameters, including reproducible per-request `seed`s.
//! - [`pin`] and [`warmup`]: the engine thread made a rayon worker, by a one-token request at
//!   load.
//! - [`transcode`]: re-encoding weights without fast CPU kernels (Q5; Q4_1 without AVX2) as
//!   Q8_0.
//!
//! ```text
//! sagellm-engine --model models/SmolLM2-135M-Instruct.Q4_1.gguf --port 8001
//! curl localhost:8001/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":32}'
//! ```

#![forbid(unsafe_code)]

pub mod api;
pub mod args;
pub mod generate;
pub mod inflight;
pub mod loader;
pub mod metrics;
pub mod pin;
pub mod sampling;
pub mod server;
pub mod state;
pub mod stop;
pub mod transcode;
pub mod warmup;
