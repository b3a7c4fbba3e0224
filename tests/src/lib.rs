//! # sagellm-sim — a simulated vLLM worker
//!
//! An in-process (or stand-alone, see the `sagellm-sim` binary) HTTP server that behaves like
//! `vllm serve`'s OpenAI-compatible server, without a GPU or a model: chat/completions/embeddings
//! with vLLM's JSON and SSE shapes, `/v1/models`, `/version`, `/health`, and a `/metrics` page
//! with live `vllm:*` (or `lmdeploy:*`) gauges. Latency (time to first token, time per output
//! token), batch size with a FIFO waiting queue, KV-cache usage, vLLM's automatic prefix
//! caching (an LRU of hash-chained 16-token blocks: prefill is charged only for the uncached
//! tokens, hits are counted like `vllm:prefix_cache_hits_total`), decode slowing down as the
//! batch grows, a GPU speed factor, and faults (forced status, hangs, random 500s, crashes,
//! restarts) are simulated so that gateway tests, demos and
//! benchmarks can exercise routing and protection against a realistic fleet.
//!
//! ## Where to start
//!
//! - [`spawn`] a worker from a [`SimConfig`] and keep the returned [`SimHandle`] (dropping it
//!   stops the worker): `handle.url()` is its base URL.
//! - Steer it and read what it saw through [`SimHandle::control`] ([`SimControl`]: knobs such
//!   as `set_status`, `set_hang`, `set_ttft`; counters such as `requests_total`, `running`,
//!   `last_body_hash`), or over HTTP with `GET /sim/stats` and `POST /sim/config`.
//! - Crash it with [`SimHandle::kill`] and bring it back on the same port with
//!   [`SimHandle::restart`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = sagellm_sim::spawn(sagellm_sim::SimConfig {
//!     name: "w1".into(),
//!     max_running: 2,
//!     ..Default::default()
//! })
//! .await?;
//! println!("worker at {}", sim.url());
//! sim.control().set_status(Some(503)); // every LLM request now gets a 503
//! # Ok(()) }
//! ```
//!
//! Module map: `config` (static settings) · `control` (knobs + counters) · `queue` (running /
//! waiting slots) · `request` (body validation) · `prefix` (the prefix cache) · `generation`
//! (response shapes and timing) · `sse` (streaming body) · `openai` (handlers) · `metrics` ·
//! `admin` (`/sim/*`) · `router` · `serve` (accept loop) · `handle` (spawn, kill, restart).

#![forbid(unsafe_code)]

mod admin;
mod config;
mod control;
mod errors;
mod generation;
mod handle;
mod metrics;
mod openai;
mod prefix;
mod queue;
mod request;
mod router;
mod serve;
mod sse;

#[cfg(test)]
mod tests;

pub use config::{MetricsFlavor, SimConfig};
pub use control::{Knobs, SimControl, SimStats};
pub use handle::{spawn, spawn_on, SimHandle};
pub use prefix::BLOCK_TOKENS;
pub use router::SIM_NAME_HEADER;

/// FNV-1a 64-bit hash; [`SimControl::last_body_hash`] is this over the raw request body, so a
/// test can check a proxy forwarded a body byte for byte.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}
