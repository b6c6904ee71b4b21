//! A server's side of a job's life beyond running it: tracked jobs' status, progress, the
//! event stream, and cancellation.
//!
//! - Everything goes through one writer task ([`write_notes`]), which sends whatever has
//!   gathered in one pipeline, in the order it was sent: a tracked job's start, its
//!   progress, its end (and only then its acknowledgement, so a crash cannot lose the end of
//!   a job that is gone from its in-progress hash), and the events. No job waits for a
//!   round trip of its own; a busy server writes hundreds of statuses in one.
//! - A failure, a snooze or a cancel is written by the processor in its own transaction;
//!   for a tracked job it first waits for the writer to catch up ([`Lifecycle::flush`]), so
//!   the job's "running" cannot land after it.
//! - Cancellation: every process reads the `cancels` set twice a second
//!   ([`watch_cancels`]), cancels the running jobs it names, and keeps the day's cancelled
//!   jids in a book, so a cancelled job fetched later (pushed back, recovered, retried) ends
//!   as cancelled without running.
//!
//! A server with nothing tracked, no events and no cancellation pays one empty-book check
//! and one substring search per job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::job::context::{JobContext, Reporter};
use crate::job::job_events::{self, Event, EventKind};
use crate::job::status::{self, Progress};
use crate::server::acks::LaterAck;
use crate::server::running::Running;
use crate::store::connection::Connection;
use crate::store::keys::Keys;
use crate::store::outage::{Outage, query_until_ok};

/// How often a process reads the `cancels` set.
pub(crate) const CANCEL_POLL: Duration = Duration::from_millis(500);
/// How long a cancelled jid is remembered (and kept in `cancels`).
pub(crate) const CANCEL_MEMORY_SECS: f64 = 86_400.0;
/// How long a job's progress is kept when the job is not tracked.
const UNTRACKED_PROGRESS_SECS: u64 = 3_600;

/// What the writer task writes.
pub(crate) enum Note {
    /// A tracked job's start.
    Start(redis::Pipeline),
    /// A tracked job's end, then its acknowledgement.
    End {
        commands: redis::Pipeline,
        ack: Option<LaterAck>,
    },
    /// Everything sent before is written: tell the sender.
    Barrier(tokio::sync::oneshot::Sender<()>),
    /// A job's progress (and its event).
    Progress {
        jid: String,
        class: String,
        queue: String,
        progress: Progress,
        retention: Option<u64>,
    },
    /// An untracked job that reported progress ended: its progress goes.
    Forget { jid: String },
    /// An event for the stream.
    Event(Event),
}

/// The jids cancelled in the last day, as this process has read them.
#[derive(Default)]
pub(crate) struct CancelBook {
    jids: Mutex<HashMap<String, f64>>,
    any: AtomicBool,
}

impl CancelBook {
    /// Whether `jid` was cancelled (free while nothing was).
    pub fn has(&self, jid: &str) -> bool {
        self.any.load(Ordering::Relaxed)
            && self
                .jids
                .lock()
                .expect("cancel book lock")
                .contains_key(jid)
    }

    /// Adds cancelled jids (with when) and forgets those older than a day before `now`.
    fn note(&self, cancelled: &[(String, f64)], now: f64) {
        let mut jids = self.jids.lock().expect("cancel book lock");
        for (jid, at) in cancelled {
            jids.insert(jid.clone(), *at);
        }
        jids.retain(|_, at| *at > now - CANCEL_MEMORY_SECS);
        self.any.store(!jids.is_empty(), Ordering::Relaxed);
    }
}

/// The server's lifecycle settings and channels, shared by every job.
pub(crate) struct Lifecycle {
    pub keys: Arc<Keys>,
    pub identity: String,
    /// Track every job for this many seconds (`--track-all`).
    pub track_all: Option<u64>,
    /// Write the event stream, capped at about this many entries (`--events`).
    pub events: Option<usize>,
    pub notes: mpsc::UnboundedSender<Note>,
    pub book: Arc<CancelBook>,
    /// How long a cancelled job may go on before its task is dropped.
    pub grace: Duration,
}

