//! Shared engine state: loading → ready. Until the model is loaded, `/health` answers 503 and
//! generation requests are refused with 503.

use std::sync::{Arc, OnceLock};

use crate::api::error::ApiError;
use crate::inflight::Inflight;
use crate::loader::LoadedModel;
use crate::metrics::Metrics;

/// Everything a request needs once the model is loaded.
#[derive(Clone)]
pub struct Ready {
    pub model: Arc<LoadedModel>,
    pub metrics: Arc<Metrics>,
    pub inflight: Arc<Inflight>,
}

pub struct EngineState {
    /// The served model id (known before loading: it comes from the flags).
    pub name: String,
    pub max_seqs: usize,
    pub metrics: Arc<Metrics>,
    ready: OnceLock<Ready>,
}

impl EngineState {
    pub fn new(name: String, max_seqs: usize) -> anyhow::Result<Arc<Self>> {
        let metrics = Arc::new(Metrics::new(&name)?);
        Ok(Arc::new(Self {
            name,
            max_seqs,
            metrics,
            ready: OnceLock::new(),
        }))
    }

    /// Mark the model loaded.
    pub fn set_ready(&self, model: LoadedModel) {
        let inflight = Inflight::new(self.max_seqs, model.max_seq_len);
        let _ = self.ready.set(Ready {
            model: Arc::new(model),
            metrics: self.metrics.clone(),
            inflight,
        });
    }

    pub fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready.get().ok_or(ApiError::Loading)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get().is_some()
    }
}
