//! `sagellm bench-decision`: the time of one routing decision, in process (no network): the
//! prompt's chunk hashes (what admission computes), the eligible workers, and the policy's
//! pick, for prompts of `--prompt-tokens` over `--workers` READY workers. The index is warmed
//! with `--contexts` shared contexts first, so lookups walk long matches, as on shared-prefix
//! traffic.

use std::time::Instant;

use anyhow::bail;

use super::workload::prompt;
use crate::config::RoutingConfig;
use crate::routing::prefix_index::Prompt;
use crate::routing::{self, RouteHints, Strategy};
use crate::worker::breaker::BreakerSettings;
use crate::worker::pool::PoolHandle;
use crate::worker::spec::WorkerSpec;
use crate::worker::state::HealthThresholds;

/// `sagellm bench-decision [options]`.
#[derive(clap::Args, Debug, Clone)]
pub struct DecisionArgs {
    /// Strategy to time
    #[arg(long, default_value = "cache_aware")]
    pub strategy: Strategy,
    /// READY workers to choose from
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: u32,
    /// Prompt length in tokens (about 4 bytes each)
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub prompt_tokens: u32,
    /// Distinct shared contexts (each request: a context, then a fresh question)
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub contexts: u32,
    /// Decisions to time
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
}

/// What was measured, in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionReport {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    pub prompt_bytes: usize,
    /// The prefix-index lookup alone (prompt already hashed), p50 and p99, for the policies
    /// that keep an index.
    pub lookup_us: Option<(f64, f64)>,
}

/// Times `args.iterations` decisions.
pub fn run(args: &DecisionArgs) -> anyhow::Result<DecisionReport> {
    let specs = (0..args.workers)
        .map(|i| WorkerSpec::new(&format!("http://127.0.0.1:{}", 20_000 + i), 1, vec![]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let handle = PoolHandle::new(specs);
    let pool = handle.load_full();
    let ready = HealthThresholds {
        failures: 1,
        recoveries: 1,
    };
    for w in &pool.workers {
        w.health.record(true, ready);
    }
    let cfg = RoutingConfig {
        strategy: args.strategy,
        seed: Some(1),
        ..Default::default()
    };
    let policy = routing::build(&cfg);
    let ca = &cfg.cache_aware;
    let breaker = BreakerSettings::default();
    // The question is ~1 % of the prompt; the context the rest.
    let question_words = (args.prompt_tokens / 100).max(1);
    let context_words = args.prompt_tokens.saturating_sub(question_words).max(1);
    let contexts: Vec<String> = (0..args.contexts)
        .map(|c| prompt(7, u64::from(c), context_words))
        .collect();
    let body = |i: u32| {
        let ctx = &contexts[(i % args.contexts) as usize];
        format!(
            "[{{\"role\":\"system\",\"content\":\"{ctx}\"}},{{\"role\":\"user\",\"content\":\"{}\"}}]",
            prompt(9, u64::from(i), question_words)
        )
    };
    let decide = |text: &str| {
        let prompt = Prompt::new(
            "m",
            text.as_bytes(),
            ca.chunk_bytes,
            ca.bytes_per_token,
            256,
        );
        let hints = RouteHints {
            prompt: Some(prompt),
            ..Default::default()
        };
        let candidates = pool.eligible(None, &[], &breaker);
        policy.select(&pool, &candidates, &hints)
    };
    if pool.eligible(None, &[], &breaker).is_empty() {
        bail!("no eligible worker (internal error)");
    }
    // Warm the index: every context routed a few times.
    for i in 0..args.contexts * 4 {
        decide(&body(i));
    }
    let texts: Vec<String> = (0..args.iterations.min(256))
        .map(|i| body(i + 1_000))
        .collect();
    let mut ns: Vec<u64> = Vec::with_capacity(args.iterations as usize);
    for i in 0..args.iterations as usize {
        let text = &texts[i % texts.len()];
        let start = Instant::now();
        std::hint::black_box(decide(text));
        ns.push(start.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    let at = |ns: &[u64], q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    let lookup_us = policy.prefix_index().map(|index| {
        let uids: Vec<u64> = pool.workers.iter().map(|w| w.uid).collect();
        let hashed: Vec<_> = texts
            .iter()
            .map(|t| Prompt::new("m", t.as_bytes(), ca.chunk_bytes, ca.bytes_per_token, 256))
            .collect();
        let mut lns: Vec<u64> = (0..args.iterations as usize)
            .map(|i| {
                let p = &hashed[i % hashed.len()];
                let start = Instant::now();
                std::hint::black_box(index.lookup(&p.chunks, &uids));
                start.elapsed().as_nanos() as u64
            })
            .collect();
        lns.sort_unstable();
        (at(&lns, 0.5), at(&lns, 0.99))
    });
    Ok(DecisionReport {
        p50_us: at(&ns, 0.5),
        p99_us: at(&ns, 0.99),
        max_us: at(&ns, 1.0),
        mean_us: ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0,
        prompt_bytes: texts[0].len(),
        lookup_us,
    })
}

/// The command: run and print.
pub fn main(args: &DecisionArgs) -> anyhow::Result<()> {
    let r = run(args)?;
    println!(
        "sagellm bench-decision  {} over {} workers, {}-token prompts ({} bytes), {} contexts, {} decisions",
        args.strategy, args.workers, args.prompt_tokens, r.prompt_bytes, args.contexts, args.iterations
    );
    println!(
        "decision µs  p50 {:.2}  p99 {:.2}  mean {:.2}  max {:.2}",
        r.p50_us, r.p99_us, r.mean_us, r.max_us
    );
    if let Some((p50, p99)) = r.lookup_us {
        println!("index lookup alone µs  p50 {p50:.2}  p99 {p99:.2}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_times_every_strategy_on_small_inputs() {
        for &strategy in Strategy::ALL {
            let r = run(&DecisionArgs {
                strategy,
                workers: 3,
                prompt_tokens: 300,
                contexts: 2,
                iterations: 50,
            })
            .unwrap();
            assert!(
                r.p50_us <= r.p99_us && r.p99_us <= r.max_us,
                "{strategy}: {r:?}"
            );
            assert!(r.prompt_bytes > 300, "{strategy}: {r:?}");
            let keeps_index = matches!(strategy, Strategy::CacheAware | Strategy::P2cKv);
            assert_eq!(r.lookup_us.is_some(), keeps_index, "{strategy}");
        }
    }
}