impl Lifecycle {
    /// Whether a job's start is written anywhere (it is tracked, or the stream is on).
    pub fn reports_start(&self, job: &JobContext) -> bool {
        self.events.is_some() || job.tracked_for().is_some()
    }

    /// Sends a tracked job's start (and its `started` event) to the writer: written before
    /// its end, without waiting for it.
    pub fn starting(&self, job: &JobContext) {
        if let Some(retention) = job.tracked_for() {
            let mut pipe = redis::pipe();
            let payload = job.payload();
            let rerun =
                payload.contains("\"retry_count\"") || payload.contains("\"recovery_count\"");
            // A job tracked since its push has its TTL; one the server tracks gets it now.
            let since_push = payload.contains("\"track\"");
            status::started(
                &mut pipe,
                &self.keys,
                (job.jid(), job.class(), job.queue()),
                &self.identity,
                crate::clock::now_secs(),
                rerun,
                (rerun || !since_push).then_some(retention.as_secs()),
            );
            let _ = self.notes.send(Note::Start(pipe));
        }
        if self.events.is_some() {
            self.event(
                Event::new(
                    EventKind::Started,
                    job.jid(),
                    job.class(),
                    job.queue(),
                    crate::clock::now_secs(),
                )
                .with("process", &self.identity),
            );
        }
    }

    /// Sends a tracked job's end to the writer, which acknowledges the job once it is
    /// written.
    pub fn ending(&self, commands: redis::Pipeline, ack: Option<LaterAck>) {
        // If the writer is gone, the note (and its ack) is dropped: the job stays in its
        // in-progress hash and runs again when recovered.
        let _ = self.notes.send(Note::End { commands, ack });
    }

    /// Waits until everything sent to the writer so far is written (before a transaction
    /// of the processor's about a tracked job).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.notes.send(Note::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Sends an event to the stream, if the stream is on.
    pub fn event(&self, event: Event) {
        if self.events.is_some() {
            let _ = self.notes.send(Note::Event(event));
        }
    }

    /// After a job that reported progress ended: writes what the throttle held back (a
    /// tracked job), or forgets its progress (an untracked one).
    pub fn settle_progress(&self, job: &JobContext) {
        let (latest, unwritten) = job.signals().last_progress();
        let Some(progress) = latest else {
            return;
        };
        if job.tracked_for().is_none() {
            let _ = self.notes.send(Note::Forget {
                jid: job.jid().to_string(),
            });
        } else if unwritten {
            self.progress(job, &progress);
        }
    }
}

impl Reporter for Lifecycle {
    fn progress(&self, job: &JobContext, progress: &Progress) {
        let _ = self.notes.send(Note::Progress {
            jid: job.jid().to_string(),
            class: job.class().to_string(),
            queue: job.queue().to_string(),
            progress: progress.clone(),
            retention: job.tracked_for().map(|d| d.as_secs()),
        });
    }
}

