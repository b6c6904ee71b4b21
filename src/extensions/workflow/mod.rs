//! Workflows: named graphs of steps, each a job, where a step starts once every step it
//! depends on has succeeded, and reads their results.
//!
//! ```no_run
//! use psychiq::workflow::Workflow;
//! use psychiq::Job;
//! # async fn demo(client: psychiq::Client) -> psychiq::Result<()> {
//! let wid = Workflow::new("etl 2026-12-07")
//!     .step("fetch", Job::new("Etl::Fetch", ("https://example.com",))?)
//!     .step("parse", Job::new("Etl::Parse", ())?)
//!     .after(["fetch"])
//!     .step("notify", Job::new("Etl::Notify", ())?)
//!     .after(["parse"])
//!     .push(&client)
//!     .await?;
//! # let _ = wid; Ok(()) }
//! ```
//!
//! **Exactly once.** A workflow is hashes under `wf:WID` (its steps' jobs, parents,
//! children, states and results). A step's end is one Lua step (`workflow_step.lua`): a
//! success records the result and pushes each child whose every parent has now succeeded,
//! in the same atomic step, so a child starts once and only there; a step that runs twice
//! (a crashed process's job recovered after it had run) changes nothing the second time.
//! The end is counted by the server middleware `WorkflowSteps` before the job is
//! acknowledged, and a death by the farewell every path that ends a job for good shares.
//!
//! **Failure.** What a dead step does is the workflow's (or the step's own) choice
//! ([`OnFailure`]): stop (the default: nothing new starts, waiting steps are skipped, the
//! workflow fails), continue (only what depends on the dead step is skipped), or
//! compensate (stop, and run a named compensation step).
//!
//! **Steps of steps.** A step may be a whole workflow ([`Workflow::sub_workflow`]) or a
//! batch ([`Workflow::batch_step`]); a failed workflow is retried from its dead and skipped
//! steps ([`crate::api::Api::retry_workflow`]).
//!
//! **Inside a step**, `inputs` gives the results of the steps it depends on (a [`crate::Task`]'s
//! output is its result), and `add_step` adds steps while the workflow runs (a step that
//! discovers work fans out after itself).
//!
//! A step discarded or skipped unrun (an expired job, `JobError::discard`, a middleware's
//! skip) ends its workflow's way as a dead one does. Workflows need Sidekiq's layout (one
//! Redis); the cluster layout refuses them. Their keys expire 30 days after the workflow
//! was pushed (those made later with it). The graph's rules are Lua, in
//! `store/scripts/workflow_common.lua`.

mod builder;
#[cfg(feature = "server")]
mod inside;
#[cfg(feature = "server")]
mod steps;

use std::time::Duration;

#[cfg(feature = "server")]
pub(crate) use builder::workflow_key;
pub use builder::{OnFailure, Workflow};
#[cfg(feature = "server")]
pub use inside::{add_step, current, input, inputs};
#[cfg(feature = "server")]
pub use steps::WorkflowSteps;
#[cfg(feature = "server")]
pub(crate) use steps::{BatchStepEnd, step_end_args};

/// How long a workflow's keys live after it was pushed.
pub const WORKFLOW_TTL: Duration = Duration::from_secs(30 * 86_400);

/// The sorted set of workflow ids by when they were pushed.
pub(crate) const WORKFLOWS: &str = "workflows";

/// The class of the job a batch step's batch pushes when it succeeds or dies: it ends the
/// step (every Psychiq server runs it; see `WorkflowSteps`).
pub const BATCH_STEP_CLASS: &str = "Psychiq::WorkflowBatchStep";

/// The payload fields a step carries (Sidekiq ignores them).
pub(crate) const WORKFLOW_FIELD: &str = "wf";
pub(crate) const STEP_FIELD: &str = "wf_step";
