//! Runs one fetched job: reads the payload, finds the worker, performs it, and on failure
//! hands the job to the retry rules.
//!
//! Nothing here can take the server down: a payload that is not JSON, a missing class or
//! arguments, an unknown class, arguments of the wrong shape and a panic inside `perform`
//! all end as a failed job with an error message that says what was wrong.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::keys::Keys;
use crate::payload::{self, JobHead, JobMap};
use crate::retry::{self, Disposition};
use crate::stats::Stats;
use crate::worker::{Handler, JobError, JobFuture, JobInfo, JobResult, Registry};

/// Everything a job needs to run, shared by all running jobs of a server.
pub(crate) struct Processor {
    pub registry: Arc<Registry>,
    pub keys: Arc<Keys>,
    pub conn: ConnectionManager,
    pub stats: Arc<Stats>,
}

/// How one run ended.
enum Outcome<'a> {
    Done,
    /// Failed; `exhaust_now` sends it to the dead set whatever its retries say.
    Failed {
        error: JobError,
        handler: Option<&'a Arc<dyn Handler>>,
        exhaust_now: bool,
    },
    /// Not a JSON object: it cannot be rewritten, so it is wrapped for the dead set.
    Unreadable {
        reason: String,
    },
}

impl Processor {
    /// Runs the job `raw` fetched from `queue`, counts it and records a failure in Redis.
    pub async fn process(&self, queue: &str, raw: &str) {
        let started = Instant::now();
        let outcome = self.run(queue, raw).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let failed = !matches!(outcome, Outcome::Done);
        self.stats.record(failed);
        let now = payload::now_secs();
        let disposition = match outcome {
            Outcome::Done => return,
            Outcome::Unreadable { reason } => {
                tracing::warn!(queue, %reason, "unreadable payload moved to the dead set");
                Disposition::Dead {
                    payload: retry::wrap_unreadable(raw, queue, &reason, now),
                }
            }
            Outcome::Failed {
                error,
                handler,
                exhaust_now,
            } => {
                // `run` parsed it as an object already, so this only fails on memory trouble.
                let Ok(mut job) = serde_json::from_str::<JobMap>(raw) else {
                    let reason = format!("payload is not a JSON object ({error})");
                    let payload = retry::wrap_unreadable(raw, queue, &reason, now);
                    return self.write(&Disposition::Dead { payload }, now, raw).await;
                };
                let class = job
                    .get("class")
                    .and_then(|c| c.as_str())
                    .unwrap_or("?")
                    .to_string();
                let jid = job
                    .get("jid")
                    .and_then(|c| c.as_str())
                    .unwrap_or("?")
                    .to_string();
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
                tracing::warn!(class, jid, queue, elapsed_ms, error = %error, next, "job failed");
                disposition
            }
        };
        self.write(&disposition, now, raw).await;
    }

    async fn run(&self, queue: &str, raw: &str) -> Outcome<'_> {
        // serde would also read a struct from a JSON array; a payload must be an object.
        if !raw.trim_start().starts_with('{') {
            let reason = match serde_json::from_str::<serde::de::IgnoredAny>(raw) {
                Ok(_) => "payload is JSON but not a JSON object".to_string(),
                Err(e) => format!("payload is not a JSON object: {e}"),
            };
            return Outcome::Unreadable { reason };
        }
        let head: JobHead = match serde_json::from_str(raw) {
            Ok(head) => head,
            Err(e) => {
                return Outcome::Unreadable {
                    reason: format!("payload is not a JSON object: {e}"),
                };
            }
        };
        let (Some(class), Some(args)) = (head.class.as_deref(), head.args) else {
            let missing = if head.class.is_none() {
                "class"
            } else {
                "args"
            };
            return Outcome::Failed {
                error: JobError::new(
                    "Psychiq::InvalidPayload",
                    format!("payload has no \"{missing}\" field"),
                ),
                handler: None,
                exhaust_now: true,
            };
        };
        let jid = head.jid.as_deref().unwrap_or("");
        let Some(handler) = self.registry.get(class) else {
            return Outcome::Failed {
                error: JobError::new(
                    "Psychiq::UnknownClass",
                    format!(
                        "no worker is registered for class \"{class}\" in this process; it will be retried in case a deploy has not reached it yet"
                    ),
                ),
                handler: None,
                exhaust_now: false,
            };
        };
        let info = JobInfo {
            class,
            jid,
            queue,
            args: args.get(),
        };
        let future = match handler.start(&info) {
            Ok(future) => future,
            Err(e) => {
                return Outcome::Failed {
                    error: JobError::new(
                        "Psychiq::InvalidArguments",
                        format!("arguments {} do not fit worker {class}: {e}", args.get()),
                    ),
                    handler: Some(handler),
                    exhaust_now: true,
                };
            }
        };
        tracing::info!(class, jid, queue, "start");
        let started = Instant::now();
        let result = match (CatchUnwind { future }).await {
            Ok(result) => result,
            Err(panic) => Err(JobError::new("Panic", panic_message(panic.as_ref()))),
        };
        match result {
            Ok(()) => {
                let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                tracing::info!(class, jid, queue, elapsed_ms, "done");
                Outcome::Done
            }
            Err(error) => Outcome::Failed {
                error,
                handler: Some(handler),
                exhaust_now: false,
            },
        }
    }

    /// Writes a failed job to `retry` or `dead`, retrying while Redis is unreachable.
    async fn write(&self, disposition: &Disposition, now: f64, raw: &str) {
        let Some(pipe) = retry::commands(disposition, &self.keys, now) else {
            return;
        };
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=8 {
            let mut conn = self.conn.clone();
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => return,
                Err(e) if attempt == 8 => {
                    tracing::error!(error = %e, payload = raw, "could not record a failed job in Redis; its payload is logged here so it can be pushed again");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recording a failed job: Redis error, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Polls a job's future, turning a panic into an `Err` instead of unwinding the server.
struct CatchUnwind {
    future: JobFuture,
}

impl Future for CatchUnwind {
    type Output = Result<JobResult, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.future;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => Poll::Ready(Ok(result)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked with a non-string payload".to_string()
    }
}
