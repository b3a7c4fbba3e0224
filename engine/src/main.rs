//! `sagellm-engine`: flags → check the model file → listen → load → serve.

use std::io::Write;

use clap::Parser;
use sagellm_engine::args::EngineArgs;
use sagellm_engine::{loader, server};

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLM_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,mistralrs_core=warn,candle=warn")
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

fn fail(message: &str) -> ! {
    eprintln!("sagellm-engine: {message}");
    std::process::exit(2)
}

fn main() {
    let args = EngineArgs::parse();
    // candle's CPU kernels size their rayon pool from this variable; set it before any use.
    if let Some(t) = args.threads {
        std::env::set_var("RAYON_NUM_THREADS", t.max(1).to_string());
    }
    init_logging(&args.log_format);
    if let Err(e) = loader::check_model_file(&args.model) {
        fail(&e.to_string());
    }
    // One worker for HTTP: the cores belong to the model's kernels (mistral.rs runs the
    // model on its own thread and rayon pool).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        let listener = match server::bind(&args).await {
            Ok(l) => l,
            Err(e) => fail(&format!("{e:#}")),
        };
        println!(
            "sagellm-engine listening on http://{}",
            server::local_addr(&listener)
        );
        let _ = std::io::stdout().flush();
        server::run(args, listener, server::shutdown_signal()).await
    });
    if let Err(e) = result {
        eprintln!("sagellm-engine: {e:#}");
        std::process::exit(1);
    }
}
