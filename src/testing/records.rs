//! What a fake keeps: a job as a real client would have written it, a drain's counts, and
//! a failure with where it went.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::job::payload::JobMap;
use crate::job::worker::Worker;

/// One recorded job: the payload a real client would have written to Redis, and its
/// parsed fields.
#[derive(Clone)]
pub struct EnqueuedJob {
    pub(super) payload: Arc<str>,
    pub(super) fields: Arc<JobMap>,
    pub(super) queue: Arc<str>,
    pub(super) at: Option<f64>,
}

impl std::fmt::Debug for EnqueuedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.payload)
    }
}

impl EnqueuedJob {
    /// `queue` unless the payload names its own (a retry goes to `retry_queue`).
    pub(super) fn new(payload: String, queue: &str, at: Option<f64>) -> EnqueuedJob {
        let fields: JobMap = serde_json::from_str(&payload).unwrap_or_default();
        let queue = fields.get("queue").and_then(Value::as_str).unwrap_or(queue);
        EnqueuedJob {
            queue: queue.into(),
            payload: payload.into(),
            fields: Arc::new(fields),
            at,
        }
    }

    /// The payload's `class`.
    pub fn class(&self) -> &str {
        self.str_field("class")
    }

    /// The payload's `jid`.
    pub fn jid(&self) -> &str {
        self.str_field("jid")
    }

    /// The queue it waits in.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether it is a job of worker `W` (by class name).
    pub fn is<W: Worker>(&self) -> bool {
        self.class() == W::class_name()
    }

    /// Its arguments read as `T`, as a worker's `perform` would get them.
    pub fn args<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        crate::job::worker::parse_args(&self.args_json().to_string())
    }

    /// Its `args` array as JSON.
    pub fn args_json(&self) -> &Value {
        static EMPTY: Value = Value::Null;
        self.fields.get("args").unwrap_or(&EMPTY)
    }

    /// When it is due, if it was scheduled for later (or is a retry or snoozed job).
    pub fn at(&self) -> Option<SystemTime> {
        self.at
            .map(|secs| UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0)))
    }

    /// Any payload field: an option set with `Job::option`, `retry`, `tags`, ...
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// `retry_count` after a failure (`Some(0)` after the first).
    pub fn retry_count(&self) -> Option<i64> {
        self.field("retry_count").and_then(Value::as_i64)
    }

    /// `error_message` after a failure.
    pub fn error_message(&self) -> Option<&str> {
        self.field("error_message").and_then(Value::as_str)
    }

    /// The exact payload, as a real client writes it to Redis.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    pub(super) fn str_field(&self, name: &str) -> &str {
        self.fields.get(name).and_then(Value::as_str).unwrap_or("")
    }

    pub(super) fn due(&self, now: f64) -> bool {
        self.at.is_none_or(|at| at <= now)
    }
}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// Jobs whose `perform` ran to success.
    pub performed: usize,
    /// Jobs that asked to run later (`JobError::snooze`): back among the scheduled jobs.
    pub snoozed: usize,
    /// Jobs dropped on purpose (`JobError::discard`).
    pub discarded: usize,
    /// Jobs a middleware skipped.
    pub skipped: usize,
}

/// Where a failed job went, as a real server decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WentTo {
    /// Into [`super::Fake::retries`].
    Retry,
    /// Into [`super::Fake::dead`] (retries used up, `retry: 0`, or arguments that do not fit).
    Dead,
    /// Nowhere: `retry: false`, or dead with `dead: false`.
    Dropped,
}

/// A job that failed during a drain: the job as it ran, its error and where it went.
/// The jobs after it were not run; drain again to go on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobFailed {
    /// The job as it was when it ran.
    pub job: EnqueuedJob,
    /// Its error (`Panic` for a panic, `Psychiq::UnknownClass` for a class with no
    /// registered worker, `Psychiq::InvalidArguments` for arguments that do not fit).
    pub error: crate::JobError,
    /// Where the failed job went.
    pub went_to: WentTo,
}

impl std::fmt::Display for JobFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let next = match self.went_to {
            WentTo::Retry => "it waits in the retry set: Fake::retry_all runs it again",
            WentTo::Dead => "it went to the dead set",
            WentTo::Dropped => "it was dropped (retry: false)",
        };
        write!(
            f,
            "job {} {} failed with {}; {next}",
            self.job.class(),
            self.job.jid(),
            self.error
        )
    }
}

impl std::error::Error for JobFailed {}
