//! A job's status by jid, tracked or not, and cancelling a job wherever it is.

use super::*;
use crate::job::job_events::{self, Event, EventKind};
use crate::job::status::{End, JobStatus, State, progress_in};
use crate::store::scripts::CANCEL_MARK;

/// What [`Api::cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Cancellation {
    /// It was waiting (in its queue, the schedule or the retry set, the state given): it is
    /// removed and ends as cancelled.
    Removed(State),
    /// It is running, or taken by a process to run: that process stops it within a second
    /// (its [`crate::context::cancelled`] resolves; its task is dropped after the grace).
    Signalled {
        /// The process running it.
        process: String,
    },
    /// It is over already (the state given); nothing changed.
    AlreadyFinished(State),
    /// Not found anywhere: it is marked, so it ends as cancelled, unrun, if it turns up
    /// within a day.
    NotFound,
}

/// Statuses of jobs shown together (the Busy page), by jid.
pub type Progresses = HashMap<String, crate::status::Progress>;

impl Api {
    /// Everything known about job `jid`: a tracked job's status (see [`crate::status`]);
    /// for any other job, what looking in the processes, queues and sets finds (`tracked`
    /// is false, and nothing is known once it has left them). `None`: not found.
    pub async fn status(&self, jid: &str) -> Result<Option<JobStatus>> {
        let jid = jid.trim();
        let hash: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.keys.status(jid)))
            .await?;
        if let Some(mut status) = JobStatus::from_hash(jid, &hash) {
            if status.state == State::Enqueued
                && let Some(Whereabouts::Enqueued(job)) = self.locate(jid).await?
            {
                status.position = self.position(&job).await?;
            }
            return Ok(Some(status));
        }
        let Some(place) = self.locate(jid).await? else {
            return Ok(None);
        };
        let mut status = match &place {
            Whereabouts::Running(work) => {
                let mut status = JobStatus::bare(jid, State::Running, false);
                status.process = Some(work.process.clone());
                status.started_at = Some(work.run_at);
                status.queue = Some(work.queue.clone());
                status.class = work.payload["class"].as_str().map(str::to_string);
                status
            }
            Whereabouts::Fetched { process, job } => {
                let mut status = described(jid, State::Running, job);
                status.process = Some(process.clone());
                status
            }
            Whereabouts::Enqueued(job) => {
                let mut status = described(jid, State::Enqueued, job);
                status.position = self.position(job).await?;
                status
            }
            Whereabouts::Scheduled(job) => described(jid, State::Scheduled, job),
            Whereabouts::Retrying(job) => described(jid, State::Retrying, job),
            Whereabouts::Dead(job) => {
                let mut status = described(jid, State::Dead, job);
                status.next_at = None;
                status.finished_at = job.score();
                status
            }
        };
        status.progress = progress_in(&hash);
        Ok(Some(status))
    }

    /// The progress the running jobs `jids` reported last, by jid (one round trip).
    pub async fn progress_of(&self, jids: &[&str]) -> Result<Progresses> {
        if jids.is_empty() {
            return Ok(Progresses::new());
        }
        let mut pipe = redis::pipe();
        for jid in jids {
            pipe.cmd("HMGET")
                .arg(self.keys.status(jid))
                .arg("done")
                .arg("total")
                .arg("message");
        }
        let rows: Vec<(Option<u64>, Option<u64>, Option<String>)> = self.query_pipe(&pipe).await?;
        Ok(jids
            .iter()
            .zip(rows)
            .filter_map(|(jid, (done, total, message))| {
                let progress = crate::status::Progress {
                    done: done?,
                    total: total.unwrap_or(0),
                    message: message.unwrap_or_default(),
                };
                Some((jid.to_string(), progress))
            })
            .collect())
    }

    /// Cancels job `jid` wherever it is: a waiting job (queued, scheduled, retrying) is
    /// removed; a running one is stopped by its process within a second. Either way it
    /// ends as cancelled: never retried, pushed back or recovered; a batch counts it as a
    /// death, its unique lock goes, a tracked job's status and waiters learn of it.
    pub async fn cancel(&self, jid: &str) -> Result<Cancellation> {
        let jid = jid.trim();
        if jid.is_empty() {
            return Ok(Cancellation::NotFound);
        }
        if let Some(status) = self.tracked_status(jid).await?
            && status.state.is_final()
        {
            return Ok(Cancellation::AlreadyFinished(status.state));
        }
        // Dead already: not marked (a server would remember the mark for a day, and a
        // later "retry now" would end cancelled, unrun).
        if let Some(Whereabouts::Dead(_)) = self.locate(jid).await? {
            return Ok(Cancellation::AlreadyFinished(State::Dead));
        }
        // Marked first: a job that moves while we look is caught where it lands.
        let _: String = self
            .query(
                redis::cmd("EVAL")
                    .arg(CANCEL_MARK)
                    .arg(1)
                    .arg(self.keys.cancels())
                    .arg(jid)
                    .arg(crate::server::lifecycle::CANCEL_MEMORY_SECS),
            )
            .await?;
        let end = End::Cancelled;
        // A job moved between the look and the removal is looked for again.
        for _ in 0..3 {
            let removed = match self.locate(jid).await? {
                None => return Ok(Cancellation::NotFound),
                Some(Whereabouts::Running(work)) => {
                    return Ok(Cancellation::Signalled {
                        process: work.process,
                    });
                }
                Some(Whereabouts::Fetched { process, .. }) => {
                    return Ok(Cancellation::Signalled { process });
                }
                Some(Whereabouts::Dead(_)) => {
                    // It died between the look and the mark: over already, unmarked (a
                    // server that read the mark meanwhile remembers it; see README).
                    let _: u64 = self
                        .query(redis::cmd("ZREM").arg(self.keys.cancels()).arg(jid))
                        .await?;
                    return Ok(Cancellation::AlreadyFinished(State::Dead));
                }
                Some(Whereabouts::Enqueued(job)) => self
                    .remove_from_queue(&job, &end)
                    .await?
                    .then_some((State::Enqueued, job)),
                Some(Whereabouts::Scheduled(job)) => self
                    .remove_from_set(SetKind::Scheduled, &job, &end)
                    .await?
                    .then_some((State::Scheduled, job)),
                Some(Whereabouts::Retrying(job)) => self
                    .remove_from_set(SetKind::Retry, &job, &end)
                    .await?
                    .then_some((State::Retrying, job)),
            };
            if let Some((state, job)) = removed {
                self.cancelled_event(&job).await;
                return Ok(Cancellation::Removed(state));
            }
        }
        Ok(Cancellation::NotFound)
    }

    /// The last `count` events of the stream, oldest first.
    pub async fn recent_events(&self, count: usize) -> Result<Vec<Event>> {
        let rows: Vec<(String, HashMap<String, String>)> = self
            .query(
                redis::cmd("XREVRANGE")
                    .arg(self.keys.events())
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        let mut events: Vec<Event> = rows
            .into_iter()
            .filter_map(|(id, fields)| Event::from_entry(id, fields))
            .collect();
        events.reverse();
        Ok(events)
    }

    /// A tracked job's status as stored, if it has one (no looking in queues and sets).
    pub async fn tracked_status(&self, jid: &str) -> Result<Option<JobStatus>> {
        let hash: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.keys.status(jid)))
            .await?;
        Ok(JobStatus::from_hash(jid, &hash))
    }

    /// A `cancelled` event, in a stream that exists (servers with `--events` make it).
    async fn cancelled_event(&self, job: &JobRecord) {
        let mut pipe = redis::pipe();
        let event = Event::new(
            EventKind::Cancelled,
            job.jid(),
            job.display_class(),
            job.queue(),
            crate::clock::now_secs(),
        );
        job_events::append(
            &mut pipe,
            &self.keys,
            &event,
            job_events::DEFAULT_CAP,
            false,
        );
        if let Err(e) = self.query_pipe::<()>(&pipe).await {
            tracing::debug!(error = %e, "could not write a cancelled event");
        }
    }

    /// A queued job's place in its queue (0 = next to run).
    async fn position(&self, job: &JobRecord) -> Result<Option<u64>> {
        let key = self.queue_key(job.queue());
        let mut pipe = redis::pipe();
        pipe.cmd("LPOS")
            .arg(&key)
            .arg(job.raw_bytes())
            .arg("RANK")
            .arg(-1)
            .cmd("LLEN")
            .arg(&key);
        let (index, len): (Option<u64>, u64) = self.query_pipe(&pipe).await?;
        Ok(index.map(|index| len.saturating_sub(index + 1)))
    }
}

/// A status from a job found in a queue or set.
fn described(jid: &str, state: State, job: &JobRecord) -> JobStatus {
    let mut status = JobStatus::bare(jid, state, false);
    status.class = Some(job.display_class().to_string());
    status.queue = Some(job.queue().to_string());
    status.enqueued_at = job.enqueued_at();
    status.next_at = job.score();
    status.retry_count = job.retry_count().and_then(|c| u64::try_from(c).ok());
    status.error = job.error_message().map(|message| match job.error_class() {
        Some(class) => format!("{class}: {message}"),
        None => message.to_string(),
    });
    status
}

impl<O> crate::JobHandle<O> {
    /// Cancels the job (see [`Api::cancel`]).
    pub async fn cancel(&self) -> Result<Cancellation> {
        let (conn, config) = self.client.redis("cancelling jobs")?;
        let api = Api {
            conn: conn.clone(),
            keys: self.client.keys().clone(),
            config: config.clone(),
        };
        api.cancel(&self.jid).await
    }
}
