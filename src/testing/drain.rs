//! Performing what a fake holds: draining the due jobs (and the jobs they enqueue) through
//! the registry, middleware and outcome rules of a real server, one at a time, or one job
//! by hand.

use std::sync::Arc;

use crate::status::State;

use crate::job::middleware::Outcome;
use crate::job::payload::{self, Rewrite};
use crate::job::worker::Worker;
use crate::server::execute::Verdict;
use crate::server::retry::{self, Disposition};
use batches::Counted;

use super::*;

impl Fake {
    /// Performs the jobs due now, in the order pushed, with the ones they enqueue, until
    /// none is due; scheduled jobs wait. Stops at the first failure and returns it (the
    /// failed job is in [`Fake::retries`] or [`Fake::dead`], as a server would put it).
    pub async fn drain(&self) -> std::result::Result<Drained, JobFailed> {
        self.run(false, None).await
    }

    /// Performs only the first job due now (if any), as one step of [`Fake::drain`]: to
    /// watch a callback or an iterable job's next run come in between.
    pub async fn run_one(&self) -> std::result::Result<Drained, JobFailed> {
        self.run(false, Some(1)).await
    }

    /// [`Fake::drain`], also performing jobs scheduled for later (as `Sidekiq::Testing`'s
    /// `drain` does), but not retries.
    pub async fn drain_all(&self) -> std::result::Result<Drained, JobFailed> {
        self.run(true, None).await
    }

    /// Makes every retrying job due now, to run on the next drain.
    pub fn retry_all(&self) {
        let mut state = self.store.state();
        let retries = std::mem::take(&mut state.retries);
        state.pending.extend(
            retries
                .into_iter()
                .map(|job| EnqueuedJob { at: None, ..job }),
        );
    }

    /// Runs one job of `W` with `args` at once, through the registry and the middleware,
    /// without enqueueing it (Oban's `perform_job`); returns its outcome.
    ///
    /// ```
    /// use psychiq::{JobError, JobResult, Outcome, Registry, Worker};
    /// struct Charge;
    /// impl Worker for Charge {
    ///     type Args = (u64,);
    ///     async fn perform(&self, (cents,): Self::Args) -> JobResult {
    ///         if cents == 0 { return Err(JobError::discard("nothing to charge")) }
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut registry = Registry::new();
    /// registry.register(Charge);
    /// let fake = psychiq::testing::Fake::new(registry);
    /// assert!(fake.perform::<Charge>((500,)).await.is_done());
    /// assert!(matches!(fake.perform::<Charge>((0,)).await, Outcome::Discarded(_)));
    /// # }
    /// ```
    pub async fn perform<W: Worker>(&self, args: W::Args) -> Outcome {
        let job = match crate::Job::of::<W>(&args) {
            Ok(job) => job,
            Err(e) => {
                return Outcome::Failed(crate::JobError::new(
                    "Psychiq::InvalidPayload",
                    e.to_string(),
                ));
            }
        };
        let queue: Arc<str> = job.queue_name().into();
        let payload = job.payload_now();
        let raw: Arc<[u8]> = payload.as_bytes().into();
        match self.store.execute(&queue, &raw).await {
            Verdict::Ran { outcome, .. } => outcome,
            Verdict::Unreadable { reason } => {
                Outcome::Failed(crate::JobError::new("Psychiq::InvalidPayload", reason))
            }
        }
    }

