// (The crate's documentation is `lib.md`, beside this file, so it reads as a guide.)
#![doc = include_str!("lib.md")]
#![warn(missing_docs)]
// The always-built modules (payload, connection, context, middleware) hold helpers that only
// the server calls; a client-only build leaves them unused.
#![cfg_attr(not(feature = "server"), allow(dead_code))]

// Always built: what an app that only enqueues needs, in layers that depend downward only:
// `error` and `store` (Redis) < `job` (what a job is) < `client` and `config`.
mod client;
mod clock;
mod config;
mod error;
mod job;
mod store;

// `server`: taking and running jobs; the extensions plug into its seams, the test mode
// runs its executor without Redis.
pub mod extensions;
#[cfg(feature = "server")]
pub mod plugins;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub mod testing;

// Above the server: reading and steering what is stored, the dashboard, the command line.
#[cfg(feature = "api")]
pub mod api;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "command")]
pub mod command;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "web")]
pub mod web;

// The public modules that live in the layers above, under the names users know.
#[cfg(feature = "opentelemetry")]
pub use job::otel;
pub use job::{active_job, context, encryption, job_events, middleware, status};
#[cfg(feature = "server")]
pub use server::events;

pub use client::{Client, EventStream, JobHandle, Push, ReliablePush, SpoolStatus};
pub use config::Config;
pub use error::{Error, Result};
#[cfg(feature = "periodic")]
pub use extensions::periodic;
pub use extensions::{batch, iteration, limits, workflow};
pub use job::builder::Job;
pub use job::failure::{JobError, JobResult};
pub use job::middleware::Outcome;
pub use job::payload::{JobMap, Retry};
pub use job::worker::{
    Backtrace, JobFuture, NoArgs, RawJob, RawWorker, Task, Worker, WorkerOptions,
};
#[cfg(feature = "server")]
pub use server::registry::Registry;
pub use store::config::RedisConfig;
pub use store::connection::Connection as RedisConnection;
pub use store::keys::{Keys, Layout};

#[cfg(feature = "server")]
pub use server::capsule::Capsule;
#[cfg(feature = "server")]
pub use server::chunk::{ChunkWorker, Chunked};
#[cfg(feature = "server")]
pub use server::fetch::{FetchMode, QueueSpec};
#[cfg(feature = "server")]
pub use server::launcher::{RunningJobInfo, ServerHandle};
#[cfg(feature = "server")]
pub use server::signals::terminate as shutdown_signal;
#[cfg(feature = "server")]
pub use server::{Server, ServerConfig};

/// The README's Rust examples compile as doctests, so the Quickstart cannot rot.
#[cfg(all(doctest, feature = "cli"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Internals that Psychiq's own tests, benchmarks and binaries reach for. Not part of the
/// public API: anything here may change or go in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::clock::{epoch_secs, now_secs};
    pub use crate::job::payload::{new_jid, timestamp_secs};
    #[cfg(feature = "server")]
    pub use crate::server::retry::decode_backtrace;
    #[cfg(feature = "server")]
    pub use crate::server::scheduler::enqueue_due;
    #[cfg(feature = "server")]
    pub use crate::server::stats::{STATS_TTL_SECS, utc_date};
}
