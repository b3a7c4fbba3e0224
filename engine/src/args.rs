//! Command-line flags of `sagellm-engine`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Weights' compute dtype. On CPU `f32` decodes fastest (measured in docs/BENCHMARKS.md);
/// `auto` is mistral.rs's own choice (F16 on CPU, BF16/F16 on GPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    Auto,
    F32,
    F16,
    Bf16,
}

/// Whether to re-encode slow quantization types (see `transcode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Requantize {
    Auto,
    Off,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "sagellm-engine",
    version,
    about = "OpenAI-compatible mistral.rs inference worker with vLLM-compatible metrics"
)]
pub struct EngineArgs {
    /// Path of a local GGUF model file (tokenizer and chat template are read from its metadata)
    #[arg(long)]
    pub model: PathBuf,
    /// Listen address
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Listen port (0 = any free port; the chosen one is printed)
    #[arg(long, default_value_t = 8001)]
    pub port: u16,
    /// Sequences generated together in one batch; more requests wait in the engine's queue
    #[arg(long, default_value_t = 8)]
    pub max_seqs: usize,
    /// CPU threads for the model's kernels (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Model id reported by /v1/models and accepted in requests (default: the file name
    /// without `.gguf`)
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Compute dtype
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Re-encode weights whose quantization has no fast CPU kernel in this build (Q5_0, Q5_1;
    /// Q4_1 without AVX2) as Q8_0, cached next to the model (`off` loads the file as it is)
    #[arg(long, value_enum, default_value_t = Requantize::Auto)]
    pub requantize: Requantize,
    /// Make mistral.rs's engine thread worker 0 of the kernels' rayon pool, so candle's
    /// parallel operations run on it instead of handing off to other threads each time
    /// (needs `--threads` ≥ 2; measured in docs/BENCHMARKS.md)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pin_engine_thread: bool,
    /// Finished sequences kept in mistral.rs's prefix cache (0, the default, disables it).
    /// mistral.rs 0.8.1 only evicts entries held on a GPU: on CPU a nonzero value keeps every
    /// distinct conversation's KV cache, and memory grows without bound (docs/BENCHMARKS.md)
    #[arg(long, default_value_t = 0)]
    pub prefix_cache: usize,
    /// Log format
    #[arg(long, value_parser = ["human", "json"], default_value = "human")]
    pub log_format: String,
}

impl EngineArgs {
    /// Kernel threads: `--threads` or every core.
    pub fn kernel_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// The model id served: `--served-model-name` or the file stem.
    pub fn model_name(&self) -> String {
        self.served_model_name.clone().unwrap_or_else(|| {
            let name = self
                .model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.strip_suffix(".gguf").unwrap_or(&name).to_string()
        })
    }
}
