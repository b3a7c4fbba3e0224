//! `sagellm-sim`: a simulated vLLM worker as a stand-alone process.
//!
//! Prints exactly one line, `sagellm-sim listening on http://ADDR`, once it listens (so a parent
//! process can learn the port when started with `--port 0`), and exits cleanly on SIGTERM or
//! Ctrl-C. `POST /sim/die` exits the process at once with code 1.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use sagellm_sim::{spawn_on, MetricsFlavor, SimConfig};
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Flavor {
    Vllm,
    Lmdeploy,
    None,
}

/// A simulated vLLM OpenAI-compatible worker (no GPU, no model) for tests, demos and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "sagellm-sim", version)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free port (printed on start).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Identity, echoed in the `x-sim-name` response header.
    #[arg(long, default_value = "sim")]
    name: String,
    /// Served model id (repeat for several); default `sim-model`.
    #[arg(long = "model")]
    models: Vec<String>,
    /// `owned_by` in /v1/models (`/version` exists only for "vllm").
    #[arg(long, default_value = "vllm")]
    owned_by: String,
    /// Metric names exposed by /metrics.
    #[arg(long, value_enum, default_value = "vllm")]
    flavor: Flavor,
    /// Time to first token, in milliseconds.
    #[arg(long, default_value_t = 20)]
    ttft_ms: u64,
    /// Time per output token after the first, in milliseconds (one sequence running).
    #[arg(long, default_value_t = 5)]
    tpot_ms: u64,
    /// Prefill time per 1000 prompt tokens not in the prefix cache, in milliseconds.
    #[arg(long, default_value_t = 0)]
    prefill_ms_per_1k_tokens: u64,
    /// Decode slowdown per extra running sequence: time per token ×(1 + this × (running − 1)).
    #[arg(long, default_value_t = 0.0)]
    batch_penalty: f64,
    /// Speed of the simulated GPU; every time is divided by it (0.4 = a slower GPU).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Prefix-cache size in blocks of 16 tokens (0 = no prefix caching).
    #[arg(long, default_value_t = 4096)]
    cache_blocks: usize,
    /// Tokens generated when a request has no max_tokens.
    #[arg(long, default_value_t = 16)]
    output_tokens: u32,
    /// Requests generating at once; more wait in a FIFO queue.
    #[arg(long, default_value_t = 8)]
    max_running: u32,
    /// Running plus waiting requests at most; more get vLLM's queue-full 503 (0 = no bound).
    #[arg(long, default_value_t = 0)]
    max_queued_reqs: u32,
    /// KV-cache usage per running request (0..1).
    #[arg(long, default_value_t = 0.05)]
    kv_per_request: f64,
    /// Probability that a request gets a 500.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Answer every LLM request at once with this status.
    #[arg(long)]
    status: Option<u16>,
    /// Accept LLM requests and never answer them.
    #[arg(long)]
    hang: bool,
    /// Status of GET /health.
    #[arg(long, default_value_t = 200)]
    health_status: u16,
    /// Report the engine as sleeping (vllm:engine_sleep_state 1).
    #[arg(long)]
    sleeping: bool,
    /// Seed of the RNG behind --fail-rate.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Require `Authorization: Bearer <key>` on /v1/* (vLLM's --api-key).
    #[arg(long)]
    api_key: Option<String>,
}

impl Args {
    fn config(&self) -> SimConfig {
        let defaults = SimConfig::default();
        SimConfig {
            name: self.name.clone(),
            models: if self.models.is_empty() {
                defaults.models
            } else {
                self.models.clone()
            },
            owned_by: self.owned_by.clone(),
            flavor: match self.flavor {
                Flavor::Vllm => MetricsFlavor::Vllm,
                Flavor::Lmdeploy => MetricsFlavor::Lmdeploy,
                Flavor::None => MetricsFlavor::None,
            },
            ttft: Duration::from_millis(self.ttft_ms),
            tpot: Duration::from_millis(self.tpot_ms),
            prefill_per_1k_tokens: Duration::from_millis(self.prefill_ms_per_1k_tokens),
            batch_penalty: self.batch_penalty,
            speed: self.speed,
            cache_blocks: self.cache_blocks,
            output_tokens: self.output_tokens,
            max_running: self.max_running,
            max_queued_reqs: self.max_queued_reqs,
            kv_per_request: self.kv_per_request,
            fail_rate: self.fail_rate,
            status: self.status,
            hang: self.hang,
            health_status: self.health_status,
            sleeping: self.sleeping,
            api_key: self.api_key.clone(),
            seed: self.seed,
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let sim = spawn_on(listener, args.config()).await?;
    sim.control().set_exit_on_die(true);
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "sagellm-sim listening on http://{}", sim.addr())?;
        stdout.flush()?;
    }
    terminated().await;
    sim.shutdown().await;
    Ok(())
}
