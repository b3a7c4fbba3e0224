//! Which model files the engine-start API may load: only files under `control.model_dirs`,
//! so a management request cannot make the gateway open an arbitrary path.
//!
//! A path is checked twice: lexically (`..` resolved, before the file system is touched, so a
//! refusal says nothing about what exists elsewhere), then after symlinks are resolved (a link
//! inside a model folder that points outside it is refused too).

use std::path::{Component, Path, PathBuf};

/// `path` made absolute (against the working directory) with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// The refusal of a path outside every model folder (a 403 in the API).
fn outside(path: &Path, dirs: &[PathBuf]) -> String {
    let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!(
        "{} is not under a model folder of this gateway ({}); put the model there or add its \
         folder to control.model_dirs (LLM_MODEL_DIRS)",
        path.display(),
        if list.is_empty() {
            "none is configured".to_string()
        } else {
            list.join(", ")
        }
    )
}

/// `path` (absolute, normalized) when it lies under one of `dirs`, else why not.
pub fn confine(path: &Path, dirs: &[String]) -> Result<PathBuf, String> {
    let dirs: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| normalize(Path::new(d)))
        .collect();
    let Some(abs) = normalize(path) else {
        return Err(outside(path, &dirs));
    };
    if !dirs.iter().any(|d| abs.starts_with(d)) {
        return Err(outside(&abs, &dirs));
    }
    // Symlinks: compare the real locations (only when the file exists; a missing file is
    // reported as missing by the model check).
    if let Ok(real) = abs.canonicalize() {
        let inside = dirs
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .any(|d| real.starts_with(d));
        if !inside {
            return Err(format!(
                "{} resolves to {}, which is outside the model folders",
                abs.display(),
                real.display()
            ));
        }
    }
    Ok(abs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_a_model_folder_pass() {
        let root = std::env::temp_dir().join(format!("sagellm-model-dirs-{}", std::process::id()));
        let models = root.join("models");
        let other = root.join("other");
        std::fs::create_dir_all(&models).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("secret.gguf"), b"GGUF").unwrap();
        let dirs = vec![models.display().to_string()];

        let ok = confine(&models.join("a.gguf"), &dirs).unwrap();
        assert_eq!(ok, models.join("a.gguf"));
        assert_eq!(
            confine(&models.join("sub/../b.gguf"), &dirs).unwrap(),
            models.join("b.gguf")
        );
        let e = confine(Path::new("/etc/passwd"), &dirs).unwrap_err();
        assert!(
            e.contains("not under a model folder") && e.contains("LLM_MODEL_DIRS"),
            "{e}"
        );
        let e = confine(&models.join("../other/secret.gguf"), &dirs).unwrap_err();
        assert!(
            e.contains(&other.join("secret.gguf").display().to_string()),
            "{e}"
        );
        // A link inside the folder that leads out of it.
        std::os::unix::fs::symlink(other.join("secret.gguf"), models.join("link.gguf")).unwrap();
        let e = confine(&models.join("link.gguf"), &dirs).unwrap_err();
        assert!(e.contains("outside the model folders"), "{e}");
        assert!(confine(&models.join("x.gguf"), &[])
            .unwrap_err()
            .contains("none is configured"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
