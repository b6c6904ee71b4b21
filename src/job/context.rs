//! The job being run: what a worker and the server middleware can read about it.
//!
//! Inside `perform` (and anything it awaits in the same task), [`current`] gives the running
//! job's [`JobContext`]: its jid, queue, class, retry count, when it was enqueued, and any
//! payload field, including ones Psychiq does not know (`tags`, `bid`, a `tenant_id` a
//! client middleware added). Simple workers need not look at it.
//!
//! ```
//! use psychiq::{JobResult, NoArgs, Worker};
//!
//! struct ChargeCard;
//!
//! impl Worker for ChargeCard {
//!     type Args = (u64,);
//!     async fn perform(&self, (order,): Self::Args) -> JobResult {
//!         let job = psychiq::context::current().expect("inside a job");
//!         // Key the side effect by the jid, so a second run is a no-op.
//!         println!("charging order {order} once, as {}", job.jid());
//!         Ok(())
//!     }
//! }
//! ```

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::job::active_job::ActiveJob;
use crate::job::payload::{self, JobMap};
use crate::job::status::Progress;

tokio::task_local! {
    static CURRENT: Arc<JobContext>;
}

/// The running job's context, inside `perform` and what it awaits in the same task; `None`
/// elsewhere (a task the job spawned does not inherit it: pass it along).
pub fn current() -> Option<Arc<JobContext>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Tells how far the running job is: `done` of `total` units (0 if unknown), and what it is
/// doing. Shown on the dashboard's Busy page, in the job's status and in the event
/// stream. Call it as often as you like: it is written at most twice a second (the last
/// value always), so a tight loop cannot flood Redis. Does nothing outside a job.
///
/// ```
/// use psychiq::{JobResult, Worker};
/// struct Import;
/// impl Worker for Import {
///     type Args = (Vec<String>,);
///     async fn perform(&self, (rows,): Self::Args) -> JobResult {
///         for (i, row) in rows.iter().enumerate() {
///             // … import `row` …
///             psychiq::context::progress(i as u64 + 1, rows.len() as u64, "importing");
///         }
///         Ok(())
///     }
/// }
/// ```
pub fn progress(done: u64, total: u64, message: impl Into<String>) {
    if let Some(job) = current() {
        job.progress(done, total, message);
    }
}

