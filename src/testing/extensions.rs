//! The test mode's side of the extensions: batches whose callbacks fire in a drain,
//! iterable jobs walked with their cursors in memory, and periodic entries ticked by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::batches::Counted;
use super::{EnqueuedJob, Fake, Store};
use crate::client::{NewBatch, Pushed};
use crate::error::{Error, Result};
use crate::iteration::{Cursors, Env, Walked};
use crate::server::execute::Verdict;

/// Iterable jobs' state in a fake, by jid.
pub(super) type Walks = Arc<Mutex<HashMap<String, Walked>>>;

/// What a fake's iterable jobs run with: their cursors in `walks`, runs of `steps_per_run`
/// steps (whole walks when `None`), and a stop signal nobody sends (its sender is gone, so
/// it stays `false`).
pub(super) fn walk_env(walks: &Walks, steps_per_run: Option<usize>) -> Arc<Env> {
    Arc::new(Env {
        cursors: Cursors::Memory(Arc::clone(walks)),
        stop: tokio::sync::watch::channel(false).1,
        steps_per_run,
    })
}

impl Store {
    /// Runs one job as a server would, giving iterable jobs their cursors in memory.
    pub(super) async fn execute(&self, queue: &Arc<str>, raw: &Arc<[u8]>) -> Verdict<'_> {
        // No server reads its signals: a test-mode job is never cancelled.
        let signals = Arc::default();
        let Some(env) = &self.walk_env else {
            return self.executor.execute(queue, raw, &signals).await;
        };
        let env = Arc::clone(&env.lock().unwrap_or_else(|e| e.into_inner()));
        crate::iteration::with_env(env, self.executor.execute(queue, raw, &signals)).await
    }

    /// Records a new batch and queues its jobs, as `Batch::push` does in one transaction.
    pub(super) fn record_batch(&self, batch: NewBatch<'_>) -> Result<()> {
        self.refuse_batches_inline()?;
        let mut state = self.state();
        state
            .batches
            .create(batch.bid, batch.parent, batch.callbacks)?;
        queue_batch_jobs(&mut state, batch.bid, batch.jobs);
        Ok(())
    }

    /// Adds jobs to an open batch, as `Batch::open` does.
    pub(super) fn record_in_batch(&self, bid: &str, jobs: Vec<Pushed>) -> Result<()> {
        self.refuse_batches_inline()?;
        let mut state = self.state();
        state.batches.check_open(bid)?;
        queue_batch_jobs(&mut state, bid, jobs);
        Ok(())
    }

    fn refuse_batches_inline(&self) -> Result<()> {
        if self.inline {
            return Err(Error::Config(
                "the inline test mode runs each job as it is pushed, so a batch has nothing to wait for; test batches with testing::Fake, whose drains fire their callbacks".into(),
            ));
        }
        Ok(())
    }

    /// Counts an outcome of `job` for its batch, if it has one; queues the callbacks that
    /// fire, to run later in the same drain.
    pub(super) fn count_for_batch(&self, job: &EnqueuedJob, kind: Counted) {
        let Some(bid) = job.field("bid").and_then(Value::as_str) else {
            return;
        };
        let mut state = self.state();
        let fired = state
            .batches
            .count(bid, job.jid(), kind, crate::clock::now_secs());
        for (payload, queue) in fired {
            let callback = EnqueuedJob::new(payload, &queue, None);
            state.pending.push_back(callback);
        }
    }
}

fn queue_batch_jobs(state: &mut super::State, bid: &str, jobs: Vec<Pushed>) {
    state
        .batches
        .add(bid, jobs.iter().map(|job| job.jid.clone()));
    for job in jobs {
        let recorded = EnqueuedJob::new(job.payload, &job.queue, job.at);
        state.pending.push_back(recorded);
    }
}

