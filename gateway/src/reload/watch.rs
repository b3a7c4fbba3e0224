//! Watching the config file: inotify (via `notify`) on the file's directory — editors and
//! Kubernetes ConfigMaps replace files by rename, which a watch on the file itself misses —
//! plus a poll every two seconds for filesystems without change events. Events are debounced
//! (a `write` truncates first: the empty intermediate file must not be applied) and the file's
//! content is compared with the last one seen, so each real change is applied exactly once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::routing::rng::hash_bytes;
use crate::state::AppState;

/// Quiet time after the last event before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// Fallback poll for filesystems without change events.
const POLL: Duration = Duration::from_secs(2);

pub struct ConfigWatcher {
    pub state: Arc<AppState>,
}

fn fingerprint(path: &Path) -> Option<u64> {
    std::fs::read(path).ok().map(|b| hash_bytes(&b))
}

fn inotify(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let name = path.file_name().map(|n| n.to_os_string());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        let ours = ev
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
        if ours && (ev.kind.is_modify() || ev.kind.is_create() || ev.kind.is_remove()) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(path) = self
            .state
            .reload
            .lock()
            .source
            .as_ref()
            .map(|s| s.path.clone())
        else {
            return; // started without a config file: nothing to watch
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Kept alive for the life of the loop; dropping it ends the watch.
        let _watcher = match inotify(&path, tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "no file change events, polling the config file every 2 s");
                None
            }
        };
        tracing::info!(path = %path.display(), "watching the config file");
        let mut seen = fingerprint(&path);
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = rx.recv() => {
                    // Debounce: wait until the writer has been quiet for a moment.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                }
                _ = poll.tick() => {}
            }
            let now = fingerprint(&path);
            if now == seen || now.is_none() {
                continue; // unchanged, or missing mid-replace: the next event brings it back
            }
            seen = now;
            let state = self.state.clone();
            // File reading, TOML parsing and host name resolution block: keep them off the
            // async workers.
            let _ = tokio::task::spawn_blocking(move || super::reload_file(&state)).await;
        }
    }
}
