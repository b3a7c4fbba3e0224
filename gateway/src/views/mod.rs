//! Views: the serialisable pictures of the fleet that the management API sends, the `sagellm`
//! CLI prints, the dashboard draws and the tests read — one struct per picture, built in one
//! place ([`fleet`]) from the live state.
//!
//! The wire types of the other JSON endpoints (sessions, control plane, dashboard feed) are
//! defined next to the code that owns them and re-exported here, so a client of the gateway
//! finds every body it can receive in this one module.

pub(crate) mod fleet;
mod types;

pub use types::{
    BreakerStats, ConfigView, RoutingStats, SharedStatus, StatusInfo, WorkerBreaker, WorkerInfo,
    WorkerSelections,
};

pub use crate::control::types::{
    Backend, ControlStatus, EngineCounts, EngineInfo, ExitInfo, GpuInfo, GpuReport,
};
pub use crate::dashboard::feed::{Hello, Point, Tick};
pub use crate::discovery::DiscoveryStatus;
pub use crate::reload::{ReloadError, ReloadStatus};
pub use crate::sched::QueueStatus;
pub use crate::session::api::SessionList;
pub use crate::session::SessionView;
pub use crate::worker::breaker::{BreakerState, BreakerView};
pub use crate::worker::kind::WorkerKind;
pub use crate::worker::load::LoadView;
pub use crate::worker::source::WorkerSource;
pub use crate::worker::state::Lifecycle;
pub use crate::worker::stats::StatsView;
