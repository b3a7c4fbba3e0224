//! Loading a local GGUF file into a mistral.rs engine: no network, no Hugging Face token; the
//! tokenizer and chat template come from the GGUF metadata.
//!
//! This follows mistral.rs's own `GgufModelBuilder`, which hard-codes `ModelDType::Auto`
//! (F16 on CPU); building the pipeline here lets `--dtype f32` be chosen, which decodes
//! faster on CPUs without native F16 arithmetic.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use mistralrs::core::{
    AutoDeviceMapParams, DefaultSchedulerMethod, DeviceMapSetting, GGUFLoaderBuilder,
    GGUFSpecificConfig, MistralRs, MistralRsBuilder, ModelDType, SchedulerConfig, TokenSource,
};

use crate::args::{Dtype, EngineArgs, Requantize};
use crate::transcode;

/// A loaded model, ready for requests.
pub struct LoadedModel {
    pub runner: Arc<MistralRs>,
    /// The model id served.
    pub name: String,
    /// Context length (prompt + completion tokens) of one sequence.
    pub max_seq_len: usize,
}

/// Check that `path` is a readable GGUF file; the error says what is wrong in one line.
pub fn check_model_file(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("model file {} does not exist (fetch the default one with ./scripts/fetch-model.sh)", path.display())
        }
        _ => anyhow::anyhow!("cannot read model file {}: {e}", path.display()),
    })?;
    if !meta.is_file() {
        bail!("model path {} is not a file", path.display());
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| anyhow::anyhow!("cannot read model file {}: {e}", path.display()))?;
    if &magic != b"GGUF" {
        bail!("{} is not a GGUF file (bad magic bytes)", path.display());
    }
    Ok(())
}

fn dtype(d: Dtype) -> ModelDType {
    match d {
        Dtype::Auto => ModelDType::Auto,
        Dtype::F32 => ModelDType::F32,
        Dtype::F16 => ModelDType::F16,
        Dtype::Bf16 => ModelDType::BF16,
    }
}

/// Load the model named by `args` (blocking work runs inside mistral.rs).
pub async fn load(args: &EngineArgs) -> anyhow::Result<LoadedModel> {
    check_model_file(&args.model)?;
    let path = args
        .model
        .canonicalize()
        .with_context(|| format!("resolving {}", args.model.display()))?;
    let path = match args.requantize {
        Requantize::Auto => {
            let p = path.clone();
            tokio::task::spawn_blocking(move || transcode::prepare(&p))
                .await
                .context("re-encoding task")??
        }
        Requantize::Off => path,
    };
    let dir = path
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();

    let loader = GGUFLoaderBuilder::new(
        None,
        None,
        dir,
        vec![file],
        GGUFSpecificConfig { topology: None },
        false,
        None,
    )
    .build();
    let device =
        mistralrs::best_device(!cfg!(feature = "cuda")).context("selecting the compute device")?;
    let pipeline = loader
        .load_model_from_hf(
            None,
            TokenSource::None,
            &dtype(args.dtype),
            &device,
            true,
            DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()),
            None,
            None,
        )
        .with_context(|| format!("loading {}", path.display()))?;
    let max_seq_len = pipeline.lock().await.get_metadata().max_seq_len;
    let seqs = args.max_seqs.max(1);
    let scheduler = SchedulerConfig::DefaultScheduler {
        method: DefaultSchedulerMethod::Fixed(
            seqs.try_into().context("--max-seqs must be at least 1")?,
        ),
    };
    let name = args.model_name();
    if args.pin_engine_thread {
        crate::pin::enable(args.kernel_threads());
    }
    let runner = MistralRsBuilder::new(pipeline, scheduler, false, None)
        .with_model_id(name.clone())
        .with_no_prefix_cache(args.prefix_cache == 0)
        .with_prefix_cache_n(args.prefix_cache.max(1))
        .build()
        .await;
    let took = crate::warmup::run(&runner).await?;
    tracing::info!(
        seconds = took.as_secs_f64(),
        pin = ?crate::pin::state(),
        "warm-up token generated"
    );
    Ok(LoadedModel {
        runner,
        name,
        max_seq_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_model_files_are_explained() {
        let dir = std::env::temp_dir().join(format!("sagellm-engine-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("nope.gguf");
        assert!(check_model_file(&missing)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        let not_gguf = dir.join("x.gguf");
        std::fs::write(&not_gguf, b"hello world").unwrap();
        assert!(check_model_file(&not_gguf)
            .unwrap_err()
            .to_string()
            .contains("not a GGUF"));
        let short = dir.join("short.gguf");
        std::fs::write(&short, b"GG").unwrap();
        assert!(check_model_file(&short)
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
        assert!(check_model_file(&dir)
            .unwrap_err()
            .to_string()
            .contains("not a file"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
