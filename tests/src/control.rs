//! [`SimControl`]: the live state of one simulated worker — runtime knobs and counters.
//!
//! One `SimControl` is shared (behind an `Arc`) by the HTTP handlers, the [`crate::SimHandle`]
//! and any test that wants to steer the worker or look at what it received. It survives
//! [`crate::SimHandle::kill`] / [`crate::SimHandle::restart`], like a process supervisor that
//! keeps its settings while the worker crashes and comes back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use crate::config::{MetricsFlavor, SimConfig};
use crate::prefix::{PrefixCache, BLOCK_TOKENS};

/// The knobs that can change while the worker runs (a snapshot of them).
#[derive(Clone, Debug, PartialEq)]
pub struct Knobs {
    /// Forced status for every LLM request (`None` = behave normally).
    pub status: Option<u16>,
    /// Accept LLM requests and never answer them.
    pub hang: bool,
    /// Probability of a simulated 500.
    pub fail_rate: f64,
    /// Time to first token.
    pub ttft: Duration,
    /// Time per output token after the first (one sequence running).
    pub tpot: Duration,
    /// Prefill time per 1000 uncached prompt tokens.
    pub prefill_per_1k_tokens: Duration,
    /// Decode slowdown per extra running sequence.
    pub batch_penalty: f64,
    /// Divides every time (0.4 = a GPU at 0.4× speed).
    pub speed: f64,
    /// Tokens generated when the request sets no `max_tokens`.
    pub output_tokens: u32,
    /// Status of `GET /health`.
    pub health_status: u16,
    /// `vllm:engine_sleep_state` reports the weights as offloaded.
    pub sleeping: bool,
    /// Streams that start from now on break off (connection reset, no `[DONE]`) after this
    /// many token chunks: a worker dying mid-generation.
    pub break_after_tokens: Option<u32>,
    /// Streams that start from now on go silent (connection kept open) after this many token
    /// chunks: a stalled worker.
    pub stall_after_tokens: Option<u32>,
    /// `Retry-After` seconds sent with a forced `status` (vLLM-style overload answers).
    pub retry_after_secs: Option<u64>,
}

/// Counters and knobs as `GET /sim/stats` reports them.
#[derive(Clone, Debug, Serialize)]
pub struct SimStats {
    pub name: String,
    pub models: Vec<String>,
    pub requests_total: u64,
    pub completed_total: u64,
    pub failed_total: u64,
    pub disconnects_total: u64,
    /// Requests refused because `max_queued_reqs` were running and waiting.
    pub queue_full_total: u64,
    pub running: u64,
    pub waiting: u64,
    pub kv_cache_usage: f64,
    pub prompt_tokens_total: u64,
    pub generation_tokens_total: u64,
    /// Prompt tokens looked up in the prefix cache (vLLM's `prefix_cache_queries`).
    pub prefix_cache_queries_total: u64,
    /// Of those, tokens found cached (vLLM's `prefix_cache_hits`).
    pub prefix_cache_hits_total: u64,
    /// Blocks in the prefix cache now, and the most it holds.
    pub cache_blocks_used: usize,
    pub cache_blocks: usize,
    pub last_body_len: u64,
    pub last_body_hash: u64,
    pub max_running: u32,
    pub status: Option<u16>,
    pub hang: bool,
    pub fail_rate: f64,
    pub ttft_ms: u64,
    pub tpot_ms: u64,
    pub prefill_ms_per_1k_tokens: u64,
    pub batch_penalty: f64,
    pub speed: f64,
    pub output_tokens: u32,
    pub health_status: u16,
    pub sleeping: bool,
    pub break_after_tokens: Option<u32>,
    pub stall_after_tokens: Option<u32>,
    pub retry_after_secs: Option<u64>,
}

/// Shared live state of a simulated worker. All methods take `&self`.
pub struct SimControl {
    name: String,
    api_key: Option<String>,
    models: Vec<String>,
    owned_by: String,
    flavor: MetricsFlavor,
    max_running: u32,
    max_queued_reqs: u32,
    kv_per_request: f64,
    knobs: Mutex<Knobs>,
    rng: Mutex<fastrand::Rng>,
    pub(crate) slots: Arc<Semaphore>,
    requests_total: AtomicU64,
    completed_total: AtomicU64,
    failed_total: AtomicU64,
    disconnects_total: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) waiting: AtomicU64,
    prompt_tokens_total: AtomicU64,
    generation_tokens_total: AtomicU64,
    stream_events_total: AtomicU64,
    models_requests_total: AtomicU64,
    queue_full_total: AtomicU64,
    cache: PrefixCache,
    prefix_queries_total: AtomicU64,
    prefix_hits_total: AtomicU64,
    last_body_len: AtomicU64,
    last_body_hash: AtomicU64,
    /// The W3C `traceparent` of the last `/v1/*` request (vLLM continues such a trace).
    last_traceparent: Mutex<Option<String>>,
    exit_on_die: AtomicBool,
    pub(crate) die: Notify,
}

