//! Runs one fetched job in two steps: [`Executor::execute`](crate::server::execute::Executor::execute) (in `execute.rs`) decides its outcome without
//! touching Redis (read the payload, find the worker, run the server middleware around
//! `perform`, catch panics and timeouts), and [`Processor::dispose`] writes that outcome
//! (acknowledge; retry or dead set; back to the schedule for a snooze).
//!
//! Nothing here can take the server down: a payload that is not UTF-8 or not JSON, a
//! missing class or arguments, an unknown class, arguments of the wrong shape and a panic
//! inside `perform` or a middleware all end as a failed job with an error message that says
//! what was wrong.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::job::failure::JobError;
use crate::job::middleware::Outcome;
use crate::job::payload::{self, Rewrite};
use crate::job::text;
use crate::server::acks::Acks;
use crate::server::events::{FailedJob, Hooks};
use crate::server::execute::{Executor, Verdict};
use crate::server::retry::{self, Disposition};
use crate::server::stats::Stats;
use crate::server::work::UnitOfWork;
use crate::store::connection::Connection;
use crate::store::keys::Keys;
use crate::store::outage::{Outage, query_until_ok};

/// Everything a job needs to run, shared by all running jobs of a server.
pub(crate) struct Processor {
    pub executor: Executor,
    pub keys: Arc<Keys>,
    pub conn: Connection,
    pub stats: Arc<Stats>,
    /// Where finished jobs are acknowledged (reliable fetch).
    pub acks: Acks,
    /// Whether batch jobs' deaths are counted (off with `--no-batches` and in the cluster
    /// layout, as the batch counter is).
    pub batches: bool,
    pub hooks: Arc<Hooks>,
}

impl Processor {
    /// Runs the job `raw` fetched from `queue`, counts it, and writes what became of it
    /// (acknowledging it from its in-progress hash, if it has one).
    pub async fn process(&self, work: &UnitOfWork) {
        let started = Instant::now();
        let verdict = self.executor.execute(&work.queue, &work.raw).await;
        self.dispose(verdict, work, started).await;
    }

    /// Writes what became of the job.
    async fn dispose(&self, verdict: Verdict<'_>, work: &UnitOfWork, started: Instant) {
        let (queue, raw) = (&*work.queue, &work.raw);
        let (error, handler, exhaust_now) = match verdict {
            Verdict::Ran {
                outcome: Outcome::Done,
                ..
            } => return self.let_go(work),
            Verdict::Ran {
                outcome: Outcome::Skipped(reason),
                ..
            } => {
                tracing::info!(queue = %text::printable(queue), reason = %text::printable(&reason), "job skipped by a middleware");
                return self.let_go(work);
            }
            Verdict::Ran {
                outcome: Outcome::Discarded(reason),
                ..
            } => {
                tracing::warn!(queue = %text::printable(queue), reason = %text::printable(&reason), "job discarded");
                self.stats.record_discarded();
                return self.let_go(work);
            }
            Verdict::Ran {
                outcome: Outcome::Snoozed(delay),
                ..
            } => {
                // Not counted: it has not run to an end (rate limits snooze often).
                return self.snooze(work, delay).await;
            }
            Verdict::Unreadable { reason } => {
                self.stats.record(true);
                tracing::warn!(queue = %text::printable(queue), reason = %text::printable(&reason), "unreadable payload moved to the dead set");
                let error = JobError::new("Psychiq::InvalidPayload", reason.clone());
                return self
                    .bury(work, &reason, &error, crate::clock::now_secs())
                    .await;
            }
            Verdict::Ran {
                outcome: Outcome::Failed(error),
                handler,
                exhaust_now,
            } => (error, handler, exhaust_now),
        };
        // Only failures need the time and a rewrite.
        self.stats.record(true);
        let elapsed_ms = started.elapsed().as_micros() as f64 / 1000.0;
        let now = crate::clock::now_secs();
        // `execute` read its head; the whole of it can still fail (e.g. nesting too deep).
        let text = std::str::from_utf8(raw).unwrap_or_default();
        let Ok(mut job) = Rewrite::parse(text) else {
            let reason = format!("payload could not be parsed in full ({error})");
            return self.bury(work, &reason, &error, now).await;
        };
        let field = |name: &str| {
            job.get(name)
                .and_then(|c| c.as_str())
                .unwrap_or("?")
                .to_string()
        };
        let (class, jid) = (field("class"), field("jid"));
        let disposition = retry::plan_failure(
            &mut job,
            queue,
            &error,
            handler.map(|h| h.as_ref()),
            exhaust_now,
            now,
        );
        let next = match &disposition {
            Disposition::Retry { at, .. } => format!("retry in {:.0} s", at - now),
            Disposition::Dead { .. } => "dead".to_string(),
            Disposition::Drop => "dropped (retry: false or dead: false)".to_string(),
        };
        tracing::warn!(
            class = %text::printable(&class),
            jid = %text::printable(&jid),
            queue = %text::printable(queue),
            elapsed_ms,
            error = %text::printable(retry::truncate(error.message())),
            error_class = %text::printable(error.class()),
            next,
            "job failed"
        );
        // A job that will not run again dies for its batch and lets its unique lock go, in
        // the same transaction that writes it, so a crash cannot lose either.
        let leaving = matches!(disposition, Disposition::Dead { .. } | Disposition::Drop);
        // Written first: a slow handler must not hold the failure back.
        self.write_counting(&disposition, now, work, leaving).await;
        if self.hooks.wants_failures() {
            // A dropped job goes nowhere; handlers see it as it failed.
            let (payload, dead) = match &disposition {
                Disposition::Retry { payload, .. } => (payload.clone(), false),
                Disposition::Dead { payload, .. } => (payload.clone(), true),
                Disposition::Drop => (job.to_json(), false),
            };
            let dropped = matches!(disposition, Disposition::Drop);
            self.report(&payload, &error, queue, dead, dropped).await;
        }
    }