/// Resolves when the running job is cancelled (`psychiq cancel JID`, the dashboard's
/// Cancel button, [`crate::api::Api::cancel`]); never outside a job. Select on it to stop
/// cleanly: after the server's grace period (`--cancel-grace`, 10 s by default) the job's
/// task is dropped wherever it is.
///
/// ```
/// use psychiq::{JobResult, NoArgs, Worker};
/// struct Crawl;
/// impl Worker for Crawl {
///     type Args = NoArgs;
///     async fn perform(&self, _: NoArgs) -> JobResult {
///         tokio::select! {
///             _ = psychiq::context::cancelled() => println!("stopping cleanly"),
///             _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
///         }
///         Ok(())
///     }
/// }
/// ```
pub async fn cancelled() {
    match current() {
        Some(job) => job.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Whether the running job has been cancelled (`false` outside a job).
pub fn is_cancelled() -> bool {
    current().is_some_and(|job| job.is_cancelled())
}

/// The least time between two progress writes of one job.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Where a job's progress goes: the server's writer (Redis), or nowhere in the test mode.
pub(crate) trait Reporter: Send + Sync {
    /// Writes `progress` of `job` (already throttled).
    fn progress(&self, job: &JobContext, progress: &Progress);
}

/// What a running job shares with the server beyond its payload: whether it was
/// cancelled, its output, and its progress. One per run.
#[derive(Default)]
pub(crate) struct Signals {
    cancelled: AtomicBool,
    /// Wakes what awaits [`cancelled`] (the job's own code).
    wake: tokio::sync::Notify,
    /// Wakes the task running the job (the server's grace period starts).
    task: futures_util::task::AtomicWaker,
    output: OnceLock<String>,
    /// Whether progress was ever reported (so a job that reports none takes no lock).
    reported: AtomicBool,
    progress: Mutex<ProgressCell>,
    reporter: Option<Arc<dyn Reporter>>,
}

/// A job's latest progress and when it was last written.
#[derive(Default)]
struct ProgressCell {
    latest: Option<Progress>,
    written_at: Option<Instant>,
    /// The latest value was not written yet (throttled).
    unwritten: bool,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Signals {
    /// Signals whose progress goes to `reporter`.
    pub(crate) fn reporting_to(reporter: Option<Arc<dyn Reporter>>) -> Signals {
        Signals {
            reporter,
            ..Signals::default()
        }
    }

    /// Cancels the job: [`cancelled`] resolves, [`is_cancelled`] turns true, and the task
    /// running it is woken.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        self.task.wake();
    }

    /// Wakes the task polling through `waker` when the job is cancelled.
    pub(crate) fn wake_on_cancel(&self, waker: &std::task::Waker) {
        self.task.register(waker);
    }

    /// Ready for the next job, if nothing else holds these signals (`&mut`): as new,
    /// reporting to the same place, without an allocation.
    pub(crate) fn reset(&mut self) {
        *self = Signals::reporting_to(self.reporter.take());
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub(crate) async fn cancelled(&self) {
        loop {
            let woken = self.wake.notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            woken.await;
        }
    }

    /// The output the job set, as JSON.
    pub(crate) fn output(&self) -> Option<&str> {
        self.output.get().map(String::as_str)
    }

    /// The latest progress and whether it is still to be written.
    pub(crate) fn last_progress(&self) -> (Option<Progress>, bool) {
        if !self.reported.load(Ordering::Relaxed) {
            return (None, false);
        }
        let cell = self.progress.lock().expect("progress lock");
        (cell.latest.clone(), cell.unwritten)
    }
}

/// Runs `future` with `context` as the [`current`] job.
pub(crate) async fn scope<F: Future>(context: Arc<JobContext>, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// One job as it is run: the payload as stored and the fields a server reads from it.
#[derive(Debug)]
pub struct JobContext {
    raw: Arc<[u8]>,
    queue: Arc<str>,
    class: Box<str>,
    jid: Box<str>,
    /// Where `args` is in `raw`.
    args: Range<usize>,
    /// Every field, parsed when first asked for.
    fields: OnceLock<JobMap>,
    /// The ActiveJob record of a job a Rails app enqueued.
    active_job: Option<Box<ActiveJob>>,
    /// Cancellation, output and progress, shared with the server.
    signals: Arc<Signals>,
    /// The retention of a tracked job's status, in seconds; unset if it is not tracked.
    tracked: OnceLock<u64>,
}

impl JobContext {
    /// A context for the payload `raw` (UTF-8, already read for its class, jid and args).
    pub(crate) fn new(
        raw: Arc<[u8]>,
        queue: Arc<str>,
        class: &str,
        jid: &str,
        args: &str,
    ) -> JobContext {
        // `args` is a slice of `raw` (serde's RawValue borrows it).
        let start = (args.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
        let args = if start <= raw.len() && start + args.len() <= raw.len() {
            start..start + args.len()
        } else {
            0..0
        };
        JobContext {
            raw,
            queue,
            class: class.into(),
            jid: jid.into(),
            args,
            fields: OnceLock::new(),
            active_job: None,
            signals: Arc::default(),
            tracked: OnceLock::new(),
        }
    }

    /// The same context sharing `signals` with the server.
    pub(crate) fn with_signals(mut self, signals: Arc<Signals>) -> JobContext {
        self.signals = signals;
        self
    }

    /// Tracks this job's status for `secs` seconds (set once, before it runs).
    pub(crate) fn track(&self, secs: u64) {
        let _ = self.tracked.set(secs);
    }

    /// Its signals (cancellation, output, progress).
    pub(crate) fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }

    /// How long its status is kept, in seconds, if it is tracked.
    pub fn tracked_for(&self) -> Option<Duration> {
        self.tracked.get().copied().map(Duration::from_secs)
    }

    /// Whether this job has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.signals.is_cancelled()
    }

    /// Resolves when this job is cancelled (see [`cancelled`]).
    pub async fn cancelled(&self) {
        self.signals.cancelled().await
    }

    /// Reports this job's progress (see [`progress`]).
    pub fn progress(&self, done: u64, total: u64, message: impl Into<String>) {
        let progress = Progress {
            done,
            total,
            message: message.into(),
        };
        self.signals.reported.store(true, Ordering::Relaxed);
        let due = {
            let mut cell = self.signals.progress.lock().expect("progress lock");
            let due = cell
                .written_at
                .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
            if due {
                cell.written_at = Some(Instant::now());
            }
            cell.unwritten = !due;
            cell.latest = Some(progress.clone());
            due
        };
        if due && let Some(reporter) = &self.signals.reporter {
            reporter.progress(self, &progress);
        }
    }

    /// Records the job's output (JSON), which a tracked job's status keeps as its result.
    /// The first value set stays.
    pub(crate) fn set_output(&self, json: String) {
        let _ = self.signals.output.set(json);
    }

    /// The context of a job a Rails app enqueued: its class and arguments are ActiveJob's.
    pub(crate) fn with_active_job(mut self, active_job: ActiveJob) -> JobContext {
        self.active_job = Some(Box::new(active_job));
        self
    }

    /// The `class` field: which worker runs it (for a job a Rails app enqueued, the
    /// ActiveJob class, not the wrapper).
    pub fn class(&self) -> &str {
        match &self.active_job {
            Some(active_job) => active_job.job_class(),
            None => &self.class,
        }
    }

    /// The job id (empty if the payload has none). Key side effects by it: a job can run
    /// twice (see the README's Guarantees).
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The queue it was fetched from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The `args` array as JSON text, exactly as stored; for a job a Rails app enqueued,
    /// the ActiveJob arguments as the worker received them.
    pub fn args(&self) -> &str {
        if let Some(active_job) = &self.active_job {
            return active_job.arguments();
        }
        std::str::from_utf8(&self.raw[self.args.clone()]).unwrap_or("[]")
    }

    /// ActiveJob's record (`job_id`, `executions`, `locale`, …) of a job a Rails app
    /// enqueued with `perform_later`; `None` for any other job. See [`crate::job::active_job`].
    pub fn active_job(&self) -> Option<&ActiveJob> {
        self.active_job.as_deref()
    }

    /// The whole payload as stored.
    pub fn payload(&self) -> &str {
        std::str::from_utf8(&self.raw).unwrap_or("")
    }

    /// Any payload field, e.g. `tags`, `bid` or one a client middleware added.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields
            .get_or_init(|| serde_json::from_str(self.payload()).unwrap_or_default())
            .get(name)
    }

    /// Failed attempts before this one, minus one (Sidekiq's `retry_count`); `None` on a
    /// first run.
    pub fn retry_count(&self) -> Option<i64> {
        self.field("retry_count")?.as_i64()
    }

    /// When it was pushed to its queue (float seconds; Sidekiq 8's milliseconds are read).
    pub fn enqueued_at(&self) -> Option<f64> {
        payload::timestamp_secs(self.field("enqueued_at")?)
    }

    /// When it was first created.
    pub fn created_at(&self) -> Option<f64> {
        payload::timestamp_secs(self.field("created_at")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_on_demand() {
        let raw = r#"{"class":"X","args":[1,"a"],"jid":"j","retry_count":2,"tags":["t"],"enqueued_at":1700000000500}"#;
        let raw: Arc<[u8]> = Arc::from(raw.as_bytes());
        let text = std::str::from_utf8(&raw).unwrap();
        let args = &text[text.find("[1").unwrap()..text.find(",\"jid").unwrap()];
        let job = JobContext::new(Arc::clone(&raw), Arc::from("q"), "X", "j", args);
        assert_eq!(job.args(), r#"[1,"a"]"#);
        assert_eq!(job.retry_count(), Some(2));
        assert_eq!(job.field("tags"), Some(&serde_json::json!(["t"])));
        assert_eq!(job.enqueued_at(), Some(1_700_000_000.5));
        assert_eq!(job.field("nope"), None);
    }
}
