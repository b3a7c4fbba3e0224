//! Re-encoding GGUF weights into a quantization type with fast CPU kernels, once, cached.
//!
//! candle (mistral.rs's tensor library) has AVX2/NEON kernels for Q4_0, Q8_0 and the K-quants,
//! but only scalar code for Q5_0 and Q5_1, and for Q4_1 on CPUs other than x86 with AVX2: our
//! patched candle-core (third_party/candle-core/PATCHES.md) adds an AVX2 Q4_1 kernel, so on
//! x86-64 builds with AVX2 (`-C target-cpu=x86-64-v3`, as scripts/common.sh sets) the default
//! model's Q4_1 layers load as they are. Without a kernel, a profile of the default model spent
//! 61 % of decode time in `BlockQ4_1::vec_dot_unopt`. With `--requantize auto` (the default)
//! the engine re-encodes such tensors as Q8_0 into a sibling file
//! (`<model>.sagellm-q8_0.gguf`, or `~/.cache/sagellm/` when the model's folder is read-only)
//! and loads that. Q8_0 stores each block of 32 weights with 8-bit codes, so the decoded Q4_1/Q5
//! values are reproduced to within 1/254 of the block's largest magnitude, far finer than
//! their own step; greedy outputs can still differ in rare near-ties. The cache is reused
//! while the source file's size and modification time are unchanged.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

/// Bumped when the output format changes (invalidates caches).
const VERSION: u32 = 1;

/// Quantization types candle runs without SIMD kernels in this build (Q4_1 has one where AVX2
/// is compiled in).
pub fn is_slow(t: GgmlDType) -> bool {
    match t {
        GgmlDType::Q4_1 => !cfg!(target_feature = "avx2"),
        GgmlDType::Q5_0 | GgmlDType::Q5_1 => true,
        _ => false,
    }
}

fn stamp(path: &Path) -> anyhow::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    let mtime = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok((meta.len(), mtime))
}

fn cache_path(model: &Path) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let name = format!("{stem}.sagellm-q8_0.gguf");
    let dir = model
        .parent()
        .filter(|d| writable(d))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join(".cache/sagellm")
        });
    dir.join(name)
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".sagellm-write-test-{}", std::process::id()));
    let ok = File::create(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Whether `cached` was made by this version from a source with this size and mtime.
fn cache_is_valid(cached: &Path, source: (u64, u64)) -> bool {
    let Ok(f) = File::open(cached) else {
        return false;
    };
    let Ok(content) = gguf_file::Content::read(&mut BufReader::new(f)) else {
        return false;
    };
    let get = |k: &str| content.metadata.get(k).and_then(|v| v.to_u64().ok());
    get("sagellm.transcode_version") == Some(VERSION as u64)
        && get("sagellm.source_size") == Some(source.0)
        && get("sagellm.source_mtime") == Some(source.1)
}

/// The file to load for `model`: the model itself, or its Q8_0 re-encoding (made if needed).
pub fn prepare(model: &Path) -> anyhow::Result<PathBuf> {
    let mut reader =
        BufReader::new(File::open(model).with_context(|| format!("opening {}", model.display()))?);
    let content = gguf_file::Content::read(&mut reader)
        .with_context(|| format!("reading {}", model.display()))?;
    if !content.tensor_infos.values().any(|t| is_slow(t.ggml_dtype)) {
        return Ok(model.to_path_buf());
    }
    let source = stamp(model)?;
    let out = cache_path(model);
    if cache_is_valid(&out, source) {
        tracing::info!(file = %out.display(), "using the cached Q8_0 re-encoding");
        return Ok(out);
    }
    let started = std::time::Instant::now();
    let mut names: Vec<(&String, u64)> = content
        .tensor_infos
        .iter()
        .map(|(n, t)| (n, t.offset))
        .collect();
    names.sort_by_key(|(_, offset)| *offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut converted = 0;
    for (name, _) in names {
        let q = content.tensor(&mut reader, name, &Device::Cpu)?;
        let q = if is_slow(q.dtype()) {
            converted += 1;
            QTensor::quantize(&q.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            q
        };
        tensors.push((name.clone(), q));
    }
    let extra = [
        (
            "sagellm.transcode_version",
            gguf_file::Value::U64(VERSION as u64),
        ),
        ("sagellm.source_size", gguf_file::Value::U64(source.0)),
        ("sagellm.source_mtime", gguf_file::Value::U64(source.1)),
    ];
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("sagellm."))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.sort_by_key(|(k, _)| *k);
    metadata.extend(extra.iter().map(|(k, v)| (*k, v)));
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = out.with_extension(format!("tmp{}-{nanos}", std::process::id()));
    {
        let mut w = BufWriter::new(
            File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        gguf_file::write(&mut w, &metadata, &refs).context("writing the re-encoded model")?;
        std::io::Write::flush(&mut w)?;
    }
    std::fs::rename(&tmp, &out).with_context(|| format!("renaming to {}", out.display()))?;
    tracing::info!(
        tensors = converted,
        file = %out.display(),
        seconds = started.elapsed().as_secs_f64(),
        "re-encoded Q4_1/Q5 tensors without a fast CPU kernel as Q8_0"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn converts_slow_tensors_and_caches() {
        let dir = std::env::temp_dir().join(format!("sagellm-transcode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("tiny.gguf");
        let data: Vec<f32> = (0..64 * 32)
            .map(|i| ((i % 97) as f32 - 48.0) / 13.0)
            .collect();
        let t = Tensor::from_vec(data.clone(), (64, 32), &Device::Cpu).unwrap();
        let q50 = QTensor::quantize(&t, GgmlDType::Q5_0).unwrap();
        let f32t = QTensor::quantize(&t, GgmlDType::F32).unwrap();
        let name = gguf_file::Value::String("tiny".into());
        let mut w = BufWriter::new(File::create(&src).unwrap());
        gguf_file::write(
            &mut w,
            &[("general.name", &name)],
            &[("a.weight", &q50), ("b.weight", &f32t)],
        )
        .unwrap();
        drop(w);

        let out = prepare(&src).unwrap();
        assert_ne!(out, src);
        let content =
            gguf_file::Content::read(&mut BufReader::new(File::open(&out).unwrap())).unwrap();
        assert_eq!(content.tensor_infos["a.weight"].ggml_dtype, GgmlDType::Q8_0);
        assert_eq!(content.tensor_infos["b.weight"].ggml_dtype, GgmlDType::F32);
        assert!(content.metadata.contains_key("general.name"));
        // The re-encoded values match the Q5_0 values closely.
        let mut r = BufReader::new(File::open(&out).unwrap());
        let a = content
            .tensor(&mut r, "a.weight", &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let b = q50.dequantize(&Device::Cpu).unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 0.02, "max difference {diff}");
        // Cached: the second call reuses the file.
        let modified = std::fs::metadata(&out).unwrap().modified().unwrap();
        assert_eq!(prepare(&src).unwrap(), out);
        assert_eq!(
            std::fs::metadata(&out).unwrap().modified().unwrap(),
            modified
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
