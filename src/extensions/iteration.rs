//! Iterable jobs, as Sidekiq 7.3's `IterableJob`: a job that walks a collection one step
//! at a time, with its cursor saved in Redis after every step, so that a deploy (TERM) or
//! a crash interrupts it between steps and the next run goes on from the cursor instead of
//! starting again.
//!
//! ```
//! use psychiq::iteration::IterableWorker;
//! use psychiq::{JobError, Registry};
//!
//! /// Re-indexes the rows of a table, a row a step.
//! struct Reindex;
//!
//! impl IterableWorker for Reindex {
//!     type Args = (String,);   // the table
//!     type Cursor = u64;       // the next row
//!     async fn step(&self, (table,): &(String,), row: Option<u64>) -> Result<Option<u64>, JobError> {
//!         let row = row.unwrap_or(0);
//!         // ... re-index `row` of `table` ...
//!         Ok((row + 1 < 10_000).then_some(row + 1))   // None: the walk is done
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.register_iterable(Reindex);
//! ```
//!
//! **A step** processes the element at the cursor (`None`: the first) and returns the
//! cursor of the next one, or `None` when that was the last. After each step the cursor is
//! written to `it:JID` (one Lua call, which also reads whether the job was cancelled), so a
//! crash repeats at most the step that was running.
//!
//! **Interruptions.** When the server stops (TERM), the job ends its current step, saves its
//! cursor and goes back to the schedule at once (a snooze: not a failure, retry count
//! unchanged); so does a run longer than [`IterableWorker::max_run_time`] (5 minutes),
//! letting other jobs through. The next run calls `on_resume` and goes on. A failing step
//! fails the job as usual; its retry resumes from the cursor.
//!
//! **Cancelling** (`Api::cancel_iteration`, `psychiq iterations cancel JID`, the dashboard's
//! Iterations page) takes effect after the running step, or before the first one; the job
//! then ends (`on_cancel`) and is not run again.
//!
//! **Limits.** Keep `max_run_time` below any job timeout (a timeout cancels the run mid-step
//! and counts as a failure). Two runs of one jid at once (a stalled process whose job was
//! recovered) both walk and write the cursor.
//!
//! **Tests.** The test mode's [`Fake`](crate::testing::Fake) runs iterable jobs with their
//! cursors in memory: `Fake::steps_per_run(n)` ends each run after `n` steps as a deploy
//! would, `Fake::cursor(jid)` reads the saved cursor between runs, and
//! `Fake::cancel_iteration(jid)` cancels.
//!
//! **Callbacks**: `on_start` (first run), `on_resume`, `on_stop` (interrupted), `on_cancel`,
//! `on_complete`. The state of a finished job is kept for a day (so a duplicate run does
//! nothing); an unfinished one's for 30 days after its last step.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::job::failure::{JobError, JobResult};
use crate::job::worker::{JobFuture, RawJob, RawWorker, WorkerOptions};
use crate::store::connection::Connection;
use crate::store::keys::Keys;
use crate::store::scripts::ITERATION_SAVE;

/// How long an unfinished iteration's state lives after its last step.
pub(crate) const UNFINISHED_TTL_SECS: u64 = 30 * 86_400;
/// How long a finished one's is kept, so a duplicate run of it does nothing.
const FINISHED_TTL_SECS: u64 = 86_400;