impl Fake {
    /// Ends each run of an iterable job after `steps` steps, as a deploy or its
    /// `max_run_time` would: the job saves its cursor, calls `on_stop`, and goes back to its
    /// queue, and the drain's next run of it calls `on_resume` and goes on from the cursor.
    /// So a test can step a walk and look at [`Fake::cursor`] between runs.
    ///
    /// ```
    /// use psychiq::iteration::IterableWorker;
    /// use psychiq::{JobError, Registry};
    ///
    /// struct Count;
    /// impl IterableWorker for Count {
    ///     type Args = (u64,);
    ///     type Cursor = u64;
    ///     async fn step(&self, (to,): &(u64,), at: Option<u64>) -> Result<Option<u64>, JobError> {
    ///         let next = at.unwrap_or(0) + 1;
    ///         Ok((next < *to).then_some(next))
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> psychiq::Result<()> {
    /// let mut registry = Registry::new();
    /// registry.register_iterable(Count);
    /// let fake = psychiq::testing::Fake::new(registry).steps_per_run(2);
    /// let jid = fake.client().push(psychiq::Job::new("Count", (5,))?).await?;
    /// let drained = fake.drain().await.unwrap();
    /// assert_eq!((drained.performed, drained.snoozed), (1, 2)); // runs of 2, 2 and 1 steps
    /// assert!(fake.iteration_done(&jid));
    /// # Ok(()) }
    /// ```
    pub fn steps_per_run(self, steps: usize) -> Fake {
        if let Some(env) = &self.store.walk_env {
            let steps = (steps > 0).then_some(steps);
            *env.lock().unwrap_or_else(|e| e.into_inner()) = walk_env(&self.store.walks, steps);
        }
        self
    }

    /// The cursor an iterable job saved after its last step, if it has taken one.
    pub fn cursor(&self, jid: &str) -> Option<Value> {
        let walks = self.store.walks.lock().unwrap_or_else(|e| e.into_inner());
        let cursor = walks.get(jid)?.cursor.as_deref()?;
        serde_json::from_str(cursor).ok()
    }

    /// Whether an iterable job's walk has ended (its last step taken, or cancelled).
    pub fn iteration_done(&self, jid: &str) -> bool {
        let walks = self.store.walks.lock().unwrap_or_else(|e| e.into_inner());
        walks.get(jid).is_some_and(|walked| walked.done)
    }

    /// Cancels an iterable job, as `Api::cancel_iteration` does: it ends after its running
    /// step (or before its first), calling `on_cancel`, and is not run again.
    pub fn cancel_iteration(&self, jid: &str) {
        let mut walks = self.store.walks.lock().unwrap_or_else(|e| e.into_inner());
        walks.entry(jid.to_string()).or_default().cancelled = true;
    }

    /// Pushes the job of the periodic entry `name` (registered with `Registry::periodic`)
    /// for its next tick, as the server does when the tick comes: with `periodic` and
    /// `periodic_at` set, not through client middleware. Returns the jid; a drain runs it.
    ///
    /// ```
    /// use psychiq::periodic::{PeriodicJob, Schedule};
    /// use psychiq::{Job, JobResult, Registry, Worker};
    ///
    /// struct Nightly;
    /// impl Worker for Nightly {
    ///     type Args = (String,);
    ///     async fn perform(&self, (_kind,): Self::Args) -> JobResult { Ok(()) }
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> psychiq::Result<()> {
    /// let mut registry = Registry::new();
    /// registry.register(Nightly);
    /// registry.periodic(PeriodicJob::new(
    ///     "nightly",
    ///     Schedule::cron("0 3 * * *")?,
    ///     Job::of::<Nightly>(&("full".to_string(),))?,
    /// )?);
    /// let fake = psychiq::testing::Fake::new(registry);
    /// fake.tick("nightly")?;
    /// assert_eq!(fake.jobs_for::<Nightly>()[0].field("periodic").unwrap(), "nightly");
    /// assert_eq!(fake.drain().await.unwrap().performed, 1);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "periodic")]
    pub fn tick(&self, name: &str) -> Result<String> {
        let entries = self.store.executor.registry.periodic_jobs();
        let Some(entry) = entries.iter().find(|entry| entry.name() == name) else {
            let known: Vec<&str> = entries.iter().map(|entry| entry.name()).collect();
            return Err(Error::NotFound(format!(
                "no periodic entry {name:?} in this fake's registry (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let now = crate::clock::now_secs() as i64;
        let tick = entry.schedule().next_after(now).unwrap_or(now);
        let payload = entry.payload_for(tick, crate::clock::now_secs());
        let job = EnqueuedJob::new(payload, entry.queue(), None);
        let jid = job.jid().to_string();
        self.store.state().pending.push_back(job);
        Ok(jid)
    }
}
