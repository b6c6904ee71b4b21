//! Lifecycle events and failure handlers: async hooks a host app registers on a [`Server`].
//!
//! Events fire in this order: [`Event::Startup`] (registered, before the first fetch),
//! [`Event::Heartbeat`] after every beat, [`Event::Quiet`] when fetching stops (TSTP, a
//! remote quiet, or the first step of a stop), [`Event::Shutdown`] when the stop begins,
//! before running jobs finish, and [`Event::Stopped`] after they have finished (or were
//! pushed back), just before the server returns. Error handlers run on every failed run,
//! after the failure is written, death handlers when a job goes to the dead set; each gets
//! the job as written and the error. A hook that panics is logged and the server goes on;
//! one that takes longer than 10 s is left behind (logged), so none can hold up a stop.
//! Heartbeat hooks run beside the beat, never delaying it.
//!
//! ```no_run
//! use psychiq::events::Event;
//! # async fn demo() -> psychiq::Result<()> {
//! let mut server = psychiq::Server::new(Default::default(), psychiq::Registry::new());
//! server.on(Event::Startup, || async { println!("jobs server up") });
//! server.on_death(|job| async move {
//!     eprintln!("{} died: {}", job.class(), job.error);
//! });
//! server.run().await
//! # }
//! ```
//!
//! [`Server`]: crate::Server

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use crate::job::failure::JobError;
use crate::job::middleware::BoxFuture;
use crate::job::payload::JobMap;

/// A moment in a server's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// Registered in Redis; about to fetch the first jobs.
    Startup,
    /// No more jobs are fetched (TSTP, a remote quiet, or a stop).
    Quiet,
    /// Stopping: running jobs are given the shutdown timeout to finish.
    Shutdown,
    /// Running jobs have finished or were pushed back; the server is about to return.
    Stopped,
    /// A heartbeat was written (every 5 s).
    Heartbeat,
}

/// A failed job, as handed to error and death handlers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FailedJob {
    /// The payload as written to the retry or dead set (with `error_message`,
    /// `retry_count`, ...); for a job that could not be read, the wrapper stored for it.
    pub payload: JobMap,
    /// What went wrong.
    pub error: JobError,
    /// The queue it was fetched from.
    pub queue: String,
    /// Whether it went to the dead set (else it will be retried, or was dropped).
    pub dead: bool,
    /// Whether it was dropped: it will not run again and is kept nowhere (`retry: false`,
    /// or retries exhausted with `dead: false`, when the payload has `discarded_at`). The
    /// death handlers hear of it, as Sidekiq's do.
    pub dropped: bool,
}

impl FailedJob {
    /// The payload's `class`.
    pub fn class(&self) -> &str {
        self.payload
            .get("class")
            .and_then(|c| c.as_str())
            .unwrap_or("")
    }

    /// The payload's `jid`.
    pub fn jid(&self) -> &str {
        self.payload
            .get("jid")
            .and_then(|c| c.as_str())
            .unwrap_or("")
    }
}

type EventHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;
type FailureHook = Arc<dyn Fn(Arc<FailedJob>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Every hook a server was given.
#[derive(Default, Clone)]
pub(crate) struct Hooks {
    events: Vec<(Event, EventHook)>,
    errors: Vec<FailureHook>,
    deaths: Vec<FailureHook>,
}

impl Hooks {
    pub fn on<F, Fut>(&mut self, event: Event, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.events
            .push((event, Arc::new(move || Box::pin(hook()))));
    }

    pub fn on_error<F, Fut>(&mut self, hook: F)
    where
        F: Fn(Arc<FailedJob>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.errors.push(Arc::new(move |job| Box::pin(hook(job))));
    }

    pub fn on_death<F, Fut>(&mut self, hook: F)
    where
        F: Fn(Arc<FailedJob>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.deaths.push(Arc::new(move |job| Box::pin(hook(job))));
    }

    /// Whether any hook waits for `event` (else firing it need not even spawn a task).
    pub fn wants(&self, event: Event) -> bool {
        self.events.iter().any(|(e, _)| *e == event)
    }

    /// Whether any failure handler is registered (else no `FailedJob` is built).
    pub fn wants_failures(&self) -> bool {
        !self.errors.is_empty() || !self.deaths.is_empty()
    }

    /// Runs the hooks for `event`, in the order they were registered.
    pub async fn fire(&self, event: Event) {
        for (_, hook) in self.events.iter().filter(|(e, _)| *e == event) {
            guarded("event hook", || hook()).await;
        }
    }

    /// Runs the error handlers, then (if it will not run again) the death handlers.
    pub async fn failed(&self, job: FailedJob) {
        let job = Arc::new(job);
        for hook in &self.errors {
            guarded("error handler", || hook(Arc::clone(&job))).await;
        }
        if job.dead || job.dropped {
            for hook in &self.deaths {
                guarded("death handler", || hook(Arc::clone(&job))).await;
            }
        }
    }
}

/// Longest a hook may run before the server goes on without it.
const HOOK_LIMIT: Duration = Duration::from_secs(10);

/// Runs a hook, logging a panic (also one before its future exists) instead of unwinding
/// into the server, and leaving it behind after [`HOOK_LIMIT`].
async fn guarded(what: &'static str, hook: impl FnOnce() -> BoxFuture<'static, ()>) {
    let run = Box::pin(async move { hook().await });
    let caught = tokio::time::timeout(
        HOOK_LIMIT,
        crate::job::unwind::CatchUnwind::new(AssertUnwindSafe(run)),
    )
    .await;
    match caught {
        Ok(Ok(())) => {}
        Ok(Err(_)) => tracing::error!("{what} panicked; the server goes on"),
        Err(_) => {
            tracing::error!("{what} ran longer than {HOOK_LIMIT:?}; the server goes on without it")
        }
    }
}
