//! `sagellm engines list|start|stop|restart`: the control plane's engines
//! (`/v1/management/engines*`). `--wait` polls the engine until it is READY (start, restart)
//! or STOPPED (stop), bounded by `--timeout`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use reqwest::Method;

use super::client::Api;
use super::render::{table, uptime};
use crate::control::types::EngineInfo;
use crate::worker::state::Lifecycle;

#[derive(Subcommand, Debug)]
pub enum EnginesAction {
    /// The launched engines: state, pid, port, model, uptime
    List,
    /// Launch a sagellm-engine on a loopback port and add it to the pool
    Start {
        /// Local GGUF model file
        #[arg(long)]
        model: PathBuf,
        /// Port (default: a free one)
        #[arg(long)]
        port: Option<u16>,
        /// Sequences batched together (default: the gateway's control.default_max_seqs)
        #[arg(long)]
        max_seqs: Option<usize>,
        /// CPU threads of the model's kernels (default: all cores)
        #[arg(long)]
        threads: Option<usize>,
        /// Model id to serve (default: the file name without .gguf)
        #[arg(long)]
        served_model_name: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Drain an engine, then stop its process (ID: engine-N or 127.0.0.1:PORT)
    Stop {
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Start a STOPPED or ERROR engine again with its settings
    Restart {
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(clap::Args, Debug)]
pub struct Wait {
    /// Wait until the engine is READY (start, restart) or STOPPED (stop)
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait at most with --wait
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

pub async fn run(api: &Api, json: bool, action: EnginesAction) -> Result<()> {
    match action {
        EnginesAction::List => {
            let engines: Vec<EngineInfo> = api.get("/v1/management/engines").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&engines)?);
            } else {
                print!("{}", render(&engines));
            }
            Ok(())
        }
        EnginesAction::Start {
            model,
            port,
            max_seqs,
            threads,
            served_model_name,
            wait,
        } => {
            // The gateway resolves relative paths against its own directory: send ours.
            let model = std::path::absolute(&model)
                .with_context(|| format!("--model {}", model.display()))?;
            let body = serde_json::json!({
                "model": model, "port": port, "max_seqs": max_seqs, "threads": threads,
                "served_model_name": served_model_name,
            });
            let e: EngineInfo = api
                .json(Method::POST, "/v1/management/engines/start", Some(&body))
                .await?;
            finish(api, json, e, "started", Lifecycle::Ready, &wait).await
        }
        EnginesAction::Stop { id, wait } => {
            let path = format!("/v1/management/engines/{}/stop", super::encode(&id));
            let e: EngineInfo = api.json(Method::POST, &path, None).await?;
            finish(api, json, e, "stopping", Lifecycle::Stopped, &wait).await
        }
        EnginesAction::Restart { id, wait } => {
            let path = format!("/v1/management/engines/{}/restart", super::encode(&id));
            let e: EngineInfo = api.json(Method::POST, &path, None).await?;
            finish(api, json, e, "restarted", Lifecycle::Ready, &wait).await
        }
    }
}

/// Print the reply, or with `--wait` the engine once it reached `goal`.
async fn finish(
    api: &Api,
    json: bool,
    mut e: EngineInfo,
    what: &str,
    goal: Lifecycle,
    wait: &Wait,
) -> Result<()> {
    if wait.wait {
        let deadline = Instant::now() + Duration::from_secs(wait.timeout);
        let path = format!("/v1/management/engines/{}", super::encode(&e.id));
        while e.state != goal {
            let failed = match goal {
                Lifecycle::Ready => matches!(e.state, Lifecycle::Error | Lifecycle::Stopped),
                _ => false,
            };
            if failed {
                bail!(
                    "{} is {}: {}",
                    e.id,
                    e.state.as_str(),
                    e.error.as_deref().unwrap_or("see `sagellm engines list`")
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} is still {} after {} s",
                    e.id,
                    e.state.as_str(),
                    wait.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            e = api.get(&path).await?;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        let at = if e.url.is_empty() {
            String::new()
        } else {
            format!(" at {}", e.url)
        };
        println!("engine {} {what}{at}: state {}", e.id, e.state.as_str());
    }
    Ok(())
}

pub fn render(engines: &[EngineInfo]) -> String {
    let rows: Vec<Vec<String>> = engines
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.state.as_str().to_string(),
                e.pid.map_or("-".into(), |p| p.to_string()),
                if e.port > 0 {
                    e.port.to_string()
                } else {
                    "-".into()
                },
                e.model_name.clone(),
                e.uptime_seconds.map_or("-".into(), uptime),
                e.restarts.to_string(),
                e.exit
                    .as_ref()
                    .map_or("-".into(), |x| x.description.clone()),
            ]
        })
        .collect();
    table(
        &[
            "ID", "STATE", "PID", "PORT", "MODEL", "UPTIME", "RESTARTS", "EXIT",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_engines() {
        let e = EngineInfo {
            id: "engine-1".into(),
            state: Lifecycle::Ready,
            pid: Some(42),
            port: 8001,
            url: "http://127.0.0.1:8001".into(),
            worker_id: "127.0.0.1:8001".into(),
            model: "/m/smol.gguf".into(),
            model_name: "smol".into(),
            max_seqs: 8,
            threads: None,
            uptime_seconds: Some(65.0),
            started_at: Some(1),
            restarts: 0,
            exit: None,
            error: None,
            log_tail: vec![],
        };
        let t = render(&[e]);
        assert!(t.starts_with("ID        STATE  PID  PORT  MODEL  UPTIME  RESTARTS  EXIT\n"));
        assert!(
            t.contains("engine-1  READY  42   8001  smol   1m05s   0         -"),
            "{t}"
        );
    }
}
