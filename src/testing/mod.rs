//! Test mode: test your own job code without Redis, as `Sidekiq::Testing` and
//! `Oban.Testing` let Ruby and Elixir teams do.
//!
//! Two modes, each a [`Client`] of the ordinary type, so the code under test needs no
//! changes and tests stay independent (there is no process-wide switch: every test makes
//! its own, so tests run in parallel):
//!
//! - [`Fake`] records what is pushed. A test inspects it ([`Fake::jobs`], by worker, class
//!   or queue; [`Fake::assert_enqueued`]), clears it, and performs it with
//!   [`Fake::drain`]: through the same registry, server middleware and outcome rules as a
//!   real server, including jobs that jobs enqueue. A failure comes back to the test with
//!   its error and the job waits in [`Fake::retries`], rewritten as the server would
//!   (`retry_count`, `error_message`); [`Fake::retry_all`] runs it again by hand.
//!   The extensions run too: a [`crate::batch::Batch`] pushed with the fake's client fires
//!   its callbacks during the drain; iterable jobs walk with their cursors in memory
//!   ([`Fake::steps_per_run`], [`Fake::cursor`], [`Fake::cancel_iteration`]); unique jobs
//!   whose twin waits are refused; [`Fake::tick`] pushes a periodic entry's job as its
//!   tick would.
//! - [`inline`] performs each job as it is pushed, in the caller's task, and returns its
//!   result: a job that fails makes the push return [`Error::JobFailed`].
//!
//! ```
//! use psychiq::testing::Fake;
//! use psychiq::{Client, JobResult, Registry, Worker};
//!
//! struct SendWelcome;
//! impl Worker for SendWelcome {
//!     type Args = (u64, String);
//!     async fn perform(&self, (_user, email): Self::Args) -> JobResult {
//!         if !email.contains('@') {
//!             return Err(format!("not an address: {email}").into());
//!         }
//!         Ok(())
//!     }
//! }
//!
//! // The code under test takes an ordinary client.
//! async fn sign_up(client: &Client, user: u64, email: &str) -> psychiq::Result<String> {
//!     client.enqueue::<SendWelcome>((user, email.to_string())).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut registry = Registry::new();
//! registry.register(SendWelcome);
//! let fake = Fake::new(registry);
//!
//! sign_up(&fake.client(), 42, "ada@example.com").await.unwrap();
//! fake.assert_enqueued::<SendWelcome>(&(42, "ada@example.com".to_string()));
//! assert_eq!(fake.jobs_for::<SendWelcome>().len(), 1);
//!
//! let drained = fake.drain().await.unwrap();
//! assert_eq!(drained.performed, 1);
//! assert!(fake.jobs().is_empty());
//!
//! // A failure reaches the test, and the job waits in the retry set.
//! sign_up(&fake.client(), 43, "nobody").await.unwrap();
//! let failed = fake.drain().await.unwrap_err();
//! assert!(failed.error.message().contains("not an address"));
//! assert_eq!(fake.retries()[0].retry_count(), Some(0));
//! # }
//! ```

mod batches;
mod drain;
mod extensions;
mod records;

pub use records::{Drained, EnqueuedJob, JobFailed, WentTo};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, JobStore, Pushed};
use crate::error::{Error, Result};
use crate::job::middleware::{BoxFuture, Outcome, ServerChain};
use crate::job::worker::Worker;
use crate::server::execute::{Executor, Verdict};
use crate::server::registry::Registry;
use crate::server::stats::Stats;

/// A drain that performs this many jobs without emptying the queues stops with a panic:
/// some job keeps enqueueing work (itself, say).
pub const DRAIN_LIMIT: usize = 10_000;

#[derive(Default)]
struct State {
    /// Jobs waiting, due now or later, in the order they were pushed.
    pending: VecDeque<EnqueuedJob>,
    retries: Vec<EnqueuedJob>,
    dead: Vec<EnqueuedJob>,
    batches: batches::Batches,
    /// Tracked jobs' statuses after their last run, by jid (for `JobHandle`s).
    statuses: std::collections::HashMap<String, crate::status::JobStatus>,
}

