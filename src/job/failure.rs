//! Why a job failed, or asked not to be counted as failing: [`JobError`], what `perform`
//! returns, as Sidekiq stores it (`error_class`, `error_message`, `error_backtrace`). A leaf:
//! it names nothing else of the crate, so the crate's own [`crate::Error`] can carry one.

use std::time::Duration;

/// The result of performing a job.
pub type JobResult = Result<(), JobError>;

/// Why a job failed: stored in the payload as `error_class` and `error_message`.
///
/// Errors convert into it with `?` (any `std::error::Error`, `anyhow::Error`, boxed errors
/// and messages), taking the error type's name as its class; [`JobError::new`] names both
/// explicitly.
///
/// ```
/// use psychiq::JobError;
/// let err: JobError = "42x".parse::<u32>().unwrap_err().into();
/// assert_eq!(err.class(), "ParseIntError");
/// let err = JobError::new("PaymentDeclined", "card expired");
/// assert_eq!(err.message(), "card expired");
/// ```
#[derive(Debug, Clone)]
pub struct JobError {
    class: String,
    pub(crate) message: String,
    backtrace: Vec<String>,
    /// Not a failure but a request for another outcome.
    pub(crate) wish: Wish,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Wish {
    Fail,
    Snooze(Duration),
    Discard,
}

impl JobError {
    /// An error with an explicit class name and message.
    pub fn new(class: impl Into<String>, message: impl Into<String>) -> Self {
        JobError {
            class: class.into(),
            message: message.into(),
            backtrace: Vec::new(),
            wish: Wish::Fail,
        }
    }

    /// Not a failure: run the job again after `delay`, at least 1 ms (it goes back to the
    /// schedule, is not counted as failed and keeps its retry count).
    /// `return Err(JobError::snooze(d))`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let later = psychiq::JobError::snooze(Duration::from_secs(30));
    /// assert!(matches!(later.into_outcome(), psychiq::Outcome::Snoozed(d) if d.as_secs() == 30));
    /// ```
    pub fn snooze(delay: Duration) -> Self {
        // At least a millisecond: a delay of zero is the iterable job's requeue.
        let delay = delay.max(Duration::from_millis(1));
        JobError {
            wish: Wish::Snooze(delay),
            ..JobError::new("Psychiq::Snoozed", format!("snoozed for {delay:?}"))
        }
    }

    /// Not a failure: back to the end of its queue at once (an iterable job's slice ended),
    /// unmarked.
    pub(crate) fn requeue() -> Self {
        JobError {
            wish: Wish::Snooze(Duration::ZERO),
            ..JobError::new("Psychiq::Requeued", "requeued")
        }
    }

    /// Not a failure: drop the job for good, with the reason (logged and counted, never
    /// retried, not put in the dead set). `return Err(JobError::discard("order cancelled"))`.
    pub fn discard(reason: impl Into<String>) -> Self {
        JobError {
            wish: Wish::Discard,
            ..JobError::new("Psychiq::Discarded", reason)
        }
    }

    /// An error whose class is `RuntimeError`, as Ruby's `raise "message"` gives.
    pub fn msg(message: impl Into<String>) -> Self {
        JobError::new("RuntimeError", message)
    }

    /// Adds lines to store as `error_backtrace` when the worker's `backtrace` option is on.
    pub fn with_backtrace(mut self, lines: Vec<String>) -> Self {
        self.backtrace = lines;
        self
    }

    /// The class name stored in `error_class`.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The message stored in `error_message`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The lines stored in `error_backtrace` (when the worker asks for a backtrace).
    pub fn backtrace(&self) -> &[String] {
        &self.backtrace
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

/// Anything `Box<dyn Error + Send + Sync>` takes converts with `?`: every `std::error::Error`
/// (io, serde, sqlx, reqwest ...), `anyhow::Error`, boxed errors, and `String` / `&str`
/// messages. The class is the error's type, with its crate or module when the type is
/// just called `Error` (`io::Error`, `reqwest::Error`); a message is a `RuntimeError`, as
/// Ruby's `raise "..."`. The chain of causes becomes the backtrace.
impl<E> From<E> for JobError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn from(error: E) -> Self {
        let class = error_class(std::any::type_name::<E>());
        let error: Box<dyn std::error::Error + Send + Sync> = error.into();
        let mut backtrace = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            backtrace.push(format!("caused by: {cause}"));
            source = cause.source();
        }
        JobError {
            class,
            message: error.to_string(),
            backtrace,
            wish: Wish::Fail,
        }
    }
}

/// The `error_class` for an error of the type named `full`.
pub(crate) fn error_class(full: &str) -> String {
    match full {
        "alloc::string::String" | "&str" | "alloc::borrow::Cow<str>" => {
            return "RuntimeError".to_string();
        }
        _ if full.starts_with("alloc::boxed::Box<") => return "Error".to_string(),
        _ => {}
    }
    let base = full.split('<').next().unwrap_or(full);
    let mut segments = base.rsplit("::");
    let name = segments.next().unwrap_or(base);
    if name != "Error" {
        return name.to_string();
    }
    // `std::io::error::Error` → `io::Error`: the nearest module not itself named `error`.
    match segments.find(|s| *s != "error" && !s.is_empty()) {
        Some(module) => format!("{module}::Error"),
        None => name.to_string(),
    }
}
