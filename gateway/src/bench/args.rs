//! Command-line arguments of `sagellm bench` ([`BenchArgs`]) and the small parsers behind them
//! (durations such as `10s`, `2m`, `500ms`; positive rates).

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How long a run lasts when neither `--duration` nor `--requests` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Which OpenAI endpoint to drive.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Endpoint {
    /// `POST /v1/chat/completions` with one user message.
    #[default]
    Chat,
    /// `POST /v1/completions` with a plain prompt.
    Completions,
}

impl Endpoint {
    /// The path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        }
    }

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
        }
    }
}

/// The shape of the traffic.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkloadKind {
    /// Every request has its own prompt of `--prompt-len` tokens (no shared prefix).
    #[default]
    Plain,
    /// Each request is one of `--contexts` long system contexts of `--context-tokens` tokens
    /// (system prompts, RAG documents), then a fresh question of `--prompt-len` tokens.
    SharedPrefix,
    /// `--conversations` chats of `--turns` turns; each turn resends the history (questions
    /// and replies) and asks the next question (chat endpoint only).
    MultiTurn,
}

impl WorkloadKind {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Plain => "plain",
            WorkloadKind::SharedPrefix => "shared-prefix",
            WorkloadKind::MultiTurn => "multi-turn",
        }
    }
}

/// `sagellm bench URL [options]`: load-test an OpenAI-compatible endpoint.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Base URL of the target, e.g. http://127.0.0.1:9000 (a trailing /v1 is accepted)
    pub url: String,
    /// Requests in flight at most (closed loop: this many workers)
    #[arg(short = 'c', long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// How long to send new requests, e.g. 10s, 2m, 500ms, or plain seconds
    /// [default: 10s, or no limit when --requests is given]
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: Poisson arrivals at this many requests per second (still capped by -c)
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Seed of the arrival schedule and of the prompts (same seed, same run plan)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop after sending this many requests
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Stream responses (SSE); needed for TTFT, inter-token latency and TPOT
    #[arg(long)]
    pub stream: bool,
    /// Model id [default: the first id listed by GET /v1/models of the target]
    #[arg(long)]
    pub model: Option<String>,
    /// Approximate prompt length in tokens (one word each)
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub prompt_len: u32,
    /// `max_tokens` of every request
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,
    /// Endpoint to drive
    #[arg(long, value_enum, default_value_t = Endpoint::Chat)]
    pub endpoint: Endpoint,
    /// Traffic shape: plain, shared-prefix or multi-turn
    #[arg(long, value_enum, default_value_t = WorkloadKind::Plain)]
    pub workload: WorkloadKind,
    /// shared-prefix: how many distinct long contexts
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub contexts: u32,
    /// shared-prefix: tokens (words) per context
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    pub context_tokens: u32,
    /// multi-turn: how many conversations
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub conversations: u32,
    /// multi-turn: turns per conversation (then new conversations start)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub turns: u32,
    /// Number this run's requests from here, to continue another run's traffic (a measured
    /// run after a warm-up) with fresh questions and conversations
    #[arg(long, default_value_t = 0)]
    pub request_offset: u64,
    /// API key, sent as `Authorization: Bearer` (else OPENAI_API_KEY when SAGELLM_API_KEY is unset)
    #[arg(long, env = "SAGELLM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Per-request timeout (same syntax as --duration)
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Write the JSON report to this file
    #[arg(short = 'o', long)]
    pub output: Option<std::path::PathBuf>,
    /// Never draw the progress bar
    #[arg(long)]
    pub no_progress: bool,
}

/// A parser wrapper so that [`BenchArgs`] can be parsed on its own (tests, scripts).
#[derive(Parser, Debug)]
#[command(name = "sagellm bench")]
struct Standalone {
    #[command(flatten)]
    args: BenchArgs,
}

impl BenchArgs {
    /// Parses the arguments that follow `sagellm bench` (no program name first).
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("sagellm bench"))
            .chain(args.into_iter().map(Into::into));
        Standalone::try_parse_from(argv).map(|s| s.args)
    }

    /// The duration limit in effect: `--duration`, else 10 s unless `--requests` bounds the run.
    pub fn effective_duration(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_DURATION),
        }
    }

    /// `--api-key`, `SAGELLM_API_KEY`, then `OPENAI_API_KEY`; empty values count as unset.
    pub fn resolved_api_key(&self) -> Option<String> {
        self.api_key
            .clone()
            .or_else(|| std::env::var("OPENAI_API_KEY").ok())
            .filter(|k| !k.is_empty())
    }
}

/// Parses `10s`, `2m`, `500ms`, `1.5h`, `250us` or a plain number of seconds; must be > 0.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 10s, 2m, 500ms or 30)"))?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s, m or h)"
            ))
        }
    };
    let seconds = value * seconds_per_unit;
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("`{text}` must be a positive duration"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is too long"))
}

/// Parses a request rate in requests per second: a finite number > 0.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{text}` is not a positive rate in requests per second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_all_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn bad_durations_are_errors() {
        for bad in [
            "",
            "s",
            "abc",
            "-1s",
            "0",
            "0s",
            "1.2.3s",
            "10parsecs",
            "1e999",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates_must_be_positive() {
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for bad in ["0", "-1", "inf", "NaN", "x"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_and_duration_rules() {
        let a = BenchArgs::try_parse_args(["http://h:1"]).expect("parses");
        assert_eq!(a.concurrency, 8);
        assert_eq!(a.prompt_len, 128);
        assert_eq!(a.max_tokens, 128);
        assert_eq!(a.endpoint, Endpoint::Chat);
        assert_eq!(a.timeout, Duration::from_secs(300));
        assert_eq!(a.effective_duration(), Some(DEFAULT_DURATION));
        let a = BenchArgs::try_parse_args(["http://h:1", "--requests", "5"]).expect("parses");
        assert_eq!(a.effective_duration(), None);
        let a = BenchArgs::try_parse_args(["http://h:1", "-d", "2m", "--requests", "5"]).unwrap();
        assert_eq!(a.effective_duration(), Some(Duration::from_secs(120)));
        assert!(BenchArgs::try_parse_args(["http://h:1", "-c", "0"]).is_err());
        assert!(BenchArgs::try_parse_args(["http://h:1", "--rate", "0"]).is_err());
        assert!(BenchArgs::try_parse_args(["http://h:1", "--endpoint", "x"]).is_err());
    }
}