    /// A payload that cannot be rewritten goes to the dead set wrapped, with `reason` and
    /// its exact bytes; the handlers hear of it after the write.
    async fn bury(&self, work: &UnitOfWork, reason: &str, error: &JobError, now: f64) {
        let payload = retry::wrap_unreadable(&work.raw, &work.queue, reason, now);
        let dead = Disposition::Dead {
            payload: payload.clone(),
            queue: work.queue.to_string(),
        };
        self.write_counting(&dead, now, work, false).await;
        self.report(&payload, error, &work.queue, true, false).await;
    }

    /// A job done with, not to run again (done, skipped, discarded): counted, acknowledged.
    fn let_go(&self, work: &UnitOfWork) {
        self.stats.record(false);
        work.acknowledge(&self.acks);
    }

    /// Calls the error (and, if it died, death) handlers, after the failure is written.
    async fn report(
        &self,
        payload: &str,
        error: &JobError,
        queue: &str,
        dead: bool,
        dropped: bool,
    ) {
        if !self.hooks.wants_failures() {
            return;
        }
        let failed = FailedJob {
            payload: serde_json::from_str(payload).unwrap_or_default(),
            error: error.clone(),
            queue: queue.to_string(),
            dead,
            dropped,
        };
        self.hooks.failed(failed).await;
    }

    /// Puts a snoozed job back in the schedule (marked with `snoozed` and `snoozed_at`)
    /// and removes it from its in-progress hash, in one transaction. A snooze of zero is a
    /// requeue (an iterable job's slice ended): the job goes straight back to the end of its
    /// queue with a new `enqueued_at`, as Sidekiq's interrupt handler pushes it.
    async fn snooze(&self, work: &UnitOfWork, delay: Duration) {
        let now = crate::clock::now_secs();
        let requeue = delay.is_zero();
        let marked = if requeue {
            payload::mark_enqueued(&work.raw, now)
        } else {
            payload::mark_snoozed(&work.raw, now)
        };
        let payload: &[u8] = marked.as_deref().map_or(&work.raw, str::as_bytes);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let (key, probe) = if requeue {
            let queue = self.keys.queue(&work.queue);
            pipe.lpush(&queue, payload).ignore();
            (queue, "LPOS")
        } else {
            let schedule = self.keys.schedule_of(&work.queue);
            pipe.zadd(&schedule, payload, now + delay.as_secs_f64())
                .ignore();
            (schedule, "ZSCORE")
        };
        work.remove_in(&mut pipe);
        if self.send(&pipe, "snoozing a job").await.is_err() {
            let written = redis::cmd(probe).arg(&key).arg(payload).clone();
            self.keep_if_lost(work, &written, &key).await;
        }
    }

