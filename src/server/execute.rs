//! The first step of running a job, with no Redis: read the payload, find the worker, run
//! the server middleware around `perform` in the job's context, catch panics and timeouts,
//! and decide the [`Outcome`]. The server's processor writes what it decides; the test
//! mode's drains run jobs through the same [`Executor`], so both follow the same rules.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::job::context::{self, JobContext, Signals};
use crate::job::failure::JobError;
use crate::job::middleware::{Next, Outcome, ServerChain};
use crate::job::payload::{self, JobHead};
use crate::job::text;
use crate::job::unwind::{CatchUnwind, panic_message};
use crate::job::worker::{RawJob, RawWorker};
use crate::server::job_log::{self, JobLine};
use crate::server::lifecycle::Lifecycle;
use crate::server::registry::Registry;
use crate::server::stats::Stats;
use serde_json::Value;

/// What running a job needs and nothing more: no Redis. The server and the test mode
/// (`crate::testing`) both run jobs through it, so both follow the same rules.
pub(crate) struct Executor {
    pub registry: Arc<Registry>,
    /// The server's default job timeout.
    pub job_timeout: Option<Duration>,
    pub middleware: ServerChain,
    /// Per-class run counts and durations.
    pub stats: Arc<Stats>,
    /// Status, progress, events and cancellation (a server's; none in the test mode).
    pub lifecycle: Option<Arc<Lifecycle>>,
    /// Opens sealed arguments (see [`crate::encryption`]).
    pub keyring: Option<Arc<crate::encryption::Keyring>>,
}

/// What [`Executor::execute`] decided.
pub(crate) enum Verdict<'a> {
    /// The run's outcome. `exhaust_now` sends a failure to the dead set whatever its
    /// retries say (arguments that can never fit).
    Ran {
        outcome: Outcome,
        handler: Option<&'a Arc<dyn RawWorker>>,
        exhaust_now: bool,
        /// The job as it ran (absent when its payload could not be read that far).
        job: Option<Arc<JobContext>>,
    },
    /// Not UTF-8 or not a JSON object: it cannot be rewritten, so it is wrapped for the dead set.
    Unreadable { reason: String },
}

impl Verdict<'_> {
    fn failed(
        error: JobError,
        handler: Option<&Arc<dyn RawWorker>>,
        exhaust_now: bool,
    ) -> Verdict<'_> {
        Verdict::Ran {
            outcome: Outcome::Failed(error),
            handler,
            exhaust_now,
            job: None,
        }
    }

    /// The same verdict, about `job`.
    fn about(mut self, context: &Arc<JobContext>) -> Self {
        if let Verdict::Ran { job, .. } = &mut self {
            *job = Some(Arc::clone(context));
        }
        self
    }
}

impl Executor {
    /// The sealed `args` of a job of `class` opened with key `key` (a JSON value naming
    /// it), as JSON text; an error says what to do (it will not cure by waiting, so the job
    /// dies, to be retried by hand once the key is there).
    fn open(&self, class: &str, key: &Value, args: &str) -> std::result::Result<String, String> {
        let Some(key) = key.as_str() else {
            return Err("the payload's psychiq_encrypted is not a key id".into());
        };
        let Some(keyring) = &self.keyring else {
            return Err(format!(
                "the arguments are sealed with encryption key {key:?} and this server has no keys; set {} (see the README's encryption), then retry the job from the dead set",
                crate::encryption::KEYS_ENV
            ));
        };
        let sealed = crate::encryption::sealed_text(args).ok_or(
            "the payload says its arguments are sealed, but args is not one sealed string",
        )?;
        let opened = keyring
            .open(class, key, &sealed)
            .map_err(|e| e.to_string())?;
        String::from_utf8(opened).map_err(|_| "the opened arguments are not UTF-8 JSON".to_string())
    }