/// A job that walks a collection in steps (see the module docs).
pub trait IterableWorker: Send + Sync + 'static {
    /// The job's arguments.
    type Args: DeserializeOwned + Send + Sync + 'static;
    /// Where the walk is: written to Redis as JSON after each step.
    type Cursor: Serialize + DeserializeOwned + Send + 'static;

    /// The class name jobs are enqueued under (the type's name unless overridden).
    fn class_name() -> String {
        crate::job::worker::short_type_name(std::any::type_name::<Self>()).to_string()
    }

    /// Queue, retries and the rest (the defaults unless overridden; a timeout applies to
    /// each run, not to the whole walk).
    fn options() -> WorkerOptions {
        WorkerOptions::default()
    }

    /// How long one run goes on before the job goes back to the schedule (5 minutes).
    fn max_run_time(&self) -> Duration {
        Duration::from_secs(300)
    }

    /// Processes the element at `cursor` (`None`: the first) and returns the next cursor,
    /// or `None` when the walk is done.
    fn step(
        &self,
        args: &Self::Args,
        cursor: Option<Self::Cursor>,
    ) -> impl Future<Output = Result<Option<Self::Cursor>, JobError>> + Send;

    /// Before the first step of the first run.
    fn on_start(&self, args: &Self::Args) -> impl Future<Output = ()> + Send {
        let _ = args;
        async {}
    }
    /// Before the first step of a later run (after an interruption or a failure).
    fn on_resume(&self, args: &Self::Args) -> impl Future<Output = ()> + Send {
        let _ = args;
        async {}
    }
    /// When a run is interrupted (the server stops, or the run took `max_run_time`).
    fn on_stop(&self, args: &Self::Args) -> impl Future<Output = ()> + Send {
        let _ = args;
        async {}
    }
    /// When the job was cancelled.
    fn on_cancel(&self, args: &Self::Args) -> impl Future<Output = ()> + Send {
        let _ = args;
        async {}
    }
    /// After the last step.
    fn on_complete(&self, args: &Self::Args) -> impl Future<Output = ()> + Send {
        let _ = args;
        async {}
    }
}

/// The key of a job's iteration state.
pub(crate) fn state_key(keys: &Keys, jid: &str) -> String {
    keys.key(&format!("it:{jid}"))
}

/// The index of iterations by last step (jid → epoch seconds).
pub(crate) fn index_key(keys: &Keys) -> String {
    keys.key("iterations")
}

/// What the running server (or the test mode) gives iterable jobs: where cursors are kept
/// and whether it is stopping.
pub(crate) struct Env {
    pub cursors: Cursors,
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// A run ends after this many steps (the test mode's stepping); `None`: by time only.
    pub steps_per_run: Option<usize>,
}

/// Where walks keep their state.
pub(crate) enum Cursors {
    /// In Redis, under `it:JID`, indexed in `iterations`.
    Redis { conn: Connection, keys: Keys },
    /// In the test mode's memory, by jid.
    #[cfg(feature = "server")]
    Memory(Arc<std::sync::Mutex<std::collections::HashMap<String, Walked>>>),
}

/// A walk's state as the test mode keeps it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Walked {
    /// The saved cursor, as JSON.
    pub cursor: Option<String>,
    pub cancelled: bool,
    pub done: bool,
}

/// What a run reads before its first step.
struct Saved {
    cursor: Option<String>,
    cancelled: bool,
    done: bool,
}

impl Cursors {
    async fn read(&self, jid: &str) -> Result<Saved, JobError> {
        match self {
            Cursors::Redis { conn, keys } => {
                let key = state_key(keys, jid);
                let (cursor, cancelled, done): (Option<String>, Option<String>, Option<String>) =
                    on_state(|| {
                        let mut conn = conn.clone();
                        let read = redis::cmd("HMGET")
                            .arg(&key)
                            .arg("c")
                            .arg("cancelled")
                            .arg("done")
                            .clone();
                        async move { read.query_async(&mut conn).await }
                    })
                    .await?;
                Ok(Saved {
                    cursor,
                    cancelled: cancelled.is_some(),
                    done: done.is_some(),
                })
            }
            #[cfg(feature = "server")]
            Cursors::Memory(walks) => {
                let walks = walks.lock().unwrap_or_else(|e| e.into_inner());
                let walked = walks.get(jid).cloned().unwrap_or_default();
                Ok(Saved {
                    cursor: walked.cursor,
                    cancelled: walked.cancelled,
                    done: walked.done,
                })
            }
        }
    }