    /// After a transaction that removed `work` from its in-progress hash failed in a way
    /// waiting will not cure: Redis does not roll a transaction back, so the removal may
    /// have gone through while the write (`member` into `key`) did not. Then the job goes
    /// back into its hash, so it is not lost: it runs again when this process's jobs are
    /// recovered (the poison rule bounds how often).
    /// `written` asks whether the write landed (`ZSCORE` of a set member, `LPOS` of a list
    /// element): nil means it did not.
    async fn keep_if_lost(&self, work: &UnitOfWork, written: &redis::Cmd, key: &str) {
        let written: redis::RedisResult<Option<redis::Value>> =
            written.query_async(&mut self.conn.clone()).await;
        if let Ok(Some(_)) = written {
            return;
        }
        let mut keep = redis::pipe();
        work.keep_in(&mut keep);
        if keep.cmd_iter().next().is_some()
            && self
                .send(&keep, "keeping a job that could not be written")
                .await
                .is_ok()
        {
            tracing::error!(
                key,
                "a job could not be written to {key} (see the error above); it stays in this process's in-progress hash and runs again when that is recovered"
            );
        }
    }

    /// Sends `pipe` until Redis answers; an error that waiting will not cure is logged with
    /// what it means (the job stays where it was: in its in-progress hash, so a recovery
    /// finds it) and returned.
    async fn send(&self, pipe: &redis::Pipeline, what: &'static str) -> redis::RedisResult<()> {
        let mut outage = Outage::new(what);
        let sent = query_until_ok(&mut self.conn.clone(), pipe, &mut outage).await;
        if let Err(e) = &sent {
            tracing::error!(error = %e, "{what}: {}; not retried, as waiting will not cure it", crate::store::errors::explain(e));
        }
        sent
    }

    /// Writes a failed job to `retry` or `dead` and removes it from its in-progress hash,
    /// in one transaction, retrying while Redis is unreachable. A job `leaving` for good
    /// gets its [`farewell`](crate::server::departure::farewell) in the same transaction.
    async fn write_counting(
        &self,
        disposition: &Disposition,
        now: f64,
        work: &UnitOfWork,
        leaving: bool,
    ) {
        if let Disposition::Retry { queue, .. } | Disposition::Dead { queue, .. } = disposition
            && self.keys.is_cluster()
            && **queue != *work.queue
        {
            // Its retry_queue is in another slot: the job is written (and the queue made
            // known, so its sets are polled) before it leaves its in-progress hash. A crash
            // between the two runs it once more; it is never lost.
            let mut written = redis::pipe();
            retry::commands(disposition, &self.keys, now, &mut written);
            written.sadd(self.keys.queues(), queue.as_str()).ignore();
            let mut removal = redis::pipe();
            work.remove_in(&mut removal);
            // Batches and unique locks live in the namespace's slot, not the queue's.
            let farewell = if leaving {
                crate::server::departure::farewells(&self.keys, [&*work.raw], now, self.batches)
            } else {
                redis::pipe()
            };
            if self.send(&written, "recording a failed job").await.is_err() {
                // Not written: it stays in its in-progress hash.
                return;
            }
            if farewell.cmd_iter().next().is_some() {
                // Logged if it fails; the job is written either way.
                let _ = self
                    .send(&farewell, "a dead job's batch and unique lock")
                    .await;
            }
            let _ = self.send(&removal, "recording a failed job").await;
            return;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        retry::commands(disposition, &self.keys, now, &mut pipe);
        if leaving && !self.keys.is_cluster() {
            crate::server::departure::farewell(&mut pipe, &self.keys, &work.raw, now, self.batches);
        }
        work.remove_in(&mut pipe);
        if pipe.cmd_iter().next().is_none() {
            return;
        }
        if !work.is_held() {
            // Basic fetch: only this process holds the job until the write goes through.
            tracing::debug!(
                payload = %text::lossless(&work.raw),
                "recording a failed job fetched without an in-progress hash"
            );
        }
        // Until it works: with reliable fetch the job is safe in its list meanwhile.
        if self.send(&pipe, "recording a failed job").await.is_err() {
            if leaving {
                // The farewell could not be written (its bid names a key that is not a
                // batch's): the job is still written, without it. Both are idempotent.
                return Box::pin(self.write_counting(disposition, now, work, false)).await;
            }
            if let Some((key, member)) = retry::written_as(disposition, &self.keys) {
                let written = redis::cmd("ZSCORE").arg(&key).arg(member).clone();
                self.keep_if_lost(work, &written, &key).await;
            }
        }
        if leaving && self.keys.is_cluster() {
            let farewell =
                crate::server::departure::farewells(&self.keys, [&*work.raw], now, self.batches);
            if farewell.cmd_iter().next().is_some() {
                let _ = self
                    .send(&farewell, "a dead job's batch and unique lock")
                    .await;
            }
        }
    }
}
