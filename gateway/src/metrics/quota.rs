//! Per-key usage series (see [`crate::quota`]), rebuilt from the configured keys at every
//! scrape: this replica's requests, tokens and refusals, labelled with the key's configured
//! name (bounded by the config, never the secret). A key removed from the config disappears.

use std::sync::atomic::Ordering::Relaxed;

use prometheus::{IntCounterVec, Opts, Registry};

use crate::quota::Quotas;

pub struct QuotaMetrics {
    requests: IntCounterVec,
    tokens: IntCounterVec,
    refused: IntCounterVec,
}

impl QuotaMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "llm_key_requests_total",
                    "Requests of each API key with a quota that this replica admitted and finished",
                ),
                &["key"],
            )?,
            tokens: IntCounterVec::new(
                Opts::new(
                    "llm_key_tokens_total",
                    "Tokens of each API key with a quota, by type (prompt, completion)",
                ),
                &["key", "type"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "llm_key_refused_total",
                    "Requests refused for their key's quota (429) or model list (403)",
                ),
                &["key"],
            )?,
        };
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.tokens.clone()))?;
        r.register(Box::new(m.refused.clone()))?;
        Ok(m)
    }

    pub fn refresh(&self, q: &Quotas) {
        self.requests.reset();
        self.tokens.reset();
        self.refused.reset();
        for e in q.entries() {
            let u = &e.state.usage;
            let name = e.name.as_str();
            self.requests
                .with_label_values(&[name])
                .inc_by(u.requests.load(Relaxed));
            self.tokens
                .with_label_values(&[name, "prompt"])
                .inc_by(u.prompt_tokens.load(Relaxed));
            self.tokens
                .with_label_values(&[name, "completion"])
                .inc_by(u.completion_tokens.load(Relaxed));
            self.refused
                .with_label_values(&[name])
                .inc_by(u.refused.load(Relaxed));
        }
    }
}