    /// Decides the job's outcome; never writes to Redis.
    pub(crate) async fn execute(
        &self,
        queue: &Arc<str>,
        raw: &Arc<[u8]>,
        signals: &Arc<Signals>,
    ) -> Verdict<'_> {
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text,
            Err(e) => {
                return Verdict::Unreadable {
                    reason: format!(
                        "payload is not valid UTF-8 ({e}); its exact bytes are kept base64-encoded in raw_base64"
                    ),
                };
            }
        };
        // serde would also read a struct from a JSON array; a payload must be an object.
        if !text.trim_start().starts_with('{') {
            let reason = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => "payload is JSON but not a JSON object".to_string(),
                Err(e) => format!("payload is not a JSON object: {e}"),
            };
            return Verdict::Unreadable { reason };
        }
        let head: JobHead = match serde_json::from_str(text) {
            Ok(head) => head,
            Err(e) => {
                return Verdict::Unreadable {
                    reason: format!(
                        "payload could not be read as a job (class and jid must be strings): {e}"
                    ),
                };
            }
        };
        let (Some(class), Some(args)) = (head.class.as_deref(), head.args) else {
            let missing = if head.class.is_none() {
                "class"
            } else {
                "args"
            };
            let error = JobError::new(
                "Psychiq::InvalidPayload",
                format!("payload has no \"{missing}\" field"),
            );
            return Verdict::failed(error, None, true);
        };
        let jid = head.jid.as_deref().unwrap_or("");
        // A Rails `perform_later`: the worker is the ActiveJob class, its arguments Rails'
        // (unless the app registered a worker for the wrapper class itself, which then gets
        // the payload's own arguments).
        let active_job =
            if crate::job::active_job::is_wrapper(class) && self.registry.get(class).is_none() {
                match crate::job::active_job::ActiveJob::from_args(args.get()) {
                    Ok(active_job) => Some(active_job),
                    Err(reason) => {
                        let error = JobError::new("Psychiq::InvalidPayload", reason);
                        return Verdict::failed(error, None, true);
                    }
                }
            } else {
                None
            };
        // The context owns the ActiveJob record; the worker's class and arguments are read
        // from it.
        let mut job = JobContext::new(Arc::clone(raw), Arc::clone(queue), class, jid, args.get())
            .with_signals(Arc::clone(signals));
        if let Some(active_job) = active_job {
            job = job.with_active_job(active_job);
        }
        let job = Arc::new(job);
        let lifecycle = self.lifecycle.as_deref();
        let (class, args) = match job.active_job() {
            Some(active_job) => (active_job.job_class(), active_job.arguments()),
            None => (class, args.get()),
        };
        let handler = self.registry.get(class);
        // Tracked as the payload asks, else as its worker asks, else as the server does.
        // The payload's own `track` is read from the context's fields (parsed once, shared
        // with the middleware), only when the payload names it.
        let asked = text
            .contains("\"track\"")
            .then(|| job.field(crate::job::status::TRACK_FIELD))
            .flatten()
            .and_then(crate::job::status::retention_of);
        if let Some(secs) = asked
            .or_else(|| handler.and_then(|h| h.options().track.map(|t| t.as_secs().max(1))))
            .or_else(|| lifecycle.and_then(|l| l.track_all))
        {
            job.track(secs);
        }
        if lifecycle.is_some_and(|l| l.book.has(jid)) {
            // Cancelled before it ran (pushed back, recovered or retried since): it ends so.
            return Verdict::Ran {
                outcome: Outcome::Cancelled,
                handler,
                exhaust_now: false,
                job: Some(job),
            };
        }
        let Some(handler) = handler else {
            let error = JobError::new(
                "Psychiq::UnknownClass",
                format!(
                    "no worker is registered for class \"{class}\" in this process; it will be retried in case a deploy has not reached it yet"
                ),
            );
            return Verdict::failed(error, None, false).about(&job);
        };
        // Sealed arguments are opened here, for the worker alone: the payload (and so the
        // retry and dead sets, the middleware and the logs) keeps them sealed.
        let opened = match text
            .contains(crate::encryption::ENCRYPTED_FIELD)
            .then(|| job.field(crate::encryption::ENCRYPTED_FIELD))
            .flatten()
        {
            Some(key) => match self.open(class, key, args) {
                Ok(opened) => Some(opened),
                Err(reason) => {
                    let error = JobError::new("Psychiq::EncryptionError", reason);
                    return Verdict::failed(error, Some(handler), true).about(&job);
                }
            },
            None => None,
        };
        let shown = if opened.is_some() {
            crate::encryption::SHOWN
        } else {
            args
        };
        let info = RawJob {
            class,
            jid,
            queue,
            args: opened.as_deref().unwrap_or(args),
        };
        let future = match handler.start(&info) {
            Ok(future) => future,
            Err(e) => {
                // serde's message quotes the value: for opened arguments only where it
                // went wrong is said, so no secret reaches the dead set or a log.
                let why = if opened.is_some() {
                    format!(
                        "{:?} error at line {} column {}",
                        e.classify(),
                        e.line(),
                        e.column()
                    )
                } else {
                    e.to_string()
                };
                let error = JobError::new(
                    "Psychiq::InvalidArguments",
                    format!("arguments {shown} do not fit worker {class}: {why}"),
                );
                return Verdict::failed(error, Some(handler), true).about(&job);
            }
        };
        // Every log line of the job (the worker's own too) carries these: through this
        // span, or added by a log stream that reads them from the job's context.
        let span = if job_log::span_needed() {
            tracing::info_span!(
                "job",
                class = %text::printable(class),
                jid = %text::printable(jid),
                queue = %text::printable(queue),
                retry_count = payload::retry_count_hint(text),
            )
        } else {
            tracing::Span::none()
        };
        #[cfg(feature = "opentelemetry")]
        if let Some(traceparent) = crate::job::otel::traceparent_in(text) {
            crate::job::otel::continue_from(&span, traceparent);
        }
        // Psychiq's own start and done lines name the job themselves (top-level fields in
        // JSON logs); the worker's lines inside the span carry the span's.
        job_log::say(JobLine {
            message: "start",
            class,
            jid,
            queue,
            elapsed_us: None,
        });
        if let Some(lifecycle) = lifecycle.filter(|l| l.reports_start(&job)) {
            lifecycle.starting(&job);
        }
        let started = Instant::now();
        let timeout = handler.options().timeout.or(self.job_timeout);
        // Asked once, of the text already read (the context would check its UTF-8 again).
        let chained = self.middleware.wanted_by(text);
        let grace = lifecycle.map(|l| l.grace);
        let mut outcome = self
            .perform(&job, future, timeout, grace, chained)
            .instrument(span)
            .await;
        if matches!(outcome, Outcome::Failed(_))
            && (job.is_cancelled() || lifecycle.is_some_and(|l| l.book.has(jid)))
        {
            // Failed after its cancel, before the run saw it: not retried. (A run that saw
            // its cancel ends `Cancelled` itself; one that succeeded first succeeded.)
            outcome = Outcome::Cancelled;
        }
        let failed = matches!(outcome, Outcome::Failed(_));
        if !matches!(
            outcome,
            Outcome::Skipped(_) | Outcome::Snoozed(_) | Outcome::Cancelled
        ) {
            self.stats.record_class(class, started.elapsed(), failed);
        }
        if outcome.is_done() {
            job_log::say(JobLine {
                message: "done",
                class,
                jid,
                queue,
                elapsed_us: Some(started.elapsed().as_micros() as u64),
            });
        }
        Verdict::Ran {
            outcome,
            handler: Some(handler),
            exhaust_now: false,
            job: Some(job),
        }
    }

    /// `perform` inside the middleware chain, with the job as the current context. The
    /// timeout and the panic catcher wrap `perform` itself, so middleware see a panic or a
    /// timeout as an outcome; a second catcher around the chain turns a middleware's own
    /// panic into a failure of the job.
    async fn perform(
        &self,
        job: &Arc<JobContext>,
        future: crate::job::worker::JobFuture,
        timeout: Option<Duration>,
        grace: Option<Duration>,
        chained: bool,
    ) -> Outcome {
        let signals = Arc::clone(job.signals());
        context::scope(Arc::clone(job), async {
            if !chained {
                // No chain, or none of it wants this job: no box, no dynamic call.
                return guarded(future, timeout, signals, grace).await;
            }
            let perform = Box::pin(guarded(future, timeout, signals, grace));
            // Built inside the catcher: a middleware's `call` may panic before its future.
            let chain = Box::pin(async { Next::new(&self.middleware, job, perform).run().await });
            match CatchUnwind::new(chain).await {
                Ok(outcome) => outcome,
                Err(panic) => Outcome::Failed(JobError::new(
                    "Panic",
                    format!("in a middleware: {}", panic_message(panic.as_ref())),
                )),
            }
        })
        .await
    }
}