/// The test mode's store, shared by a [`Fake`] and the clients it hands out.
pub(crate) struct Store {
    executor: Executor,
    inline: bool,
    state: Mutex<State>,
    /// Iterable jobs' cursors, by jid.
    walks: extensions::Walks,
    /// What iterable jobs run with (their cursors in `walks`); `None` when the registry
    /// holds no iterable worker, so other jobs run as they would without it.
    walk_env: Option<Mutex<Arc<crate::iteration::Env>>>,
}

impl Store {
    fn new(registry: Registry, middleware: ServerChain, inline: bool) -> Store {
        let walks = extensions::Walks::default();
        let walk_env = (!registry.iterable_classes().is_empty())
            .then(|| Mutex::new(extensions::walk_env(&walks, None)));
        Store {
            executor: Executor {
                registry: Arc::new(registry),
                job_timeout: None,
                middleware,
                stats: Arc::new(Stats::default()),
                lifecycle: None,
                keyring: None,
            },
            inline,
            state: Mutex::default(),
            walks,
            walk_env,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding it leaves nothing half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records jobs (fake) or performs them now (inline); returns their jids.
    async fn record(&self, jobs: Vec<Pushed>) -> Result<Vec<crate::Push>> {
        let mut jids = Vec::with_capacity(jobs.len());
        for job in jobs {
            // A unique job whose twin is still waiting is not pushed: the twin's jid is the
            // answer, as the lock in Redis gives it.
            if let Some(twin) = self.waiting_twin(&job.payload) {
                jids.push(crate::Push::Duplicate(twin));
                continue;
            }
            // A debounced job whose key's job still waits replaces it, keeping its jid.
            if !self.inline
                && let Some(jid) = self.debounce_into_waiting(&job)
            {
                jids.push(crate::Push::Debounced(jid));
                continue;
            }
            if self.inline {
                let queue: Arc<str> = job.queue.as_str().into();
                let raw: Arc<[u8]> = job.payload.as_bytes().into();
                let verdict = self.execute(&queue, &raw).await;
                let ran = match &verdict {
                    Verdict::Ran { job, .. } => job.clone(),
                    Verdict::Unreadable { .. } => None,
                };
                if let Some(error) = failure(verdict) {
                    self.note_end(ran.as_deref(), crate::status::State::Dead, Some(&error));
                    return Err(Error::JobFailed {
                        jid: job.jid,
                        error: Box::new(error),
                    });
                }
                self.note_end(ran.as_deref(), crate::status::State::Succeeded, None);
            } else {
                let recorded = EnqueuedJob::new(job.payload, &job.queue, job.at);
                self.state().pending.push_back(recorded);
            }
            jids.push(crate::Push::Pushed(job.jid));
        }
        Ok(jids)
    }

    /// Records how a tracked job's run ended (`state`, and its output or `error`), as a
    /// server's status would, for [`crate::JobHandle`]s of a test-mode client.
    pub(super) fn note_end(
        &self,
        job: Option<&crate::context::JobContext>,
        state: crate::status::State,
        error: Option<&crate::JobError>,
    ) {
        let Some(job) = job.filter(|j| j.tracked_for().is_some()) else {
            return;
        };
        let mut status = crate::status::JobStatus::bare(job.jid(), state, true);
        status.class = Some(job.class().to_string());
        status.queue = Some(job.queue().to_string());
        status.error = error.map(|e| format!("{}: {}", e.class(), e.message()));
        if state == crate::status::State::Succeeded {
            status.result = Some(job.signals().output().unwrap_or("null").to_string());
        }
        self.state().statuses.insert(job.jid().to_string(), status);
    }

    /// Puts debounced job `job` in the place of the waiting job with its debounce key, with
    /// that job's jid, and returns it; `None` if no job waits with its key.
    fn debounce_into_waiting(&self, job: &Pushed) -> Option<String> {
        let field = crate::job::debounce::DEBOUNCE_FIELD;
        if !job.payload.contains(&format!("\"{field}\"")) {
            return None;
        }
        let fields: crate::job::payload::JobMap = serde_json::from_str(&job.payload).ok()?;
        let key = fields.get(field)?.as_str()?;
        let mut state = self.state();
        let place = state
            .pending
            .iter()
            .position(|waiting| waiting.field(field).and_then(Value::as_str) == Some(key))?;
        let jid = state.pending[place].jid().to_string();
        let payload = job.payload.replacen(
            &format!("\"jid\":\"{}\"", job.jid),
            &format!("\"jid\":\"{jid}\""),
            1,
        );
        state.pending[place] = EnqueuedJob::new(payload, &job.queue, job.at);
        Some(jid)
    }

    /// The jid of a waiting job with the same `unique_key` as `payload`, if it has one.
    fn waiting_twin(&self, payload: &str) -> Option<String> {
        if !payload.contains("\"unique_key\"") {
            return None;
        }
        let fields: crate::job::payload::JobMap = serde_json::from_str(payload).ok()?;
        let key = fields.get("unique_key")?.as_str()?;
        self.state()
            .pending
            .iter()
            .find(|waiting| waiting.field("unique_key").and_then(Value::as_str) == Some(key))
            .map(|twin| twin.jid().to_string())
    }
}

/// The test mode stands in for Redis behind an ordinary client.
impl JobStore for Store {
    fn push(&self, jobs: Vec<Pushed>) -> BoxFuture<'_, Result<Vec<crate::Push>>> {
        Box::pin(self.record(jobs))
    }
    fn create_batch(&self, batch: crate::client::NewBatch<'_>) -> Result<()> {
        self.record_batch(batch)
    }
    fn add_to_batch(&self, bid: &str, jobs: Vec<Pushed>) -> Result<()> {
        self.record_in_batch(bid, jobs)
    }
    fn status(&self, jid: &str) -> Option<crate::status::JobStatus> {
        self.state().statuses.get(jid).cloned()
    }
}

/// The failure in a verdict, if it is one.
fn failure(verdict: Verdict<'_>) -> Option<crate::JobError> {
    match verdict {
        Verdict::Ran {
            outcome: Outcome::Failed(error),
            ..
        } => Some(error),
        Verdict::Ran { .. } => None,
        Verdict::Unreadable { reason } => {
            Some(crate::JobError::new("Psychiq::InvalidPayload", reason))
        }
    }
}

/// A client that performs every job as it is pushed, in the caller's task, through
/// `registry` and no middleware. Scheduled jobs run at once too. A push returns the jid
/// when the job succeeded (or snoozed, was discarded or skipped: there is no later here),
/// and [`Error::JobFailed`] with the job's error when it failed.
///
/// ```
/// use psychiq::{JobResult, Registry, Worker};
///
/// struct Add;
/// impl Worker for Add {
///     type Args = (i64, i64);
///     async fn perform(&self, (a, b): Self::Args) -> JobResult {
///         if a + b < 0 { return Err("negative".into()) }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut registry = Registry::new();
/// registry.register(Add);
/// let client = psychiq::testing::inline(registry);
/// assert!(client.enqueue::<Add>((1, 2)).await.is_ok());
/// let err = client.enqueue::<Add>((1, -5)).await.unwrap_err();
/// assert!(err.to_string().contains("negative"), "{err}");
/// # }
/// ```
pub fn inline(registry: Registry) -> Client {
    inline_with(registry, ServerChain::default())
}

/// [`inline`] with server middleware around every job.
pub fn inline_with(registry: Registry, middleware: ServerChain) -> Client {
    Client::in_memory(Arc::new(Store::new(registry, middleware, true)))
}

/// Records pushed jobs in memory and performs them on request. See the [module
/// docs](self).
pub struct Fake {
    store: Arc<Store>,
}

impl Fake {
    /// A fake for the workers of `registry`, with no server middleware.
    pub fn new(registry: Registry) -> Fake {
        Fake::with_middleware(registry, ServerChain::default())
    }

