//! Psychiq: background jobs for Rust on Redis, in Sidekiq's wire format.
//!
//! Define a [`Worker`], enqueue jobs with a [`Client`], run them with a [`Server`]. Jobs
//! are Sidekiq payloads in Sidekiq's keys, so Ruby's Sidekiq can enqueue jobs Psychiq runs,
//! and the other way round.
//!
//! ```no_run
//! use psychiq::{Client, JobResult, RedisConfig, Registry, Server, ServerConfig, Worker};
//!
//! struct SendWelcome;
//!
//! impl Worker for SendWelcome {
//!     type Args = (u64, String);
//!     async fn perform(&self, (user_id, email): Self::Args) -> JobResult {
//!         println!("welcome mail for user {user_id} to {email}");
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> psychiq::Result<()> {
//!     let redis = RedisConfig::from_url("redis://127.0.0.1:6379");
//!     let client = Client::connect(&redis, "psychiq").await?;
//!     client.enqueue::<SendWelcome>((42, "ada@example.com".into())).await?;
//!
//!     let mut registry = Registry::new();
//!     registry.register(SendWelcome);
//!     Server::new(ServerConfig::default().redis(redis), registry).run().await
//! }
//! ```
//!
//! The modules follow the life of a job: [`client`] pushes it, [`fetch`] takes it,
//! `processor` runs it, [`retry`] decides where a failure goes, [`scheduler`] moves due
//! jobs back to their queues, [`stats`] counts, [`server`] ties them together.
#![warn(missing_docs)]

mod acks;
pub mod admin;
pub mod api;
pub mod cli;
pub mod client;
pub mod command;
pub mod connection;
pub mod context;
mod control;
pub mod demo;
pub mod error;
pub mod events;
pub mod fetch;
mod heartbeat;
pub mod keys;
pub mod launcher;
mod manager;
pub mod middleware;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod payload;
pub mod plugins;
mod processor;
pub mod recovery;
pub mod retry;
pub mod scheduler;
pub mod server;
pub mod signals;
pub mod stats;
pub mod testing;
pub mod text;
mod unwind;
pub mod web;
mod work;
pub mod worker;

pub use client::{Client, Job, Push};
pub use connection::RedisConfig;
pub use error::{Error, Result};
pub use fetch::{FetchMode, QueueSpec};
pub use keys::Keys;
pub use launcher::ServerHandle;
pub use middleware::Outcome;
pub use payload::Retry;
pub use server::{Server, ServerConfig};
pub use worker::{Backtrace, JobError, JobResult, NoArgs, Registry, Worker, WorkerOptions};
