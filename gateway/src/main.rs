//! `sagellm-gateway`: parse flags and config, then run the Pingora server.

use std::path::PathBuf;

use clap::Parser;
use sagellm_gateway::config::sources::{self, Overrides};
use sagellm_gateway::config::ConfigSource;

/// mimalloc instead of glibc malloc: the proxy allocates many small, short-lived buffers per
/// request from several threads (docs/BENCHMARKS.md, "allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "sagellm-gateway",
    version,
    about = "OpenAI-compatible gateway for LLM worker fleets"
)]
struct Args {
    /// TOML config file (default: conf/gateway.toml when it exists) [env: LLM_CONFIG]
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Listen address [env: LLM_HOST]
    #[arg(long)]
    host: Option<String>,
    /// Listen port [env: LLM_PORT]
    #[arg(long, short = 'p')]
    port: Option<u16>,
    /// Workers: comma-separated URLs, each optionally `;weight=N` [env: LLM_WORKER_URLS]
    #[arg(long)]
    worker_urls: Option<String>,
    /// Routing strategy tag [env: LLM_ROUTING_STRATEGY]
    #[arg(long)]
    routing_strategy: Option<String>,
    /// Proxy worker threads (0 = one per CPU) [env: LLM_THREADS]
    #[arg(long)]
    threads: Option<usize>,
    /// Log format
    #[arg(long, value_parser = ["human", "json"], default_value = "human")]
    log_format: String,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLM_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() {
    let args = Args::parse();
    init_logging(&args.log_format);
    let env = match Overrides::from_env(|k| std::env::var(k).ok()) {
        Ok(e) => e,
        Err(e) => fail(&e.to_string()),
    };
    let flags = Overrides {
        host: args.host,
        port: args.port,
        worker_urls: args.worker_urls,
        routing_strategy: args.routing_strategy,
        threads: args.threads,
        ..Default::default()
    };
    let explicit = args
        .config
        .or_else(|| std::env::var_os("LLM_CONFIG").map(PathBuf::from));
    let (config, path) = match sources::load(explicit.as_deref(), &env, &flags) {
        Ok(v) => v,
        Err(e) => fail(&format!("invalid configuration: {e}")),
    };
    if config.workers.is_empty() {
        tracing::warn!(
            "no workers configured: set LLM_WORKER_URLS or [[workers]] in the config file"
        );
    }
    let listen = format!("{}:{}", config.server.host, config.server.port);
    let source = path.clone().map(|path| ConfigSource { path, env, flags });
    let (server, state) = match sagellm_gateway::server::build(config, source) {
        Ok(v) => v,
        Err(e) => fail(&format!("invalid configuration: {e}")),
    };
    tracing::info!(
        listen = %listen,
        config = %path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(defaults)".into()),
        workers = state.pool.load().workers.len(),
        strategy = state.policy.load().name(),
        "sagellm-gateway starting"
    );
    sagellm_gateway::server::run_forever(server, state)
}

fn fail(message: &str) -> ! {
    eprintln!("sagellm-gateway: {message}");
    std::process::exit(2)
}
