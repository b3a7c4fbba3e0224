//! Where a worker in the pool came from. Shown in `/api/workers`, the CLI and the dashboard;
//! it also decides who may take the worker out again (see [`super::pool::PoolHandle::sync_discovered`]).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerSource {
    /// The config file's `[[workers]]`, `LLM_WORKER_URLS` or `--worker-urls`.
    #[default]
    Static,
    /// `POST /api/workers`.
    Api,
    /// An engine launched by the gateway's control plane.
    Engine,
    /// `[discovery] mode = "dns"`: a record of the discovery name.
    Dns,
    /// `[discovery] mode = "k8s"`: an endpoint of the selected EndpointSlices.
    K8s,
}

impl WorkerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Api => "api",
            Self::Engine => "engine",
            Self::Dns => "dns",
            Self::K8s => "k8s",
        }
    }

    /// Found by discovery: added and removed by it, kept across config reloads.
    pub fn is_discovered(self) -> bool {
        matches!(self, Self::Dns | Self::K8s)
    }
}