    /// Performs the due jobs (at most `most`); more than [`DRAIN_LIMIT`] is a job that
    /// keeps enqueueing work.
    pub(super) async fn run(
        &self,
        scheduled_too: bool,
        most: Option<usize>,
    ) -> std::result::Result<Drained, JobFailed> {
        let mut drained = Drained::default();
        let mut runs = 0;
        while most.is_none_or(|most| runs < most) {
            let Some(job) = self.next_due(scheduled_too) else {
                break;
            };
            runs += 1;
            if runs > DRAIN_LIMIT {
                panic!(
                    "drain performed {DRAIN_LIMIT} jobs and jobs are still due: does a job keep enqueueing work? Last: {job:?}"
                );
            }
            let queue: Arc<str> = job.queue.clone();
            let raw: Arc<[u8]> = job.payload.as_bytes().into();
            let verdict = self.store.execute(&queue, &raw).await;
            let ran = match &verdict {
                Verdict::Ran { job, .. } => job.clone(),
                Verdict::Unreadable { .. } => None,
            };
            let ended = |state| self.store.note_end(ran.as_deref(), state, None);
            let (error, handler, exhaust_now) = match verdict {
                Verdict::Ran {
                    outcome,
                    handler,
                    exhaust_now,
                    ..
                } => match outcome {
                    Outcome::Done => {
                        drained.performed += 1;
                        self.store.count_for_batch(&job, Counted::Success);
                        ended(State::Succeeded);
                        continue;
                    }
                    Outcome::Skipped(_) => {
                        drained.skipped += 1;
                        self.store.count_for_batch(&job, Counted::Success);
                        ended(State::Discarded);
                        continue;
                    }
                    Outcome::Discarded(_) => {
                        drained.discarded += 1;
                        self.store.count_for_batch(&job, Counted::Success);
                        ended(State::Discarded);
                        continue;
                    }
                    Outcome::Cancelled => {
                        // As a server's farewell counts it.
                        drained.discarded += 1;
                        self.store.count_for_batch(&job, Counted::Death);
                        ended(State::Cancelled);
                        continue;
                    }
                    Outcome::Snoozed(delay) => {
                        drained.snoozed += 1;
                        let now = crate::clock::now_secs();
                        let at = now + delay.as_secs_f64();
                        // Marked as a server marks it, so a rate limit backs off the same; a
                        // zero delay is an iterable job's requeue, which is no snooze.
                        let marked = if delay.is_zero() {
                            payload::mark_enqueued(job.payload.as_bytes(), now)
                        } else {
                            payload::mark_snoozed(job.payload.as_bytes(), now)
                        };
                        let later = match marked {
                            Some(marked) => EnqueuedJob::new(marked, &job.queue, Some(at)),
                            None => EnqueuedJob {
                                at: Some(at),
                                ..job
                            },
                        };
                        self.store.state().pending.push_back(later);
                        continue;
                    }
                    Outcome::Failed(error) => (error, handler, exhaust_now),
                },
                Verdict::Unreadable { reason } => {
                    let error = crate::JobError::new("Psychiq::InvalidPayload", reason);
                    (error, None, true)
                }
            };
            let now = crate::clock::now_secs();
            let disposition = match Rewrite::parse(&job.payload) {
                Ok(mut rewrite) => retry::plan_failure(
                    &mut rewrite,
                    &queue,
                    &error,
                    handler.map(|h| h.as_ref()),
                    exhaust_now,
                    now,
                ),
                Err(_) => Disposition::Dead {
                    payload: retry::wrap_unreadable(&raw, &queue, error.message(), now),
                    queue: queue.to_string(),
                },
            };
            let went_to = {
                let mut state = self.store.state();
                match disposition {
                    Disposition::Retry { at, payload, .. } => {
                        state
                            .retries
                            .push(EnqueuedJob::new(payload, &queue, Some(at)));
                        WentTo::Retry
                    }
                    Disposition::Dead { payload, .. } => {
                        state.dead.push(EnqueuedJob::new(payload, &queue, None));
                        WentTo::Dead
                    }
                    Disposition::Drop => WentTo::Dropped,
                }
            };
            // A server counts a failure where its batch middleware ran, around `perform`: not
            // for a class it does not know, nor arguments that never fit (those fail before
            // the chain). A death is counted wherever the dead job is written.
            if handler.is_some() && !exhaust_now {
                self.store.count_for_batch(&job, Counted::Failure);
            }
            if went_to != WentTo::Retry {
                self.store.count_for_batch(&job, Counted::Death);
            }
            let state = match went_to {
                WentTo::Retry => State::Retrying,
                WentTo::Dead => State::Dead,
                WentTo::Dropped => State::Discarded,
            };
            self.store.note_end(ran.as_deref(), state, Some(&error));
            return Err(JobFailed {
                job,
                error,
                went_to,
            });
        }
        Ok(drained)
    }

    /// Takes the first waiting job that is due (every scheduled one when `scheduled_too`).
    pub(super) fn next_due(&self, scheduled_too: bool) -> Option<EnqueuedJob> {
        let now = crate::clock::now_secs();
        let mut state = self.store.state();
        let index = state
            .pending
            .iter()
            .position(|job| scheduled_too || job.due(now))?;
        state.pending.remove(index)
    }
}
