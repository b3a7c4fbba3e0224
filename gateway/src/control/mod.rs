//! The control plane: `sagellm-engine` processes launched, supervised and stopped by the
//! gateway through `/v1/management/*` (and `sagellm engines …`).
//!
//! An engine's life, as the API shows it (the worker lifecycle names):
//!
//! ```text
//! POST …/engines/start ─► STARTING ──(its /health passes: the prober)──► READY
//!                            │                                           │
//!                            │ not READY within control.start_timeout    │ POST …/{id}/stop
//!                            ▼                                           ▼
//!    process died ──────► ERROR ◄── process died              DRAINING: no new requests,
//!                            │                                in-flight ones finish (bounded),
//!          POST …/{id}/restart (also from STOPPED)            then SIGTERM, SIGKILL after the
//!                            ▼                                grace period ──► STOPPED
//!                         STARTING
//! ```
//!
//! - [`engines`]: the registry ([`Engines`], one field of [`crate::state::AppState`]) and the
//!   rules: start, stop, restart, the pool membership of launched engines.
//! - [`record`]: one engine's settings and current run, and its operator-visible state.
//! - [`supervisor`]: one task per engine process: waits for its port, registers it as a
//!   worker, notices its death, runs the stop sequence.
//! - [`process`]: finding the binary, the command line, spawning with captured output, signals.
//! - [`gpu`]: `nvidia-smi` for `GET /v1/management/gpu`.
//! - [`api`]: the routes (merged into the admin router, so writes need the admin key);
//!   [`overview`] builds `backends` and `status`; [`types`] are the JSON bodies, shared with
//!   the CLI; [`config`] is the `[control]` section.
//!
//! A launched engine is a worker like any other (`http://127.0.0.1:PORT`, kind
//! `sagellm-engine`): the prober moves it from STARTING to READY, routing treats it like the
//! rest. It leaves the routing pool when it stops or dies and is kept in the engine list as
//! STOPPED or ERROR, so it can be restarted; config reloads that rebuild the worker list keep
//! the running engines ([`Engines::replace_pool`]). The gateway's graceful shutdown stops every
//! engine; a fast one (SIGINT) sends them SIGTERM; child processes are also killed when their
//! supervisor is dropped.

pub mod api;
pub mod engines;
pub mod gpu;
mod membership;
pub mod model_dirs;
pub mod overview;
pub mod process;
pub mod record;
pub mod supervisor;
pub mod types;

pub use engines::Engines;
