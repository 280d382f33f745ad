//! `sandwatch serve`: one daemon per host that runs every sandbox under one set of probes and
//! speaks E2B's API, so that agent platforms built on E2B's SDKs switch to it by changing
//! environment variables (`E2B_API_URL`, `E2B_SANDBOX_URL`, `E2B_API_KEY`).
//!
//! The daemon loads the probes once (one collector, one Parquet sink, one rule engine, one
//! baseline scorer for every sandbox); watching a new sandbox is a map update. It keeps a warm
//! pool of ready sandboxes and owns every sandbox's life, recording each step in the audit log
//! exactly as `sandwatch run` does, plus a row per API call (`api_calls`).
//!
//! Modules, and who may touch what:
//! - [`server`]: listeners, the run loop, signals, drain. The binary calls [`Server::bind`] and
//!   [`Server::run`].
//! - [`daemon`]: the hosted sandboxes' lives (create, pause, resume, deadlines, end, recovery);
//!   the only module that changes a [`hosted::Hosted`]'s state.
//! - [`host`]: the shared probes and what watching one sandbox puts in the kernel.
//! - [`pool`]: the warm pool. [`templates`]: templates to policies. [`auth`]: keys and tokens.
//! - [`processes`]: a sandbox's commands and their output pumps.
//! - [`control`] (E2B's control plane), [`envd`] (process, filesystem, files), [`ops`]
//!   (health, Prometheus), [`api`] (what they share: state, callers, errors, the call record).
//! - [`stats`]: the Prometheus numbers. [`proto`]: generated envd messages and services.

pub mod api;
pub mod auth;
pub mod client;
pub mod control;
pub mod daemon;
pub mod envd;
pub mod host;
pub mod hosted;
pub mod ops;
pub mod pool;
pub mod processes;
pub mod proto;
pub mod server;
pub mod stats;
pub mod templates;

pub use server::{Bound, Drain, Listen, ServeError, ServeSummary, Server};
