//! Static configuration of one simulated worker ([`SimConfig`]) and the metric dialect it
//! speaks ([`MetricsFlavor`]).

use std::time::Duration;

/// Which metric names `GET /metrics` exposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricsFlavor {
    /// vLLM names: `vllm:num_requests_running`, `vllm:kv_cache_usage_perc`, …
    #[default]
    Vllm,
    /// LMDeploy names: `lmdeploy:num_requests_running`, `lmdeploy:gpu_cache_usage_perc`, …
    Lmdeploy,
    /// No metrics endpoint at all (`/metrics` answers 404), like a plain OpenAI server.
    None,
}

/// Everything a simulated worker is started with.
///
/// `ttft`, `tpot`, `prefill_per_1k_tokens`, `batch_penalty`, `speed`, `output_tokens` and the
/// fields from `status` to `seed` are the initial values of knobs that can be changed later
/// through [`crate::SimControl`] or `POST /sim/config`; the others are fixed for the life of the
/// worker (also across [`crate::SimHandle::restart`]).
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Identity, echoed in the `x-sim-name` response header.
    pub name: String,
    /// Served model ids; the first one labels the metrics.
    pub models: Vec<String>,
    /// `owned_by` in `/v1/models`; `/version` exists only when this is `"vllm"`.
    pub owned_by: String,
    /// Metric dialect of `/metrics`.
    pub flavor: MetricsFlavor,
    /// Time to first token.
    pub ttft: Duration,
    /// Time per output token after the first, with one sequence running.
    pub tpot: Duration,
    /// Prefill time per 1000 prompt tokens that are not in the prefix cache (added to `ttft`).
    pub prefill_per_1k_tokens: Duration,
    /// Decode slowdown per extra running sequence: the time per output token is
    /// `tpot × (1 + batch_penalty × (running − 1))`.
    pub batch_penalty: f64,
    /// Speed of the simulated GPU: every time above is divided by it (0.4 = a slower GPU).
    pub speed: f64,
    /// Blocks of 16 tokens the prefix cache holds (0 = no prefix caching). Fixed.
    pub cache_blocks: usize,
    /// Tokens generated when a request sets no `max_tokens`; otherwise `min(max_tokens, this)`.
    pub output_tokens: u32,
    /// Requests generating at once; more wait in a FIFO queue and count as waiting.
    pub max_running: u32,
    /// Requests running and waiting at most (0 = no bound); past it a request is refused at
    /// once with vLLM's `503` (its `--max-num-queued-reqs`). Fixed.
    pub max_queued_reqs: u32,
    /// `kv_cache_usage_perc` contributed by each running request (total clamped to 1.0).
    pub kv_per_request: f64,
    /// Probability that a request is answered with a 500.
    pub fail_rate: f64,
    /// When set, every LLM request is answered at once with this status and an error JSON.
    pub status: Option<u16>,
    /// When true, LLM requests are accepted and never answered.
    pub hang: bool,
    /// Status of `GET /health`.
    pub health_status: u16,
    /// Exposes `vllm:engine_sleep_state{sleep_state="weights_offloaded"} 1` when true.
    pub sleeping: bool,
    /// Seed of the RNG that decides `fail_rate` failures.
    pub seed: u64,
    /// Like vLLM's `--api-key`: `/v1/*` needs `Authorization: Bearer <key>` (else 401). Fixed.
    pub api_key: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            name: "sim".to_string(),
            models: vec!["sim-model".to_string()],
            owned_by: "vllm".to_string(),
            flavor: MetricsFlavor::Vllm,
            ttft: Duration::from_millis(20),
            tpot: Duration::from_millis(5),
            prefill_per_1k_tokens: Duration::ZERO,
            batch_penalty: 0.0,
            speed: 1.0,
            cache_blocks: 4096,
            output_tokens: 16,
            max_running: 8,
            max_queued_reqs: 0,
            kv_per_request: 0.05,
            fail_rate: 0.0,
            status: None,
            hang: false,
            health_status: 200,
            sleeping: false,
            seed: 0,
            api_key: None,
        }
    }
}