/// Writes what the jobs send (starts, progress, ends, events) as it comes, whatever has
/// gathered in one pipeline, until every sender is gone; then acknowledges the jobs whose
/// end it wrote and answers the barriers. `events` is the stream's cap, if the stream is on.
pub(crate) async fn write_notes(
    mut notes: mpsc::UnboundedReceiver<Note>,
    mut conn: Connection,
    keys: Arc<Keys>,
    events: Option<usize>,
) {
    let mut batch = Vec::new();
    let mut outage = Outage::new("writing job statuses");
    while notes.recv_many(&mut batch, 1_000).await > 0 {
        let mut pipe = redis::pipe();
        let mut acks = Vec::new();
        let mut barriers = Vec::new();
        for note in batch.drain(..) {
            match note {
                Note::Start(commands) => append(&mut pipe, &commands),
                Note::End { commands, ack } => {
                    append(&mut pipe, &commands);
                    acks.extend(ack);
                }
                Note::Barrier(done) => barriers.push(done),
                Note::Progress {
                    jid,
                    class,
                    queue,
                    progress,
                    retention,
                } => {
                    let keep = retention.unwrap_or(UNTRACKED_PROGRESS_SECS);
                    status::progressed(&mut pipe, &keys, &jid, &progress, keep);
                    if let Some(cap) = events {
                        let event = Event::new(
                            EventKind::Progress,
                            &jid,
                            &class,
                            &queue,
                            crate::clock::now_secs(),
                        )
                        .with("done", progress.done)
                        .with("total", progress.total)
                        .with("message", &progress.message);
                        job_events::append(&mut pipe, &keys, &event, cap, true);
                    }
                }
                Note::Forget { jid } => {
                    pipe.del(keys.status(&jid)).ignore();
                }
                Note::Event(event) => {
                    if let Some(cap) = events {
                        job_events::append(&mut pipe, &keys, &event, cap, true);
                    }
                }
            }
        }
        let mut written = true;
        if pipe.cmd_iter().next().is_some() {
            // Until Redis answers: a job's end must land before its acknowledgement.
            if let Err(e) = query_until_ok(&mut conn, &pipe, &mut outage).await {
                tracing::error!(error = %e, "writing job statuses: {}; not retried, as waiting will not cure it; the jobs whose end was not written stay in their in-progress hashes and run again when recovered", crate::store::errors::explain(&e));
                written = false;
            }
        }
        if written {
            for ack in acks {
                ack.send();
            }
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
}

/// Appends `commands` to `pipe`.
fn append(pipe: &mut redis::Pipeline, commands: &redis::Pipeline) {
    for command in commands.cmd_iter() {
        pipe.add_command(command.clone()).ignore();
    }
}

/// Reads the whole `cancels` set into `book` (before the first fetch: a job cancelled
/// before this process started may come back to it); the newest mark's time, for
/// [`watch_cancels`] to go on from.
pub(crate) async fn load_cancels(
    conn: &Connection,
    keys: &Keys,
    book: &CancelBook,
) -> redis::RedisResult<f64> {
    let marks: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
        .arg(keys.cancels())
        .arg("-inf")
        .arg("+inf")
        .arg("WITHSCORES")
        .query_async(&mut conn.clone())
        .await?;
    let newest = marks
        .iter()
        .map(|(_, at)| *at)
        .fold(f64::NEG_INFINITY, f64::max);
    book.note(&marks, newest);
    Ok(newest)
}

/// Reads the `cancels` set newer than `since` every [`CANCEL_POLL`] until `stop`, notes
/// what is new in `book`, and cancels the running jobs it names.
pub(crate) async fn watch_cancels(
    conn: Connection,
    keys: Arc<Keys>,
    book: Arc<CancelBook>,
    running: Running,
    mut stop: watch::Receiver<bool>,
    mut since: f64,
) {
    loop {
        let read: redis::RedisResult<Vec<(String, f64)>> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys.cancels())
            .arg(if since.is_finite() {
                format!("({since}")
            } else {
                "-inf".to_string()
            })
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(&mut conn.clone())
            .await;
        match read {
            Ok(cancelled) if !cancelled.is_empty() => {
                since = cancelled.iter().map(|(_, at)| *at).fold(since, f64::max);
                book.note(&cancelled, since);
                cancel_running(&running, &cancelled);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "reading cancelled jobs"),
        }
        tokio::select! {
            _ = tokio::time::sleep(CANCEL_POLL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Cancels the running jobs whose jid is among `cancelled`.
fn cancel_running(running: &Running, cancelled: &[(String, f64)]) {
    let running = running.lock().expect("running jobs lock");
    for job in running.values() {
        for (jid, _) in cancelled {
            if !crate::job::payload::names_jid(&job.work.raw, jid) {
                continue;
            }
            if !job.signals.is_cancelled() {
                tracing::info!(jid = %crate::job::text::printable(jid), "cancelling a running job");
                job.signals.cancel();
            }
        }
    }
}