    /// Saves the cursor after a step; whether the job was cancelled meanwhile.
    async fn save(&self, jid: &str, json: &str) -> Result<bool, JobError> {
        match self {
            Cursors::Redis { conn, keys } => {
                static SCRIPT: std::sync::LazyLock<redis::Script> =
                    std::sync::LazyLock::new(|| redis::Script::new(ITERATION_SAVE));
                let key = state_key(keys, jid);
                let saved_at = crate::clock::now_secs();
                let cancelled: String = on_state(|| {
                    let mut conn = conn.clone();
                    let mut invocation = SCRIPT.key(&key);
                    invocation
                        .key(index_key(keys))
                        .arg(json)
                        .arg(saved_at)
                        .arg(jid)
                        .arg(UNFINISHED_TTL_SECS);
                    async move { invocation.invoke_async(&mut conn).await }
                })
                .await?;
                Ok(!cancelled.is_empty())
            }
            #[cfg(feature = "server")]
            Cursors::Memory(walks) => {
                let mut walks = walks.lock().unwrap_or_else(|e| e.into_inner());
                let walked = walks.entry(jid.to_string()).or_default();
                walked.cursor = Some(json.to_string());
                Ok(walked.cancelled)
            }
        }
    }

    /// Marks the walk done (finished or cancelled), so a duplicate run does nothing.
    async fn finish(&self, jid: &str) -> Result<(), JobError> {
        match self {
            Cursors::Redis { conn, keys } => {
                let key = state_key(keys, jid);
                let finished_at = crate::clock::now_secs();
                on_state(|| {
                    let mut conn = conn.clone();
                    let mut done = redis::pipe();
                    done.hset(&key, "done", finished_at)
                        .ignore()
                        .expire(&key, FINISHED_TTL_SECS as i64)
                        .ignore()
                        .zrem(index_key(keys), jid)
                        .ignore();
                    async move { done.query_async(&mut conn).await }
                })
                .await
            }
            #[cfg(feature = "server")]
            Cursors::Memory(walks) => {
                let mut walks = walks.lock().unwrap_or_else(|e| e.into_inner());
                walks.entry(jid.to_string()).or_default().done = true;
                Ok(())
            }
        }
    }
}

/// Runs `job` with `env` as its iterable jobs' environment (the test mode's drains).
#[cfg(feature = "server")]
pub(crate) async fn with_env<T>(env: Arc<Env>, job: impl Future<Output = T>) -> T {
    ENV.scope(env, job).await
}

tokio::task_local! {
    static ENV: Arc<Env>;
}

/// The [`RawWorker`] that runs an [`IterableWorker`].
pub(crate) struct Iterating<W> {
    pub worker: Arc<W>,
    pub options: WorkerOptions,
}

impl<W: IterableWorker> RawWorker for Iterating<W> {
    fn start(&self, job: &RawJob<'_>) -> Result<JobFuture, serde_json::Error> {
        let args: W::Args = crate::job::worker::parse_args(job.args())?;
        let worker = Arc::clone(&self.worker);
        let jid = job.jid().to_string();
        Ok(Box::pin(async move {
            let env = ENV.try_with(Arc::clone).map_err(|_| {
                JobError::new(
                    "Psychiq::IterationUnavailable",
                    "iterable jobs run only on a Psychiq server whose registry holds them",
                )
            })?;
            walk(&*worker, &args, &jid, &env).await
        }))
    }
    fn options(&self) -> &WorkerOptions {
        &self.options
    }
}

fn redis_failure(e: redis::RedisError) -> JobError {
    JobError::new(
        "Psychiq::IterationStateUnavailable",
        format!("could not read or save the iteration's cursor: {e}"),
    )
}

/// Reads or writes the walk's state, waiting out a Redis outage (every one of these is
/// idempotent); an error waiting will not cure fails the job.
async fn on_state<T, Fut>(attempt: impl FnMut() -> Fut) -> Result<T, JobError>
where
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let mut outage = crate::store::outage::Outage::new("iteration state");
    crate::store::outage::until_cured(&mut outage, attempt)
        .await
        .map_err(redis_failure)
}

