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

use crate::connection::Connection;

use crate::connection::{Outage, query_until_ok};
use crate::manager::Acks;

use crate::keys::Keys;
use crate::payload::{self, JobHead, Rewrite};
use crate::retry::{self, Disposition};
use crate::stats::Stats;
use crate::text;
use crate::worker::{Handler, JobError, JobFuture, JobInfo, JobResult, Registry};

/// Everything a job needs to run, shared by all running jobs of a server.
pub(crate) struct Processor {
    pub registry: Arc<Registry>,
    pub keys: Arc<Keys>,
    pub conn: Connection,
    pub stats: Arc<Stats>,
    /// Where finished jobs are acknowledged (reliable fetch).
    pub acks: Acks,
    /// The server's default job timeout.
    pub job_timeout: Option<Duration>,
}

/// Why a run did not succeed.
enum Failure<'a> {
    /// Failed; `exhaust_now` sends it to the dead set whatever its retries say.
    Failed {
        error: JobError,
        handler: Option<&'a Arc<dyn Handler>>,
        exhaust_now: bool,
    },
    /// Not a JSON object: it cannot be rewritten, so it is wrapped for the dead set.
    Unreadable { reason: String },
}

impl Processor {
    /// Runs the job `raw` fetched from `queue`, counts it, records a failure in Redis and
    /// acknowledges it (removes it from its in-progress list, if it has one).
    pub async fn process(&self, queue: &str, raw: &Arc<[u8]>, inprogress: Option<&Arc<str>>) {
        let started = Instant::now();
        let outcome = match std::str::from_utf8(raw) {
            Ok(text) => self.run(queue, text).await,
            Err(e) => Err(Failure::Unreadable {
                reason: format!(
                    "payload is not valid UTF-8 ({e}); its exact bytes are kept base64-encoded in raw_base64"
                ),
            }),
        };
        let Err(failure) = outcome else {
            self.stats.record(false);
            if let Some(list) = inprogress {
                self.acks.send(list, raw);
            }
            return;
        };
        // Only failures need the time and a rewrite.
        self.stats.record(true);
        let elapsed_ms = started.elapsed().as_micros() as f64 / 1000.0;
        let now = payload::now_secs();
        let disposition = match failure {
            Failure::Unreadable { reason } => {
                tracing::warn!(queue = %text::printable(queue), reason = %text::printable(&reason), "unreadable payload moved to the dead set");
                Disposition::Dead {
                    payload: retry::wrap_unreadable(raw, queue, &reason, now),
                }
            }
            Failure::Failed {
                error,
                handler,
                exhaust_now,
            } => {
                // `run` read its head; the whole of it can still fail (e.g. a number too large).
                // `run` got this far only with UTF-8.
                let text = std::str::from_utf8(raw).unwrap_or_default();
                let Ok(mut job) = Rewrite::parse(text) else {
                    let reason = format!("payload could not be parsed in full ({error})");
                    let payload = retry::wrap_unreadable(raw, queue, &reason, now);
                    return self
                        .write(&Disposition::Dead { payload }, now, raw, inprogress)
                        .await;
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
                disposition
            }
        };
        self.write(&disposition, now, raw, inprogress).await;
    }

    async fn run(&self, queue: &str, raw: &str) -> Result<(), Failure<'_>> {
        // serde would also read a struct from a JSON array; a payload must be an object.
        if !raw.trim_start().starts_with('{') {
            let reason = match serde_json::from_str::<serde::de::IgnoredAny>(raw) {
                Ok(_) => "payload is JSON but not a JSON object".to_string(),
                Err(e) => format!("payload is not a JSON object: {e}"),
            };
            return Err(Failure::Unreadable { reason });
        }
        let head: JobHead = match serde_json::from_str(raw) {
            Ok(head) => head,
            Err(e) => {
                return Err(Failure::Unreadable {
                    reason: format!(
                        "payload could not be read as a job (class and jid must be strings): {e}"
                    ),
                });
            }
        };
        let (Some(class), Some(args)) = (head.class.as_deref(), head.args) else {
            let missing = if head.class.is_none() {
                "class"
            } else {
                "args"
            };
            return Err(Failure::Failed {
                error: JobError::new(
                    "Psychiq::InvalidPayload",
                    format!("payload has no \"{missing}\" field"),
                ),
                handler: None,
                exhaust_now: true,
            });
        };
        let jid = head.jid.as_deref().unwrap_or("");
        let Some(handler) = self.registry.get(class) else {
            return Err(Failure::Failed {
                error: JobError::new(
                    "Psychiq::UnknownClass",
                    format!(
                        "no worker is registered for class \"{class}\" in this process; it will be retried in case a deploy has not reached it yet"
                    ),
                ),
                handler: None,
                exhaust_now: false,
            });
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
                return Err(Failure::Failed {
                    error: JobError::new(
                        "Psychiq::InvalidArguments",
                        format!("arguments {} do not fit worker {class}: {e}", args.get()),
                    ),
                    handler: Some(handler),
                    exhaust_now: true,
                });
            }
        };
        tracing::info!(
            class = %text::printable(class),
            jid = %text::printable(jid),
            queue = %text::printable(queue),
            "start"
        );
        let started = Instant::now();
        let timeout = handler.options().timeout.or(self.job_timeout);
        let caught = CatchUnwind { future };
        let caught = match timeout {
            None => caught.await,
            Some(limit) => match tokio::time::timeout(limit, caught).await {
                Ok(caught) => caught,
                Err(_) => Ok(Err(JobError::new(
                    "Psychiq::JobTimeout",
                    format!(
                        "job ran longer than its {:.3} s timeout and was cancelled",
                        limit.as_secs_f64()
                    ),
                ))),
            },
        };
        let result = match caught {
            Ok(result) => result,
            Err(panic) => Err(JobError::new("Panic", panic_message(panic.as_ref()))),
        };
        self.stats
            .record_class(class, started.elapsed(), result.is_err());
        match result {
            Ok(()) => {
                let elapsed_ms = started.elapsed().as_micros() as f64 / 1000.0;
                tracing::info!(
                    class = %text::printable(class),
                    jid = %text::printable(jid),
                    queue = %text::printable(queue),
                    elapsed_ms,
                    "done"
                );
                Ok(())
            }
            Err(error) => Err(Failure::Failed {
                error,
                handler: Some(handler),
                exhaust_now: false,
            }),
        }
    }

    /// Writes a failed job to `retry` or `dead` and removes it from its in-progress list,
    /// in one transaction, retrying while Redis is unreachable.
    async fn write(
        &self,
        disposition: &Disposition,
        now: f64,
        raw: &[u8],
        inprogress: Option<&Arc<str>>,
    ) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        retry::commands(disposition, &self.keys, now, &mut pipe);
        if let Some(list) = inprogress {
            pipe.lrem(&**list, -1, raw).ignore(); // from the oldest end, as acks do
        }
        if pipe.cmd_iter().next().is_none() {
            return;
        }
        if inprogress.is_none() {
            // Basic fetch: only this process holds the job until the write goes through.
            tracing::debug!(
                payload = %text::lossless(raw),
                "recording a failed job fetched without an in-progress list"
            );
        }
        let mut outage = Outage::new("recording a failed job");
        // Until it works: with reliable fetch the job is safe in its list meanwhile.
        query_until_ok(&mut self.conn.clone(), &pipe, &mut outage).await;
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
