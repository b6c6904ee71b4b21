//! Extensions: what Sidekiq Pro and Enterprise charge for, built on the public seam
//! ([`crate::job::middleware`] and [`crate::plugins`]) rather than inside the processor, so a
//! server that does not use one pays nothing for it.
//!
//! - [`Expiry`]: jobs that expire (`expires_in`), discarded unrun once too late.
//! - Unique jobs (`unique_for`): a push while the same job is pending returns the pending
//!   job's jid and writes nothing. The client takes the lock in the same atomic step that
//!   writes the job; [`UniqueUnlock`], a server middleware, lets it go ([`UniqueUntil`]).
//! - [`periodic`]: cron-style periodic jobs, each tick enqueued once across every process
//!   (a plugin, added when the registry declares entries).
//! - [`batch`]: groups of jobs with callbacks on complete, success and death, nested,
//!   counted by the [`batch::BatchCounter`] middleware.
//! - [`workflow`]: graphs of steps, each starting once when all it depends on succeeded,
//!   reading their results, counted by the [`workflow::WorkflowSteps`] middleware.
//! - [`iteration`]: iterable jobs that walk a collection in steps and resume from a saved
//!   cursor after a deploy or a crash.
//! - [`limits`]: rate limits shared by every process (concurrent, windows, buckets), in
//!   `perform` or as a worker option run by the [`limits::RateLimit`] middleware.
//! - Groups (`Job::group`): per-key concurrency across the fleet with groups taken in
//!   turn, routed and taken by the fetch script; [`GroupSlots`], a server middleware,
//!   keeps a running job's slot and gives it up.
//! - Queue pause is the one that is not a middleware or a plugin: a pause must hold from
//!   the very next fetch of every process and cost nothing while no queue is paused, which
//!   only the fetch script's own atomic step can do (a plugin polling the `paused` set
//!   would add commands to every idle server and still lag). It lives in `fetch.rs`; the
//!   API ([`crate::api::Api::pause_queue`]), `psychiq queues pause` and the dashboard
//!   steer it.
//!
//! Every server obeys a job's own fields (`expires_at`, `unique_key`, `bid`) without being
//! told; a job without them passes each check with a substring search of its payload.

pub mod batch;
#[cfg(feature = "periodic")]
pub(crate) mod cron;
#[cfg(feature = "server")]
mod expiry;
#[cfg(feature = "server")]
mod groups;
pub mod iteration;
pub mod limits;
#[cfg(feature = "periodic")]
pub mod periodic;
pub(crate) mod unique;
pub mod workflow;

pub use crate::job::unique::UniqueUntil;
#[cfg(feature = "server")]
pub use expiry::Expiry;
#[cfg(feature = "server")]
pub use groups::GroupSlots;
#[cfg(feature = "api")]
pub use unique::UniqueLock;
#[cfg(feature = "server")]
pub use unique::UniqueUnlock;