    /// A fake whose drains run every job inside `middleware`, as a server with that chain.
    ///
    /// ```
    /// use psychiq::middleware::{Next, ServerChain, ServerMiddleware};
    /// use psychiq::{context::JobContext, JobResult, NoArgs, Outcome, Registry, Worker};
    ///
    /// struct Report;
    /// impl Worker for Report {
    ///     type Args = NoArgs;
    ///     async fn perform(&self, _: NoArgs) -> JobResult { panic!("not run: skipped") }
    /// }
    ///
    /// struct Maintenance;
    /// impl ServerMiddleware for Maintenance {
    ///     async fn call(&self, _: &JobContext, _: Next<'_>) -> Outcome {
    ///         Outcome::Skipped("maintenance".into())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> psychiq::Result<()> {
    /// let mut chain = ServerChain::default();
    /// chain.add(Maintenance);
    /// let mut registry = Registry::new();
    /// registry.register(Report);
    /// let fake = psychiq::testing::Fake::with_middleware(registry, chain);
    /// fake.client().enqueue::<Report>(NoArgs).await?;
    /// assert_eq!(fake.drain().await.unwrap().skipped, 1);
    /// # Ok(()) }
    /// ```
    pub fn with_middleware(registry: Registry, middleware: ServerChain) -> Fake {
        Fake {
            store: Arc::new(Store::new(registry, middleware, false)),
        }
    }