impl std::fmt::Debug for SimControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimControl")
            .field("name", &self.name)
            .field("knobs", &self.knobs())
            .field("running", &self.running())
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimControl {
    /// Builds the live state from a configuration (knobs start at the configured values).
    pub fn new(cfg: &SimConfig) -> Self {
        let max_running = cfg.max_running.max(1);
        let models = if cfg.models.is_empty() {
            SimConfig::default().models
        } else {
            cfg.models.clone()
        };
        Self {
            name: cfg.name.clone(),
            api_key: cfg.api_key.clone(),
            models,
            owned_by: cfg.owned_by.clone(),
            flavor: cfg.flavor,
            max_running,
            max_queued_reqs: cfg.max_queued_reqs,
            kv_per_request: cfg.kv_per_request.max(0.0),
            knobs: Mutex::new(Knobs {
                status: cfg.status,
                hang: cfg.hang,
                fail_rate: cfg.fail_rate.clamp(0.0, 1.0),
                ttft: cfg.ttft,
                tpot: cfg.tpot,
                prefill_per_1k_tokens: cfg.prefill_per_1k_tokens,
                batch_penalty: valid_penalty(cfg.batch_penalty),
                speed: valid_speed(cfg.speed),
                output_tokens: cfg.output_tokens,
                health_status: cfg.health_status,
                sleeping: cfg.sleeping,
                break_after_tokens: None,
                stall_after_tokens: None,
                retry_after_secs: None,
            }),
            rng: Mutex::new(fastrand::Rng::with_seed(cfg.seed)),
            slots: Arc::new(Semaphore::new(max_running as usize)),
            requests_total: AtomicU64::new(0),
            completed_total: AtomicU64::new(0),
            failed_total: AtomicU64::new(0),
            disconnects_total: AtomicU64::new(0),
            running: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            prompt_tokens_total: AtomicU64::new(0),
            generation_tokens_total: AtomicU64::new(0),
            stream_events_total: AtomicU64::new(0),
            models_requests_total: AtomicU64::new(0),
            queue_full_total: AtomicU64::new(0),
            cache: PrefixCache::new(cfg.cache_blocks),
            prefix_queries_total: AtomicU64::new(0),
            prefix_hits_total: AtomicU64::new(0),
            last_body_len: AtomicU64::new(0),
            last_body_hash: AtomicU64::new(0),
            last_traceparent: Mutex::new(None),
            exit_on_die: AtomicBool::new(false),
            die: Notify::new(),
        }
    }

    // ---- identity (fixed) ----

    /// The `x-sim-name` of this worker.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The key `/v1/*` requires, if any.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }
    /// Served model ids (never empty).
    pub fn models(&self) -> &[String] {
        &self.models
    }
    /// The model that labels the metrics.
    pub fn primary_model(&self) -> &str {
        self.models
            .first()
            .map(String::as_str)
            .unwrap_or("sim-model")
    }
    /// `owned_by` of `/v1/models`.
    pub fn owned_by(&self) -> &str {
        &self.owned_by
    }
    /// Metric dialect.
    pub fn flavor(&self) -> MetricsFlavor {
        self.flavor
    }
    /// Size of the running batch (at least 1).
    pub fn max_running(&self) -> u32 {
        self.max_running
    }
    /// Whether a new request finds the running and waiting requests at `max_queued_reqs`.
    pub(crate) fn queue_full(&self) -> bool {
        let queued = self.running.load(Ordering::Relaxed) + self.waiting.load(Ordering::Relaxed);
        self.max_queued_reqs > 0 && queued >= u64::from(self.max_queued_reqs)
    }

    // ---- knobs ----

    /// Snapshot of all runtime knobs.
    pub fn knobs(&self) -> Knobs {
        lock(&self.knobs).clone()
    }
    /// Forces (or, with `None`, stops forcing) a status for every LLM request.
    pub fn set_status(&self, status: Option<u16>) {
        lock(&self.knobs).status = status;
    }
    /// Makes LLM requests hang forever (`true`) or behave again (`false`, new requests only).
    pub fn set_hang(&self, hang: bool) {
        lock(&self.knobs).hang = hang;
    }
    /// Probability (clamped to 0..=1) that a request is answered with a 500.
    pub fn set_fail_rate(&self, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        lock(&self.knobs).fail_rate = rate;
    }
    /// Time to first token for requests that start from now on.
    pub fn set_ttft(&self, ttft: Duration) {
        lock(&self.knobs).ttft = ttft;
    }
    /// Time per output token for requests that start from now on.
    pub fn set_tpot(&self, tpot: Duration) {
        lock(&self.knobs).tpot = tpot;
    }
    /// Prefill time per 1000 uncached prompt tokens, for requests that start from now on.
    pub fn set_prefill_per_1k_tokens(&self, per_1k: Duration) {
        lock(&self.knobs).prefill_per_1k_tokens = per_1k;
    }
    /// Decode slowdown per extra running sequence (negative or NaN: 0).
    pub fn set_batch_penalty(&self, penalty: f64) {
        lock(&self.knobs).batch_penalty = valid_penalty(penalty);
    }
    /// Speed of the simulated GPU (clamped to 0.01..=100; NaN: 1).
    pub fn set_speed(&self, speed: f64) {
        lock(&self.knobs).speed = valid_speed(speed);
    }
    /// Tokens generated when a request sets no `max_tokens`.
    pub fn set_output_tokens(&self, n: u32) {
        lock(&self.knobs).output_tokens = n;
    }
    /// Status of `GET /health`.
    pub fn set_health_status(&self, status: u16) {
        lock(&self.knobs).health_status = status;
    }
    /// Reports the engine as sleeping (weights offloaded) in `/metrics`.
    pub fn set_sleeping(&self, sleeping: bool) {
        lock(&self.knobs).sleeping = sleeping;
    }
    /// Streams starting from now on break off after `n` token chunks (`None`: they don't).
    pub fn set_break_after_tokens(&self, n: Option<u32>) {
        lock(&self.knobs).break_after_tokens = n;
    }
    /// Streams starting from now on go silent after `n` token chunks (`None`: they don't).
    pub fn set_stall_after_tokens(&self, n: Option<u32>) {
        lock(&self.knobs).stall_after_tokens = n;
    }
    /// `Retry-After` seconds on forced-status answers (`None`: no header).
    pub fn set_retry_after_secs(&self, secs: Option<u64>) {
        lock(&self.knobs).retry_after_secs = secs;
    }
    /// When true, `POST /sim/die` exits the whole process with code 1 (binary mode); when false
    /// (the default, library mode) it only kills this server like [`crate::SimHandle::kill`].
    pub fn set_exit_on_die(&self, exit: bool) {
        self.exit_on_die.store(exit, Ordering::Relaxed);
    }
    pub(crate) fn exit_on_die(&self) -> bool {
        self.exit_on_die.load(Ordering::Relaxed)
    }

    // ---- counters ----

    /// LLM requests received (chat, completions, embeddings), whatever their outcome.
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }
    /// LLM requests answered successfully to the end (streams: `[DONE]` produced).
    pub fn completed_total(&self) -> u64 {
        self.completed_total.load(Ordering::Relaxed)
    }
    /// LLM requests answered with an error status (forced, simulated failure, or client error).
    pub fn failed_total(&self) -> u64 {
        self.failed_total.load(Ordering::Relaxed)
    }
    /// Requests holding a batch slot now.
    pub fn running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }
    /// Requests queued for a batch slot now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }
    /// Simulated KV-cache usage in 0..=1: `running × kv_per_request`, clamped.
    pub fn kv_cache_usage(&self) -> f64 {
        (self.running() as f64 * self.kv_per_request).min(1.0)
    }
    /// Streams whose client went away before the end.
    pub fn disconnects_total(&self) -> u64 {
        self.disconnects_total.load(Ordering::Relaxed)
    }
    /// Prompt tokens of all successful requests.
    pub fn prompt_tokens_total(&self) -> u64 {
        self.prompt_tokens_total.load(Ordering::Relaxed)
    }
    /// Generated tokens of all successful requests.
    pub fn generation_tokens_total(&self) -> u64 {
        self.generation_tokens_total.load(Ordering::Relaxed)
    }
    /// SSE events handed to the HTTP server by streams so far (a stream the reader does not
    /// drain stops producing: this stops growing).
    pub fn stream_events_total(&self) -> u64 {
        self.stream_events_total.load(Ordering::Relaxed)
    }
    pub(crate) fn record_stream_event(&self) {
        self.stream_events_total.fetch_add(1, Ordering::Relaxed);
    }
    /// `GET /v1/models` answered so far (a gateway's active health checks ask it).
    pub fn models_requests_total(&self) -> u64 {
        self.models_requests_total.load(Ordering::Relaxed)
    }
    pub(crate) fn record_models_request(&self) {
        self.models_requests_total.fetch_add(1, Ordering::Relaxed);
    }
    /// Requests refused because the queue was full (`max_queued_reqs`).
    pub fn queue_full_total(&self) -> u64 {
        self.queue_full_total.load(Ordering::Relaxed)
    }
    pub(crate) fn record_queue_full(&self) {
        self.queue_full_total.fetch_add(1, Ordering::Relaxed);
    }
    /// Prompt tokens looked up in the prefix cache.
    pub fn prefix_cache_queries_total(&self) -> u64 {
        self.prefix_queries_total.load(Ordering::Relaxed)
    }
    /// Prompt tokens found in the prefix cache.
    pub fn prefix_cache_hits_total(&self) -> u64 {
        self.prefix_hits_total.load(Ordering::Relaxed)
    }
    /// Length in bytes of the raw body of the most recent LLM POST.
    pub fn last_body_len(&self) -> u64 {
        self.last_body_len.load(Ordering::Relaxed)
    }
    /// FNV-1a 64 of the raw body of the most recent LLM POST (see [`crate::fnv1a64`]).
    /// The `traceparent` header of the last `/v1/*` request (`None`: it had none).
    pub fn last_traceparent(&self) -> Option<String> {
        self.last_traceparent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    pub(crate) fn note_traceparent(&self, value: Option<&str>) {
        *self
            .last_traceparent
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = value.map(str::to_string);
    }
    pub fn last_body_hash(&self) -> u64 {
        self.last_body_hash.load(Ordering::Relaxed)
    }

    /// Everything above in one serialisable snapshot (the body of `GET /sim/stats`).
    pub fn stats(&self) -> SimStats {
        let k = self.knobs();
        SimStats {
            name: self.name.clone(),
            models: self.models.clone(),
            requests_total: self.requests_total(),
            completed_total: self.completed_total(),
            failed_total: self.failed_total(),
            disconnects_total: self.disconnects_total(),
            queue_full_total: self.queue_full_total(),
            running: self.running(),
            waiting: self.waiting(),
            kv_cache_usage: self.kv_cache_usage(),
            prompt_tokens_total: self.prompt_tokens_total(),
            generation_tokens_total: self.generation_tokens_total(),
            prefix_cache_queries_total: self.prefix_cache_queries_total(),
            prefix_cache_hits_total: self.prefix_cache_hits_total(),
            cache_blocks_used: self.cache.len(),
            cache_blocks: self.cache.capacity(),
            last_body_len: self.last_body_len(),
            last_body_hash: self.last_body_hash(),
            max_running: self.max_running,
            status: k.status,
            hang: k.hang,
            fail_rate: k.fail_rate,
            ttft_ms: duration_ms(k.ttft),
            tpot_ms: duration_ms(k.tpot),
            prefill_ms_per_1k_tokens: duration_ms(k.prefill_per_1k_tokens),
            batch_penalty: k.batch_penalty,
            speed: k.speed,
            output_tokens: k.output_tokens,
            health_status: k.health_status,
            sleeping: k.sleeping,
            break_after_tokens: k.break_after_tokens,
            stall_after_tokens: k.stall_after_tokens,
            retry_after_secs: k.retry_after_secs,
        }
    }

    // ---- bookkeeping used by the handlers ----

    pub(crate) fn record_request(&self, body: &[u8]) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        self.last_body_len
            .store(body.len() as u64, Ordering::Relaxed);
        self.last_body_hash
            .store(crate::fnv1a64(body), Ordering::Relaxed);
    }
    pub(crate) fn record_success(&self, prompt_tokens: u32, generated: u32) {
        self.completed_total.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens_total
            .fetch_add(u64::from(prompt_tokens), Ordering::Relaxed);
        self.generation_tokens_total
            .fetch_add(u64::from(generated), Ordering::Relaxed);
    }
    /// A request's prefill starts: looks its `blocks` up in the prefix cache (and caches
    /// them), counts the query and the hit like vLLM (in tokens), and returns the prompt
    /// tokens found cached.
    pub(crate) fn prefill(&self, blocks: &[u64], prompt_tokens: u32) -> u32 {
        let matched = self.cache.prefill(blocks);
        let hits = u32::try_from(matched.saturating_mul(BLOCK_TOKENS))
            .unwrap_or(u32::MAX)
            .min(prompt_tokens);
        self.prefix_queries_total
            .fetch_add(u64::from(prompt_tokens), Ordering::Relaxed);
        self.prefix_hits_total
            .fetch_add(u64::from(hits), Ordering::Relaxed);
        hits
    }
    pub(crate) fn record_failure(&self) {
        self.failed_total.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_disconnect(&self) {
        self.disconnects_total.fetch_add(1, Ordering::Relaxed);
    }
    /// Draws from the seeded RNG whether this request fails.
    pub(crate) fn roll_failure(&self, fail_rate: f64) -> bool {
        fail_rate > 0.0 && lock(&self.rng).f64() < fail_rate
    }
}

fn valid_speed(speed: f64) -> f64 {
    if speed.is_nan() {
        1.0
    } else {
        speed.clamp(0.01, 100.0)
    }
}

fn valid_penalty(penalty: f64) -> f64 {
    if penalty.is_nan() {
        0.0
    } else {
        penalty.clamp(0.0, 100.0)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
