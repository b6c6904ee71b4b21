// (The crate's documentation is `lib.md`, beside this file, so it reads as a guide.)
#![doc = include_str!("lib.md")]
#![warn(missing_docs)]
// The always-built modules (payload, connection, context, middleware) hold helpers that only
// the server calls; a client-only build leaves them unused.
#![cfg_attr(not(feature = "server"), allow(dead_code))]

// Always built: what an app that only enqueues needs.
pub mod active_job;
mod client;
mod config;
mod connection;
pub mod context;
mod error;
mod keys;
pub mod middleware;
#[cfg(feature = "opentelemetry")]
pub mod otel;
mod payload;
mod text;
mod unwind;
mod worker;

// `server`: taking and running jobs.
#[cfg(feature = "server")]
mod acks;
#[cfg(feature = "server")]
mod backlog;
#[cfg(feature = "server")]
mod control;
#[cfg(feature = "server")]
mod departure;
#[cfg(feature = "server")]
pub mod events;
pub mod extensions;
#[cfg(feature = "server")]
mod fetch;
#[cfg(feature = "server")]
mod heartbeat;
#[cfg(feature = "server")]
mod launcher;
#[cfg(feature = "server")]
mod manager;
#[cfg(feature = "server")]
pub mod plugins;
#[cfg(feature = "server")]
mod processor;
#[cfg(feature = "server")]
mod recovery;
#[cfg(feature = "server")]
mod retry;
#[cfg(feature = "server")]
mod scheduler;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod signals;
#[cfg(feature = "server")]
mod stats;
#[cfg(feature = "server")]
pub mod testing;
#[cfg(feature = "server")]
mod work;

#[cfg(feature = "cli")]
mod admin;
#[cfg(feature = "api")]
pub mod api;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "command")]
pub mod command;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "cli")]
mod log_stream;
#[cfg(feature = "command")]
mod process_group;
#[cfg(all(feature = "cli", feature = "demo"))]
mod tour;
#[cfg(feature = "web")]
pub mod web;

pub use client::{Client, Job, Push};
pub use config::Config;
pub use connection::{Connection as RedisConnection, RedisConfig};
pub use error::{Error, Result};
#[cfg(feature = "periodic")]
pub use extensions::periodic;
pub use extensions::{batch, iteration, limits};
pub use keys::{Keys, Layout};
pub use middleware::Outcome;
pub use payload::{JobMap, Retry};
pub use worker::{
    Backtrace, JobError, JobFuture, JobResult, NoArgs, RawJob, RawWorker, Registry, Worker,
    WorkerOptions,
};

#[cfg(feature = "server")]
pub use fetch::{FetchMode, QueueSpec};
#[cfg(feature = "server")]
pub use launcher::{RunningJobInfo, ServerHandle};
#[cfg(feature = "server")]
pub use server::{Server, ServerConfig};
#[cfg(feature = "server")]
pub use signals::terminate as shutdown_signal;

/// The README's Rust examples compile as doctests, so the Quickstart cannot rot.
#[cfg(all(doctest, feature = "cli"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Internals that Psychiq's own tests, benchmarks and binaries reach for. Not part of the
/// public API: anything here may change or go in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::payload::{epoch_secs, new_jid, now_secs, timestamp_secs};
    #[cfg(feature = "server")]
    pub use crate::retry::decode_backtrace;
    #[cfg(feature = "server")]
    pub use crate::scheduler::enqueue_due;
    #[cfg(feature = "server")]
    pub use crate::stats::{STATS_TTL_SECS, utc_date};
}