    /// A client whose pushes this fake records. Give it to the code under test (and to
    /// workers that enqueue). Client middleware added to it runs as usual.
    pub fn client(&self) -> Client {
        Client::in_memory(self.store.clone())
    }

    /// Every job waiting (due now or scheduled for later), in the order pushed.
    pub fn jobs(&self) -> Vec<EnqueuedJob> {
        self.store.state().pending.iter().cloned().collect()
    }

    /// The waiting jobs of worker `W`.
    pub fn jobs_for<W: Worker>(&self) -> Vec<EnqueuedJob> {
        self.jobs_of_class(&W::class_name())
    }

    /// The waiting jobs whose class is `class`.
    pub fn jobs_of_class(&self, class: &str) -> Vec<EnqueuedJob> {
        self.matching(|job| job.class() == class)
    }

    /// The waiting jobs in `queue`.
    pub fn jobs_in_queue(&self, queue: &str) -> Vec<EnqueuedJob> {
        self.matching(|job| job.queue() == queue)
    }

    /// The waiting jobs for which `predicate` holds.
    pub fn matching(&self, predicate: impl Fn(&EnqueuedJob) -> bool) -> Vec<EnqueuedJob> {
        let state = self.store.state();
        state
            .pending
            .iter()
            .filter(|j| predicate(j))
            .cloned()
            .collect()
    }

    /// Failed jobs waiting to be retried, rewritten as the server writes them.
    pub fn retries(&self) -> Vec<EnqueuedJob> {
        self.store.state().retries.clone()
    }

    /// Jobs that died.
    pub fn dead(&self) -> Vec<EnqueuedJob> {
        self.store.state().dead.clone()
    }

    /// Forgets every job: waiting, retrying and dead.
    pub fn clear(&self) {
        *self.store.state() = State::default();
    }

    /// Forgets the waiting jobs of worker `W`.
    pub fn clear_for<W: Worker>(&self) {
        let class = W::class_name();
        self.store
            .state()
            .pending
            .retain(|job| job.class() != class);
    }

    /// Panics, listing what is waiting, unless a job of `W` with exactly these arguments
    /// is waiting.
    pub fn assert_enqueued<W: Worker>(&self, args: &W::Args) {
        self.assert_enqueued_class(&W::class_name(), args);
    }

    /// Panics, listing what is waiting, unless a job of `class` whose `args` equal
    /// `args` (as JSON) is waiting.
    pub fn assert_enqueued_class(&self, class: &str, args: impl Serialize) {
        let wanted = serde_json::to_value(args).expect("arguments serialise to JSON");
        // As `Job::new` writes them: `()` is `[]`, a struct or map the one argument.
        let wanted = match wanted {
            Value::Null => Value::Array(Vec::new()),
            Value::Object(_) => Value::Array(vec![wanted]),
            other => other,
        };
        let jobs = self.jobs();
        if !jobs
            .iter()
            .any(|job| job.class() == class && *job.args_json() == wanted)
        {
            panic!(
                "no {class} job with args {wanted} is enqueued; waiting: {}",
                listing(&jobs)
            );
        }
    }

    /// Panics, listing them, if any job of `W` is waiting.
    pub fn refute_enqueued<W: Worker>(&self) {
        let jobs = self.jobs_for::<W>();
        if !jobs.is_empty() {
            panic!(
                "expected no {} job, found {}: {}",
                W::class_name(),
                jobs.len(),
                listing(&jobs)
            );
        }
    }
}

/// The jobs, one per line, for an assertion's message.
fn listing(jobs: &[EnqueuedJob]) -> String {
    if jobs.is_empty() {
        return "none".to_string();
    }
    jobs.iter()
        .map(|job| {
            format!(
                "\n  {} {} in {:?}",
                job.class(),
                job.args_json(),
                job.queue()
            )
        })
        .collect()
}
