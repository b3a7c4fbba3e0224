//! `sagellm`: the operator's command line for a running gateway (management API client) and
//! `sagellm bench`, the load generator. Every command takes `--url` (env `SAGELLM_URL`),
//! `--admin-key` (env `SAGELLM_ADMIN_KEY`, needed for writes when the gateway has one) and
//! `--json` (the API's JSON instead of tables, for scripts).

mod client;
mod engines;
mod render;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value};

use crate::bench::BenchArgs;
use crate::views::{ConfigView, StatusInfo, WorkerBreaker, WorkerInfo};
use client::Api;

#[derive(Parser, Debug)]
#[command(
    name = "sagellm",
    version,
    about = "Operate a sageLLM gateway, and benchmark OpenAI-compatible endpoints"
)]
pub struct Cli {
    /// Gateway base URL
    #[arg(
        long = "url",
        id = "gateway_url",
        global = true,
        env = "SAGELLM_URL",
        default_value = "http://127.0.0.1:9000"
    )]
    pub url: String,
    /// Admin key for management writes (when the gateway has one)
    #[arg(long, global = true, env = "SAGELLM_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Print the API's JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Gateway summary: version, uptime, strategy, workers, traffic
    Status,
    /// The worker table (state, breaker, load, latency, counts)
    Workers,
    /// Live refreshing status and worker table (Ctrl-C to stop)
    Watch {
        /// Seconds between refreshes
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes (0 = until Ctrl-C)
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
    /// Stop new requests to a worker while its in-flight requests finish (ID: index or host:port)
    Drain { id: String },
    /// Let a drained worker take requests again
    Undrain { id: String },
    /// Add a worker to the live pool
    Add {
        url: String,
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Models it serves (default: discovered from its /v1/models)
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
    },
    /// Remove a worker from the live pool
    Remove { id: String },
    /// Close a worker's circuit breaker
    ResetBreaker { id: String },
    /// Show or change the live configuration
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// The gateway's /health (exit status 1 when it has no usable worker)
    Health,
    /// Engines launched by the gateway: list, start, stop, restart
    Engines {
        #[command(subcommand)]
        action: engines::EnginesAction,
    },
    /// Load-test any OpenAI-compatible endpoint
    Bench(BenchArgs),
    /// Time routing decisions in process (no network): prompt hashing, eligibility, the pick
    BenchDecision(crate::bench::DecisionArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Print the live configuration (keys masked) and the last reload result
    Get,
    /// Change settings: `routing_strategy=round_robin`, `rate_limit.per_user_rpm=120`, …
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
}

/// Entry point of the `sagellm` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sagellm: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sagellm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `key=value` pairs as a config patch; values are JSON when they parse, else strings.
pub fn parse_pairs(pairs: &[String]) -> Result<Value> {
    let mut patch = Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("`{p}` is not KEY=VALUE"))?;
        let (k, v) = (k.trim(), v.trim());
        anyhow::ensure!(!k.is_empty(), "`{p}` has an empty key");
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        patch.insert(k.to_string(), value);
    }
    Ok(Value::Object(patch))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Bench(args) = cli.command {
        crate::bench::main(args).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::BenchDecision(args) = &cli.command {
        crate::bench::decision::main(args)?;
        return Ok(ExitCode::SUCCESS);
    }
    let api = Api::new(&cli.url, cli.admin_key.clone())?;
    match cli.command {
        Command::Status => {
            let s: StatusInfo = api.get("/api/status").await?;
            if cli.json {
                print_json(&s)?;
            } else {
                print!("{}", render::status(&s));
                print!("{}", render::workers(&s.workers));
            }
        }
        Command::Workers => {
            let w: Vec<WorkerInfo> = api.get("/api/workers").await?;
            if cli.json {
                print_json(&w)?;
            } else {
                print!("{}", render::workers(&w));
            }
        }
        Command::Watch { interval, count } => watch(&api, cli.json, interval, count).await?,
        Command::Drain { id } => worker_action(&api, cli.json, &id, "drain").await?,
        Command::Undrain { id } => worker_action(&api, cli.json, &id, "undrain").await?,
        Command::Add {
            url,
            weight,
            models,
        } => {
            let body = serde_json::json!({"url": url, "weight": weight, "models": models});
            let w: WorkerInfo = api.json(Method::POST, "/api/workers", Some(&body)).await?;
            report_worker(cli.json, &w, "added")?;
        }
        Command::Remove { id } => {
            let path = format!("/api/workers/{}", encode(&id));
            let w: WorkerInfo = api.json(Method::DELETE, &path, None).await?;
            report_worker(cli.json, &w, "removed")?;
        }
        Command::ResetBreaker { id } => {
            let path = format!("/api/circuit-breaker/{}/reset", encode(&id));
            let b: WorkerBreaker = api.json(Method::POST, &path, None).await?;
            if cli.json {
                print_json(&b)?;
            } else {
                println!("breaker of {} is {}", b.url, b.breaker.state.as_str());
            }
        }
        Command::Config { action } => match action {
            ConfigAction::Get => {
                let c: ConfigView = api.get("/api/config").await?;
                print_json(&c)?;
            }
            ConfigAction::Set { pairs } => {
                let patch = parse_pairs(&pairs)?;
                let c: ConfigView = api.json(Method::PUT, "/api/config", Some(&patch)).await?;
                if cli.json {
                    print_json(&c)?;
                } else {
                    for p in &pairs {
                        println!("set {p}");
                    }
                    println!(
                        "routing strategy is now {}",
                        c.config["routing"]["strategy"].as_str().unwrap_or("?")
                    );
                }
            }
        },
        Command::Health => {
            let (status, v) = api.call(Method::GET, "/health", None).await?;
            if cli.json {
                print_json(&v)?;
            } else {
                println!(
                    "{} ({}): {}/{} workers ready",
                    v["status"].as_str().unwrap_or("unknown"),
                    status.as_u16(),
                    v["ready_workers"].as_u64().unwrap_or(0),
                    v["total_workers"].as_u64().unwrap_or(0),
                );
            }
            if !status.is_success() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Engines { action } => engines::run(&api, cli.json, action).await?,
        Command::Bench(_) | Command::BenchDecision(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encode an id for a path segment (`host:port` is safe; anything else is escaped).
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn worker_action(api: &Api, json: bool, id: &str, action: &str) -> Result<()> {
    let path = format!("/api/workers/{}/{action}", encode(id));
    let w: WorkerInfo = api.json(Method::POST, &path, None).await?;
    report_worker(json, &w, &format!("{action}ed"))
}

fn report_worker(json: bool, w: &WorkerInfo, what: &str) -> Result<()> {
    if json {
        print_json(w)
    } else {
        println!(
            "worker {} ({}) {what}: state {}",
            w.index,
            w.url,
            w.state.as_str()
        );
        Ok(())
    }
}

async fn watch(api: &Api, json: bool, interval: f64, count: u64) -> Result<()> {
    anyhow::ensure!(
        interval.is_finite() && interval >= 0.1,
        "--interval must be at least 0.1 seconds"
    );
    let mut n = 0u64;
    loop {
        let s: StatusInfo = api.get("/api/status").await?;
        if json {
            println!("{}", serde_json::to_string(&s)?);
        } else {
            // Clear the screen and home the cursor, then redraw.
            print!("\x1b[2J\x1b[H{}", render::status(&s));
            print!("{}", render::workers(&s.workers));
            println!("\n{}  every {interval}s  (Ctrl-C to stop)", api.base());
        }
        n += 1;
        if count > 0 && n >= count {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(interval)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_a_patch() {
        let p = parse_pairs(&[
            "routing_strategy=round_robin".into(),
            "rate_limit.per_user_rpm=120".into(),
            "rate_limit.enabled=false".into(),
        ])
        .unwrap();
        assert_eq!(p["routing_strategy"], "round_robin");
        assert_eq!(p["rate_limit.per_user_rpm"], 120);
        assert_eq!(p["rate_limit.enabled"], false);
        assert!(parse_pairs(&["novalue".into()]).is_err());
        assert!(parse_pairs(&["=x".into()]).is_err());
    }

    #[test]
    fn ids_are_escaped() {
        assert_eq!(encode("127.0.0.1:8001"), "127.0.0.1:8001");
        assert_eq!(encode("a/b"), "a%2Fb");
    }
}
