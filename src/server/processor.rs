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

use crate::job::context::{JobContext, Reporter, Signals};
use crate::job::failure::JobError;
use crate::job::job_events::{Event, EventKind};
use crate::job::middleware::Outcome;
use crate::job::payload::{self, Rewrite};
use crate::job::status::{self, End};
use crate::job::text;
use crate::server::acks::Acks;
use crate::server::departure;
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
    pub async fn process(&self, work: &UnitOfWork, signals: &Arc<Signals>) {
        let started = Instant::now();
        let verdict = self.executor.execute(&work.queue, &work.raw, signals).await;
        self.dispose(verdict, work, started).await;
    }

    /// New signals for a job about to run: its progress goes to this server's writer.
    pub fn signals(&self) -> Arc<Signals> {
        let reporter = self
            .executor
            .lifecycle
            .as_ref()
            .map(|l| Arc::clone(l) as Arc<dyn Reporter>);
        Arc::new(Signals::reporting_to(reporter))
    }

    /// Writes what became of the job.
    async fn dispose(&self, verdict: Verdict<'_>, work: &UnitOfWork, started: Instant) {
        let (queue, raw) = (&*work.queue, &work.raw);
        let job = match &verdict {
            Verdict::Ran { job, .. } => job.clone(),
            Verdict::Unreadable { .. } => None,
        };
        // The failure path below names the rewritten payload `job`.
        let job_context = job.clone();
        let lifecycle = self.executor.lifecycle.as_deref();
        if let (Some(lifecycle), Some(job)) = (lifecycle, &job) {
            lifecycle.settle_progress(job);
        }
        let (error, handler, exhaust_now) = match verdict {
            Verdict::Ran {
                outcome: Outcome::Done,
                ..
            } => {
                if let Some(job) = job.as_deref().filter(|j| self.reports(j)) {
                    let duration = started.elapsed().as_secs_f64();
                    let result = job.signals().output().unwrap_or("null");
                    let end = End::Succeeded { duration, result };
                    return self.let_go_reported(work, job, &end, EventKind::Succeeded);
                }
                return self.let_go(work);
            }
            Verdict::Ran {
                outcome: Outcome::Skipped(reason),
                ..
            } => {
                tracing::info!(queue = %text::printable(queue), reason = %text::printable(&reason), "job skipped by a middleware");
                if let Some(job) = job.as_deref().filter(|j| self.reports(j)) {
                    let end = End::Discarded { reason: &reason };
                    return self.let_go_reported(work, job, &end, EventKind::Discarded);
                }
                return self.let_go(work);
            }
            Verdict::Ran {
                outcome: Outcome::Discarded(reason),
                ..
            } => {
                tracing::warn!(queue = %text::printable(queue), reason = %text::printable(&reason), "job discarded");
                self.stats.record_discarded();
                if let Some(job) = job.as_deref().filter(|j| self.reports(j)) {
                    let end = End::Discarded { reason: &reason };
                    return self.let_go_reported(work, job, &end, EventKind::Discarded);
                }
                return self.let_go(work);
            }
            Verdict::Ran {
                outcome: Outcome::Snoozed(delay),
                ..
            } => {
                // Not counted: it has not run to an end (rate limits snooze often).
                if let Some(job) = job.as_deref() {
                    self.catch_up(job).await;
                }
                return self.snooze(work, delay, job.as_deref()).await;
            }
            Verdict::Ran {
                outcome: Outcome::Cancelled,
                ..
            } => {
                if let Some(job) = job.as_deref() {
                    self.catch_up(job).await;
                }
                return Box::pin(self.cancelled(work, job.as_deref())).await;
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
                ..
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
        // A job that will not run again dies for its batch, lets its unique lock go and
        // records its end if tracked, in the same transaction that writes it, so a crash
        // cannot lose any of them.
        let described = format!("{}: {}", error.class(), retry::truncate(error.message()));
        let end = match &disposition {
            Disposition::Retry { at, .. } => End::Retrying {
                retry_count: job.get("retry_count").and_then(|c| c.as_u64()).unwrap_or(0),
                next_at: *at,
                error: &described,
            },
            Disposition::Dead { .. } => End::Dead { error: &described },
            Disposition::Drop => End::Discarded { reason: &described },
        };
        if let Some(context) = job_context.as_deref() {
            self.catch_up(context).await;
        }
        // Written first: a slow handler must not hold the failure back.
        let tracked = job_context
            .as_deref()
            .and_then(JobContext::tracked_for)
            .map(|d| d.as_secs());
        self.write_counting(&disposition, now, work, Some(&end), tracked)
            .await;
        if let Some(lifecycle) = lifecycle.filter(|l| l.events.is_some()) {
            let event = |kind| Event::new(kind, &jid, &class, queue, now).with("error", &described);
            lifecycle.event(event(EventKind::Failed));
            lifecycle.event(match &end {
                End::Retrying {
                    retry_count,
                    next_at,
                    ..
                } => event(EventKind::Retrying)
                    .with("retry_count", retry_count)
                    .with("next_at", next_at),
                End::Dead { .. } => event(EventKind::Dead),
                _ => event(EventKind::Discarded),
            });
        }
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
        self.write_counting(&dead, now, work, Some(&End::Dead { error: reason }), None)
            .await;
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
    async fn snooze(&self, work: &UnitOfWork, delay: Duration, job: Option<&JobContext>) {
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
        // A tracked job's status: in the transaction, or (cluster layout: another slot)
        // just before it.
        let mut waiting = redis::pipe();
        if let Some((job, retention)) = job.and_then(|j| Some((j, j.tracked_for()?))) {
            let at = (!requeue).then_some(now + delay.as_secs_f64());
            status::waiting(&mut waiting, &self.keys, job.jid(), at, retention.as_secs());
        }
        if waiting.cmd_iter().next().is_some() {
            if self.keys.is_cluster() {
                let _ = self.send(&waiting, "a snoozed job's status").await;
            } else {
                for command in waiting.cmd_iter() {
                    pipe.add_command(command.clone()).ignore();
                }
            }
        }
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
    /// in one transaction, retrying while Redis is unreachable. What follows (`end`) goes
    /// in the same transaction: a job leaving for good gets its
    /// [`farewell`](crate::server::departure::farewell), a tracked job that will be retried
    /// its status (`tracked`: kept that many seconds). With no `end`, neither.
    async fn write_counting(
        &self,
        disposition: &Disposition,
        now: f64,
        work: &UnitOfWork,
        end: Option<&End<'_>>,
        tracked: Option<u64>,
    ) {
        let follows = match end {
            Some(end) if matches!(disposition, Disposition::Retry { .. }) => {
                self.status_of(&work.raw, end, now, tracked)
            }
            Some(end) => {
                let mut follows =
                    departure::farewells(&self.keys, [&*work.raw], now, self.batches, end);
                let text = std::str::from_utf8(&work.raw).unwrap_or_default();
                if status::retention_in(text).is_none() {
                    // Tracked by its worker or the server, if at all: the farewell did not
                    // see it.
                    for command in self.status_of(&work.raw, end, now, tracked).cmd_iter() {
                        follows.add_command(command.clone()).ignore();
                    }
                }
                follows
            }
            None => redis::pipe(),
        };
        let has_follows = follows.cmd_iter().next().is_some();
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
            if self.send(&written, "recording a failed job").await.is_err() {
                // Not written: it stays in its in-progress hash.
                return;
            }
            // Batches, unique locks and statuses live in the namespace's slot, not the
            // queue's. Logged if it fails; the job is written either way.
            if has_follows {
                let _ = self
                    .send(&follows, "a failed job's batch, lock or status")
                    .await;
            }
            let _ = self.send(&removal, "recording a failed job").await;
            return;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        retry::commands(disposition, &self.keys, now, &mut pipe);
        if has_follows && !self.keys.is_cluster() {
            for command in follows.cmd_iter() {
                pipe.add_command(command.clone()).ignore();
            }
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
            if has_follows && !self.keys.is_cluster() {
                // What follows could not be written (a bid naming a key that is not a
                // batch's): the job is still written, without it. Both are idempotent.
                return Box::pin(self.write_counting(disposition, now, work, None, None)).await;
            }
            if let Some((key, member)) = retry::written_as(disposition, &self.keys) {
                let written = redis::cmd("ZSCORE").arg(&key).arg(member).clone();
                self.keep_if_lost(work, &written, &key).await;
            }
            return;
        }
        if has_follows && self.keys.is_cluster() {
            let _ = self
                .send(&follows, "a failed job's batch, lock or status")
                .await;
        }
    }

    /// A tracked job's status as `end` says, kept `tracked` seconds (empty for an untracked
    /// one).
    fn status_of(
        &self,
        raw: &[u8],
        end: &End<'_>,
        now: f64,
        tracked: Option<u64>,
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let text = std::str::from_utf8(raw).unwrap_or_default();
        if let Some(retention) = tracked
            && let Some(jid) = jid_of(text)
        {
            status::ended(&mut pipe, &self.keys, &jid, end, now, retention);
        }
        pipe
    }

    /// A job done with whose end is reported (tracked, or the event stream is on): counted;
    /// its event sent; a tracked job's status written by the lifecycle writer, which then
    /// acknowledges it (so a crash cannot lose the end of a job that is gone).
    fn let_go_reported(&self, work: &UnitOfWork, job: &JobContext, end: &End<'_>, kind: EventKind) {
        let Some(lifecycle) = self.executor.lifecycle.as_deref() else {
            return self.let_go(work);
        };
        let now = crate::clock::now_secs();
        if lifecycle.events.is_some() {
            let mut event = Event::new(kind, job.jid(), job.class(), job.queue(), now);
            if let End::Succeeded { duration, .. } = end {
                event = event.with("duration", duration);
            }
            lifecycle.event(event);
        }
        let Some(retention) = job.tracked_for() else {
            return self.let_go(work);
        };
        self.stats.record(false);
        let mut pipe = redis::pipe();
        status::ended(
            &mut pipe,
            &self.keys,
            job.jid(),
            end,
            now,
            retention.as_secs(),
        );
        lifecycle.ending(pipe, work.acknowledge_later(&self.acks));
    }

    /// Before the processor's own transaction about a tracked job: what the lifecycle
    /// writer holds for it (its start, its progress) is written first.
    async fn catch_up(&self, job: &JobContext) {
        if let Some(lifecycle) = self.executor.lifecycle.as_deref()
            && job.tracked_for().is_some()
        {
            lifecycle.flush().await;
        }
    }

    /// Whether `job`'s end is written anywhere (it is tracked, or the event stream is on).
    fn reports(&self, job: &JobContext) -> bool {
        job.tracked_for().is_some()
            || self
                .executor
                .lifecycle
                .as_ref()
                .is_some_and(|l| l.events.is_some())
    }

    /// A cancelled job: it leaves for good (its farewell: a death for its batch, its unique
    /// lock, its status) and its in-progress hash, in one transaction; never retried.
    async fn cancelled(&self, work: &UnitOfWork, job: Option<&JobContext>) {
        self.stats.record(false);
        self.stats.record_discarded();
        let now = crate::clock::now_secs();
        tracing::info!(
            jid = job.map(|j| text::printable(j.jid()).to_string()),
            queue = %text::printable(&work.queue),
            "job cancelled"
        );
        let end = End::Cancelled;
        let mut pipe = departure::farewells(&self.keys, [&*work.raw], now, self.batches, &end);
        if let Some(job) = job.filter(|j| j.tracked_for().is_some() && !is_tracked_payload(j)) {
            // Tracked by the server (`--track-all`), not by its payload: the farewell did
            // not see it.
            let retention = job.tracked_for().map_or(0, |d| d.as_secs());
            status::ended(&mut pipe, &self.keys, job.jid(), &end, now, retention);
        }
        if !self.keys.is_cluster() {
            pipe.atomic();
            work.remove_in(&mut pipe);
            let _ = self.send(&pipe, "recording a cancelled job").await;
        } else {
            if pipe.cmd_iter().next().is_some() {
                let _ = self.send(&pipe, "recording a cancelled job").await;
            }
            let mut removal = redis::pipe();
            work.remove_in(&mut removal);
            if removal.cmd_iter().next().is_some() {
                let _ = self.send(&removal, "recording a cancelled job").await;
            }
        }
        if let (Some(lifecycle), Some(job)) = (self.executor.lifecycle.as_deref(), job) {
            lifecycle.event(Event::new(
                EventKind::Cancelled,
                job.jid(),
                job.class(),
                job.queue(),
                now,
            ));
        }
    }
}

/// A payload's jid, read from its head.
fn jid_of(text: &str) -> Option<String> {
    serde_json::from_str::<payload::JobHead<'_>>(text)
        .ok()?
        .jid
        .map(|jid| jid.into_owned())
}

/// Whether a job asked for tracking in its payload (else its worker or the server did).
fn is_tracked_payload(job: &JobContext) -> bool {
    job.field(status::TRACK_FIELD)
        .and_then(status::retention_of)
        .is_some()
}
