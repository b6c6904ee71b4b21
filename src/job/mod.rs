//! What a job is: its payload on the wire and the builder that writes it, the worker trait,
//! why a job failed, the context a running job sees, the middleware seam and its outcomes,
//! what makes two jobs the same (unique) and a rate limit as an option, Rails' ActiveJob
//! envelope, and how a job's bytes are shown.

pub mod active_job;
pub(crate) mod builder;
pub mod context;
pub(crate) mod debounce;
pub mod encryption;
pub(crate) mod failure;
pub mod job_events;
pub(crate) mod limit;
pub mod middleware;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub(crate) mod payload;
pub mod status;
pub(crate) mod text;
pub(crate) mod unique;
pub(crate) mod unwind;
pub(crate) mod worker;
