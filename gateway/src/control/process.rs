//! One `sagellm-engine` process: finding the binary, its command line, spawning it with its
//! output captured, reading the port it announces, and stopping it.
//!
//! Signals: the crate forbids `unsafe`, and neither std nor tokio can send SIGTERM (their
//! `kill` is SIGKILL; a signal crate such as `nix` or `rustix` would add a dependency and, for
//! `rustix`, change features the engine's build shares). SIGTERM is therefore sent by
//! `/bin/sh`'s built-in `kill -TERM <pid>` (no `procps` needed); when that cannot run, the
//! engine gets SIGKILL at once. The pid cannot have been reused: the child is only reaped by
//! our own `wait`, so until then its pid stays taken.
//! Every child is spawned with `kill_on_drop`, so one whose supervisor task is dropped (the
//! gateway's runtime shutting down) gets SIGKILL.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::types::ExitInfo;

/// The engine's executable name.
pub const ENGINE_BIN: &str = "sagellm-engine";

/// The `sagellm-engine` to run: `configured` when set (it must exist), else beside the
/// gateway's own executable or in that folder's parent (a `target/release/deps/` test binary
/// finds `target/release/sagellm-engine`), else the first one on `PATH`.
pub fn find_engine_binary(configured: &str) -> Result<PathBuf, String> {
    let configured = configured.trim();
    if !configured.is_empty() {
        let p = PathBuf::from(configured);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(format!(
                "control.engine_binary `{configured}` is not an executable file"
            ))
        };
    }
    let exe_dirs = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .map(|dir| {
            let parent = dir.parent().map(Path::to_path_buf);
            std::iter::once(dir).chain(parent).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let path = std::env::var_os("PATH").unwrap_or_default();
    exe_dirs
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(ENGINE_BIN))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            format!("cannot find the {ENGINE_BIN} binary (looked beside the gateway's executable and on PATH); build it with `cargo build --release --workspace` or set control.engine_binary")
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What one engine process is started with.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchSpec {
    pub model: PathBuf,
    pub port: u16,
    pub max_seqs: usize,
    pub threads: Option<usize>,
    pub served_model_name: Option<String>,
}

impl LaunchSpec {
    /// A spec for unit tests.
    #[cfg(test)]
    pub fn example() -> Self {
        LaunchSpec {
            model: "/m/x.gguf".into(),
            port: 0,
            max_seqs: 8,
            threads: None,
            served_model_name: None,
        }
    }

    /// The engine's command line (it always binds loopback: the gateway is the front door).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--model".into(),
            self.model.clone().into_os_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string().into(),
            "--max-seqs".into(),
            self.max_seqs.to_string().into(),
            "--log-format".into(),
            "human".into(),
        ];
        if let Some(t) = self.threads {
            args.extend(["--threads".into(), t.to_string().into()]);
        }
        if let Some(n) = &self.served_model_name {
            args.extend(["--served-model-name".into(), n.into()]);
        }
        args
    }

    /// The model id the engine will serve (its rule: the name given, else the file stem).
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

/// The last lines an engine printed, for the API (a crash explains itself there).
#[derive(Debug, Default)]
pub struct OutputTail {
    lines: Mutex<VecDeque<String>>,
}

impl OutputTail {
    pub const LINES: usize = 20;
    const LINE_BYTES: usize = 500;

    pub fn push(&self, raw: &str) {
        let mut line = strip_ansi(raw.trim_end());
        if line.trim().is_empty() {
            return;
        }
        if line.len() > Self::LINE_BYTES {
            let mut cut = Self::LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut lines = self.lines.lock();
        if lines.len() == Self::LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub fn clear(&self) {
        self.lines.lock().clear();
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().iter().cloned().collect()
    }

    pub fn last(&self) -> Option<String> {
        self.lines.lock().back().cloned()
    }
}

/// Drop terminal colour sequences (`ESC [ … letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The port in the engine's start-up line `sagellm-engine listening on http://127.0.0.1:PORT`.
pub fn announced_port(line: &str) -> Option<u16> {
    let rest = line.split("listening on http://").nth(1)?;
    let authority = rest.split(['/', ' ']).next()?.trim();
    authority
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// A spawned engine, its output readers running.
pub struct Spawned {
    pub child: Child,
    pub pid: u32,
    /// Resolves with the announced port (dropped if stdout closes first).
    pub port: oneshot::Receiver<u16>,
    /// The output readers; they end when the process closes its output.
    pub readers: Vec<tokio::task::JoinHandle<()>>,
}

/// Start `binary` with `spec`'s arguments; output lines go to `tail` (and the debug log).
pub fn spawn(
    binary: &Path,
    spec: &LaunchSpec,
    engine_id: &str,
    tail: Arc<OutputTail>,
) -> std::io::Result<Spawned> {
    let mut cmd = Command::new(binary);
    cmd.args(spec.args());
    spawn_command(cmd, engine_id, tail)
}

/// [`spawn`] for any command line (tests run a stand-in engine).
pub fn spawn_command(
    mut cmd: Command,
    engine_id: &str,
    tail: Arc<OutputTail>,
) -> std::io::Result<Spawned> {
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    let (port_tx, port) = oneshot::channel();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(
            out,
            engine_id.to_string(),
            tail.clone(),
            Some(port_tx),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(
            err,
            engine_id.to_string(),
            tail,
            None,
        )));
    }
    Ok(Spawned {
        child,
        pid,
        port,
        readers,
    })
}

async fn read_lines(
    stream: impl AsyncRead + Unpin,
    engine: String,
    tail: Arc<OutputTail>,
    mut port_tx: Option<oneshot::Sender<u16>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        tracing::debug!(engine = %engine, line = %line.trim_end(), "engine output");
        if port_tx.is_some() {
            if let Some(port) = announced_port(&line) {
                if let Some(tx) = port_tx.take() {
                    let _ = tx.send(port);
                }
            }
        }
        tail.push(&line);
    }
}

/// Ask the process to exit (SIGTERM); `false` when `kill` could not be run.
pub async fn send_sigterm(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    Command::new("/bin/sh")
        .args(SIGTERM_SCRIPT)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// `sh -c 'kill -TERM "$1"' sh PID`: the shell's built-in `kill`, so no `procps` is needed.
const SIGTERM_SCRIPT: [&str; 3] = ["-c", "kill -TERM \"$1\"", "sh"];

/// SIGTERM without waiting (the gateway's fast shutdown).
pub fn send_sigterm_now(pid: u32) {
    if pid != 0 {
        let _ = std::process::Command::new("/bin/sh")
            .args(SIGTERM_SCRIPT)
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// SIGTERM, up to `grace` for the process to exit, then SIGKILL. Returns how it ended.
pub async fn terminate(
    child: &mut Child,
    pid: u32,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Ok(status);
    }
    if send_sigterm(pid).await {
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            return status;
        }
        tracing::warn!(
            pid,
            grace_seconds = grace.as_secs(),
            "engine ignored SIGTERM, sending SIGKILL"
        );
    } else {
        tracing::warn!(pid, "cannot run `kill -TERM`, sending SIGKILL");
    }
    child.kill().await?;
    child.wait().await
}

/// `ExitStatus` as the API shows it.
pub fn exit_info(status: &ExitStatus) -> ExitInfo {
    let code = status.code();
    let signal = status.signal();
    let description = match (code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}{}", signal_name(s)),
        (None, None) => "ended".to_string(),
    };
    ExitInfo {
        code,
        signal,
        description,
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