/// A job's own future as an outcome: its panics caught, cancelled after `timeout`, and
/// dropped `grace` after it was cancelled (with no `grace`, as in the test mode, a
/// cancelled job runs on until it stops by itself).
async fn guarded(
    future: crate::job::worker::JobFuture,
    timeout: Option<Duration>,
    signals: Arc<Signals>,
    grace: Option<Duration>,
) -> Outcome {
    let Some(grace) = grace else {
        return timed(future, timeout).await;
    };
    let run = timed(future, timeout);
    let mut run = std::pin::pin!(run);
    // The flag is read at each poll, and the task woken by a cancel: no waiter is
    // registered anywhere unless the job awaits something.
    let ended = std::future::poll_fn(|cx| {
        if signals.is_cancelled() {
            return Poll::Ready(None);
        }
        match run.as_mut().poll(cx) {
            Poll::Ready(outcome) => Poll::Ready(Some(outcome)),
            Poll::Pending => {
                signals.wake_on_cancel(cx.waker());
                if signals.is_cancelled() {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            }
        }
    })
    .await;
    if let Some(outcome) = ended {
        return outcome;
    }
    // Cancelled: whatever it returns within its grace (stopping early is how it obeys), it
    // ends `Cancelled`, so every middleware sees that. Boxed: the timer would make every
    // job's future larger.
    if Box::pin(tokio::time::timeout(grace, run)).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs_f64(),
            "a cancelled job did not stop within its grace period; its task was dropped"
        );
    }
    Outcome::Cancelled
}

/// A job's own future as an outcome: its panics caught, cancelled after `timeout`.
async fn timed(future: crate::job::worker::JobFuture, timeout: Option<Duration>) -> Outcome {
    let caught = match timeout {
        None => CatchUnwind::new(future).await,
        Some(limit) => match tokio::time::timeout(limit, CatchUnwind::new(future)).await {
            Ok(caught) => caught,
            Err(_) => {
                return Outcome::Failed(JobError::new(
                    "Psychiq::JobTimeout",
                    format!(
                        "job ran longer than its {:.3} s timeout and was cancelled",
                        limit.as_secs_f64()
                    ),
                ));
            }
        },
    };
    match caught {
        Ok(result) => Outcome::from_result(result),
        Err(panic) => Outcome::Failed(JobError::new("Panic", panic_message(panic.as_ref()))),
    }
}