async fn walk<W: IterableWorker>(worker: &W, args: &W::Args, jid: &str, env: &Env) -> JobResult {
    let saved = env.cursors.read(jid).await?;
    if saved.done {
        return Ok(()); // a duplicate run of a finished walk
    }
    if saved.cancelled {
        return finish_cancelled(worker, args, jid, env).await;
    }
    let mut cursor: Option<W::Cursor> = match &saved.cursor {
        Some(json) => Some(serde_json::from_str(json).map_err(|e| {
            JobError::new(
                "Psychiq::InvalidCursor",
                format!("the saved cursor {json} does not fit: {e}"),
            )
        })?),
        None => None,
    };
    if cursor.is_some() {
        worker.on_resume(args).await;
    } else {
        worker.on_start(args).await;
    }
    let started = tokio::time::Instant::now();
    let slice = worker.max_run_time();
    let mut steps = 0;
    loop {
        let Some(next) = worker.step(args, cursor.take()).await? else {
            env.cursors.finish(jid).await?;
            worker.on_complete(args).await;
            return Ok(());
        };
        steps += 1;
        let json = serde_json::to_string(&next).map_err(|e| {
            JobError::new(
                "Psychiq::InvalidCursor",
                format!("cursor does not serialise: {e}"),
            )
        })?;
        let cancelled = env.cursors.save(jid, &json).await?;
        cursor = Some(next);
        if cancelled {
            return finish_cancelled(worker, args, jid, env).await;
        }
        let slice_over =
            started.elapsed() >= slice || env.steps_per_run.is_some_and(|n| steps >= n);
        if *env.stop.borrow() || slice_over {
            worker.on_stop(args).await;
            // Back to the end of its queue at once, atomically with leaving this process.
            return Err(JobError::requeue());
        }
    }
}

async fn finish_cancelled<W: IterableWorker>(
    worker: &W,
    args: &W::Args,
    jid: &str,
    env: &Env,
) -> JobResult {
    if let Err(e) = env.cursors.finish(jid).await {
        // It is cancelled either way; a later run reads the flag again.
        tracing::warn!(jid, error = %e, "could not record a cancelled iteration as done");
    }
    worker.on_cancel(args).await;
    Ok(())
}

#[cfg(feature = "server")]
pub(crate) use server::IterationSupport;

#[cfg(feature = "server")]
mod server {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::{ENV, Env};
    use crate::Outcome;
    use crate::job::context::JobContext;
    use crate::job::middleware::{Next, ServerMiddleware};

    /// Whether `text` holds `name` as a whole JSON string (`"name"`).
    pub(super) fn names_quoted(text: &str, name: &str) -> bool {
        let bytes = text.as_bytes();
        text.match_indices(name).any(|(at, _)| {
            at > 0 && bytes[at - 1] == b'"' && bytes.get(at + name.len()) == Some(&b'"')
        })
    }

    /// Gives the jobs of iterable classes the server's Redis and its stop signal (added by
    /// the server when the registry holds iterable workers).
    pub(crate) struct IterationSupport {
        pub env: Arc<Env>,
        pub classes: HashSet<String>,
    }

    impl ServerMiddleware for IterationSupport {
        /// Only payloads naming an iterable class (as `class`, or an ActiveJob's
        /// `job_class`): other jobs skip the chain, and the payload is not parsed for them.
        fn wants(&self, payload: &str) -> bool {
            self.classes
                .iter()
                .any(|class| names_quoted(payload, class))
        }

        async fn call(&self, job: &JobContext, next: Next<'_>) -> Outcome {
            if !self.classes.contains(job.class()) {
                return next.run().await;
            }
            ENV.scope(Arc::clone(&self.env), next.run()).await
        }
    }
}

/// A job's iteration as the API reads it.
#[cfg(feature = "api")]
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct IterationStatus {
    /// The job's jid.
    pub jid: String,
    /// The saved cursor (JSON), if a step has run.
    pub cursor: Option<String>,
    /// When the last step was saved (epoch seconds).
    pub updated_at: f64,
    /// Whether it has been cancelled.
    pub cancelled: bool,
    /// Why its state could not be read (its key holds another type of value), naming it.
    pub unreadable: Option<String>,
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::server::names_quoted;

    #[test]
    fn only_a_whole_quoted_class_name_asks_for_the_iteration_middleware() {
        assert!(names_quoted(r#"{"class":"Walk","args":[]}"#, "Walk"));
        // An ActiveJob's class is in its arguments, quoted too.
        assert!(names_quoted(
            r#"{"class":"JobWrapper","args":[{"job_class":"Walk"}]}"#,
            "Walk"
        ));
        assert!(!names_quoted(
            r#"{"class":"Walker","args":["Walk it"]}"#,
            "Walk"
        ));
        assert!(!names_quoted(r#"Walk"#, "Walk"));
    }
}
