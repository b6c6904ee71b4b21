//! Workers: the code that runs a job, its options and the registry that finds it by class.
//!
//! A worker is a type implementing [`Worker`]. Its `Args` are deserialised with serde from
//! the payload's `args` array, so a tuple `(u64, String)` reads `[42, "eur"]`. Its class
//! name is the string in the payload's `class` field; by default the type's own name, and
//! overridable so that `"Billing::InvoiceJob"` can be served by a Rust type.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::job::failure::{JobError, JobResult};
use crate::job::payload::{JobMap, Retry};

/// The last path segment of a type name, without generic parameters:
/// `my_app::jobs::SendEmail<T>` gives `SendEmail`.
pub(crate) fn short_type_name(full: &str) -> &str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Whether a failed job's payload keeps a backtrace (`error_backtrace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backtrace {
    /// No backtrace (the default, as in the original).
    #[default]
    Off,
    /// Every line.
    All,
    /// The first N lines.
    Lines(usize),
}

/// A worker's options, with the original's defaults: max retries 25, queue `"default"`,
/// dead set on, backtrace off.
///
/// ```
/// use psychiq::{Retry, WorkerOptions};
/// let options = WorkerOptions::default().queue("critical").retry(Retry::Max(3));
/// assert_eq!(options.queue, "critical");
/// assert!(options.dead);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// The queue jobs go to unless the enqueue says otherwise.
    pub queue: String,
    /// How often a failing job is retried.
    pub retry: Retry,
    /// Whether a job whose retries are exhausted goes to the dead set (else it is dropped).
    pub dead: bool,
    /// Whether failures keep a backtrace in the payload.
    pub backtrace: Backtrace,
    /// Cancel a run that takes longer (it fails with `Psychiq::JobTimeout` and follows the
    /// retry rules). `None` uses the server's default, which is off unless set.
    pub timeout: Option<Duration>,
    /// Jobs must start within this long of when they were due (pushed, or scheduled for),
    /// else they are discarded unrun (Sidekiq Pro's `expires_in`; see
    /// [`crate::extensions::Expiry`]).
    pub expires_in: Option<Duration>,
    /// Makes jobs unique for this long: no second copy while one is pending (Sidekiq
    /// Enterprise's `unique_for`; see [`crate::Job::unique_for`]).
    pub unique_for: Option<Duration>,
    /// When a unique job's lock goes: on success (the default), at start, or by expiry.
    pub unique_until: crate::job::unique::UniqueUntil,
    /// Runs each job within this limiter, shared by every process (see
    /// [`crate::limits`]); over the limit, the job is snoozed.
    pub rate_limit: Option<crate::job::limit::Limiter>,
    /// Tracks jobs' status (and result) for this long after their last change (see
    /// [`crate::status`]); `None`: not tracked unless the push or the server asks.
    pub track: Option<Duration>,
    /// Seals its jobs' arguments at the push (see [`crate::Job::encrypt`]).
    pub encrypt: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queue: "default".to_string(),
            retry: Retry::Default,
            dead: true,
            backtrace: Backtrace::Off,
            timeout: None,
            expires_in: None,
            unique_for: None,
            unique_until: crate::job::unique::UniqueUntil::Success,
            rate_limit: None,
            track: None,
            encrypt: false,
        }
    }
}

impl WorkerOptions {
    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }
    /// Sets the retry policy.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
    /// Turns the dead set on or off for exhausted jobs.
    pub fn dead(mut self, dead: bool) -> Self {
        self.dead = dead;
        self
    }
    /// Cancels runs longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Keeps a backtrace of failures.
    pub fn backtrace(mut self, backtrace: Backtrace) -> Self {
        self.backtrace = backtrace;
        self
    }
    /// Makes jobs unique for `unique_for`, their locks going as `until` says.
    pub fn unique_for(
        mut self,
        unique_for: Duration,
        until: crate::job::unique::UniqueUntil,
    ) -> Self {
        self.unique_for = Some(unique_for);
        self.unique_until = until;
        self
    }
    /// Discards jobs that have not started within `expires_in` of when they were due.
    pub fn expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = Some(expires_in);
        self
    }
    /// Tracks jobs' status and result for `retention` after their last change (see
    /// [`crate::status`]).
    pub fn track(mut self, retention: Duration) -> Self {
        self.track = Some(retention);
        self
    }
    /// Seals its jobs' arguments at the push with AES-256-GCM (see [`crate::encryption`]);
    /// the client needs a keyring ([`crate::Client::encrypt_with`]), the server the key.
    pub fn encrypt(mut self) -> Self {
        self.encrypt = true;
        self
    }
    /// Runs each job within `limiter`, shared by every process; over the limit, the job is
    /// snoozed with backoff (see [`crate::limits`]).
    pub fn rate_limit(mut self, limiter: crate::job::limit::Limiter) -> Self {
        self.rate_limit = Some(limiter);
        self
    }
}

/// A job type: its arguments, its class name, its options and the work it does.
///
/// ```
/// use psychiq::{JobResult, Worker};
///
/// struct SendInvoice;
///
/// impl Worker for SendInvoice {
///     type Args = (u64, String);
///     // Served under the name a Ruby app already uses:
///     fn class_name() -> String { "Billing::InvoiceJob".into() }
///     async fn perform(&self, (invoice_id, currency): Self::Args) -> JobResult {
///         println!("invoice {invoice_id} in {currency}");
///         Ok(())
///     }
/// }
/// assert_eq!(SendInvoice::class_name(), "Billing::InvoiceJob");
/// ```
pub trait Worker: Send + Sync + 'static {
    /// The job's arguments, read from the payload's `args` array.
    type Args: Serialize + DeserializeOwned + Send + 'static;

    /// The `class` string in the payload; the type's own name by default.
    fn class_name() -> String {
        short_type_name(std::any::type_name::<Self>()).to_string()
    }

    /// Options used when enqueuing and when the payload does not say otherwise.
    fn options() -> WorkerOptions {
        WorkerOptions::default()
    }

    /// Does the work.
    fn perform(&self, args: Self::Args) -> impl Future<Output = JobResult> + Send;

    /// How long to wait before retry number `count + 1`, exactly (no jitter is added),
    /// replacing Sidekiq's `count^4 + 15` plus jitter. `None` (or zero) keeps the formula.
    fn retry_in(&self, count: u32, error: &JobError) -> Option<Duration> {
        let _ = (count, error);
        None
    }

    /// Called once when a job has failed for the last time, before it goes to the dead set.
    fn retries_exhausted(&self, job: &JobMap, error: &JobError) {
        let _ = (job, error);
    }
}

/// A worker whose jobs give back a value: its `Output`, serialized with serde, becomes the
/// job's result, which a caller can await ([`crate::Client::enqueue_and_wait`],
/// [`crate::JobHandle::result`]) and which a tracked job's status keeps. Every `Task` is a
/// [`Worker`] (register and enqueue it as one); a task's retries use Sidekiq's backoff.
///
/// ```
/// use psychiq::{JobError, Task};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Thumbnail { width: u32, height: u32, bytes: usize }
///
/// struct MakeThumbnail;
///
/// impl Task for MakeThumbnail {
///     type Args = (String,);
///     type Output = Thumbnail;
///     async fn run(&self, (url,): Self::Args) -> Result<Thumbnail, JobError> {
///         Ok(Thumbnail { width: 128, height: 96, bytes: url.len() * 100 })
///     }
/// }
/// assert_eq!(<MakeThumbnail as psychiq::Worker>::class_name(), "MakeThumbnail");
/// ```
pub trait Task: Send + Sync + 'static {
    /// The job's arguments, read from the payload's `args` array.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What a run gives back.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The `class` string in the payload; the type's own name by default.
    fn class_name() -> String {
        short_type_name(std::any::type_name::<Self>()).to_string()
    }

    /// Options used when enqueuing and when the payload does not say otherwise. A task's
    /// jobs are tracked by default (their status and result kept a day).
    fn options() -> WorkerOptions {
        WorkerOptions::default().track(crate::job::status::DEFAULT_RETENTION)
    }

    /// Does the work and gives back its output.
    fn run(&self, args: Self::Args) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
}

impl<T: Task> Worker for T {
    type Args = <T as Task>::Args;

    fn class_name() -> String {
        <T as Task>::class_name()
    }

    fn options() -> WorkerOptions {
        <T as Task>::options()
    }

    async fn perform(&self, args: Self::Args) -> JobResult {
        let output = self.run(args).await?;
        if let Some(job) = crate::job::context::current() {
            job.set_output(serde_json::to_string(&output)?);
        }
        Ok(())
    }
}

/// Arguments for a job that takes none: written as `[]`, and reads `[]` or any array.
///
/// (`()` would read only `null`, which is not what Sidekiq writes.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoArgs;

impl Serialize for NoArgs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        <[(); 0]>::serialize(&[], serializer)
    }
}

impl<'de> Deserialize<'de> for NoArgs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<serde::de::IgnoredAny>::deserialize(deserializer).map(|_| NoArgs)
    }
}

/// The future a [`RawWorker`] starts: the job running.
pub type JobFuture = Pin<Box<dyn Future<Output = JobResult> + Send>>;

/// What a [`RawWorker`] is told about the job it starts.
#[derive(Debug, Clone, Copy)]
pub struct RawJob<'a> {
    pub(crate) class: &'a str,
    pub(crate) jid: &'a str,
    pub(crate) queue: &'a str,
    pub(crate) args: &'a str,
}

impl<'a> RawJob<'a> {
    /// The class the job was enqueued as (the name it was registered under).
    pub fn class(&self) -> &'a str {
        self.class
    }
    /// The job's id.
    pub fn jid(&self) -> &'a str {
        self.jid
    }
    /// The queue it was taken from.
    pub fn queue(&self) -> &'a str {
        self.queue
    }
    /// The job's `args`, as the raw JSON array the enqueuer wrote.
    pub fn args(&self) -> &'a str {
        self.args
    }
}

/// A worker that takes its arguments as raw JSON, for classes routed at run time: one
/// handler for many class names, a bridge to another language, a command per job (the
/// TOML command workers are one). A typed [`Worker`] is the usual way; this is the same
/// seam without the types. Register it with [`crate::Registry::register_raw`].
///
/// ```
/// use psychiq::{JobFuture, RawJob, RawWorker, Registry, WorkerOptions};
///
/// /// Logs every job of the classes it is registered under.
/// struct Audit {
///     options: WorkerOptions,
/// }
///
/// impl RawWorker for Audit {
///     fn start(&self, job: &RawJob<'_>) -> Result<JobFuture, serde_json::Error> {
///         // Parse now, so arguments of the wrong shape fail before the job "runs".
///         let args: Vec<serde_json::Value> = serde_json::from_str(job.args())?;
///         let line = format!("{} {} {:?}", job.class(), job.jid(), args);
///         Ok(Box::pin(async move {
///             println!("{line}");
///             Ok(())
///         }))
///     }
///     fn options(&self) -> &WorkerOptions {
///         &self.options
///     }
/// }
///
/// let mut registry = Registry::new();
/// for class in ["Billing::Charge", "Billing::Refund"] {
///     registry.register_raw(class, Audit { options: WorkerOptions::default().queue("audit") });
/// }
/// assert_eq!(registry.class_names(), ["Billing::Charge", "Billing::Refund"]);
/// ```
pub trait RawWorker: Send + Sync + 'static {
    /// Parses the arguments and starts the job. An `Err` means the arguments do not fit:
    /// the job fails as `Psychiq::InvalidArguments` without running.
    fn start(&self, job: &RawJob<'_>) -> Result<JobFuture, serde_json::Error>;
    /// Queue, retries, dead set and timeout for this worker's jobs.
    fn options(&self) -> &WorkerOptions;
    /// The delay before retry `count` (Sidekiq's `sidekiq_retry_in`); `None` for the
    /// default backoff.
    fn retry_in(&self, count: u32, error: &JobError) -> Option<Duration> {
        let _ = (count, error);
        None
    }
    /// Called once when a job has used all its retries (Sidekiq's `sidekiq_retries_exhausted`).
    fn retries_exhausted(&self, job: &JobMap, error: &JobError) {
        let _ = (job, error);
    }
}

/// A typed [`Worker`] as the registry holds it: a [`RawWorker`] that parses its arguments.
pub(crate) struct Typed<W> {
    pub(crate) worker: Arc<W>,
    pub(crate) options: WorkerOptions,
}

impl<W: Worker> RawWorker for Typed<W> {
    fn start(&self, job: &RawJob<'_>) -> Result<JobFuture, serde_json::Error> {
        let args: W::Args = parse_args(job.args)?;
        let worker = Arc::clone(&self.worker);
        Ok(Box::pin(async move { worker.perform(args).await }))
    }
    fn options(&self) -> &WorkerOptions {
        &self.options
    }
    // A panicking hook must not take the job's failure record down with it.
    fn retry_in(&self, count: u32, error: &JobError) -> Option<Duration> {
        guard("retry_in", || self.worker.retry_in(count, error)).flatten()
    }
    fn retries_exhausted(&self, job: &JobMap, error: &JobError) {
        guard("retries_exhausted", || {
            self.worker.retries_exhausted(job, error)
        });
    }
}

/// A job's arguments as `T`. A struct or map is the job's one argument (`[{…}]`, Sidekiq
/// 7's recommended shape), as [`crate::Job::new`] writes it. `[]` also reads as `()`:
/// `Job::new(class, ())` writes `[]` (Sidekiq's empty argument list), which serde would only
/// read as `()` from `null`.
pub(crate) fn parse_args<T: serde::de::DeserializeOwned>(args: &str) -> serde_json::Result<T> {
    let as_one = || serde_json::from_str::<(T,)>(args).map(|(one,)| one);
    if reads_an_object::<T>() {
        // A struct may also have been written as the list of its fields (0.1's shape, or a
        // Ruby `perform(7, "x")`): read that too.
        return as_one().or_else(|e| serde_json::from_str(args).map_err(|_| e));
    }
    serde_json::from_str(args).or_else(|e| {
        if args.trim() == "[]" {
            serde_json::from_str("null").map_err(|_| e)
        } else {
            // An enum (or anything else `Job::new` wrote as one object) is the one argument.
            as_one().map_err(|_| e)
        }
    })
}

/// Whether `T` reads a JSON object (a struct or a map), found by asking its `Deserialize`
/// what it wants from a deserializer that answers nothing.
fn reads_an_object<'de, T: Deserialize<'de>>() -> bool {
    /// What the type asked for: `true` for a struct or a map.
    #[derive(Debug)]
    struct Asked(bool);
    impl std::fmt::Display for Asked {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Asked {}
    impl serde::de::Error for Asked {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Asked(false)
        }
    }
    struct Probe;
    impl<'de> Deserializer<'de> for Probe {
        type Error = Asked;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Asked> {
            Err(Asked(false))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Asked> {
            Err(Asked(true))
        }
        fn deserialize_map<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Asked> {
            Err(Asked(true))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct enum
            identifier ignored_any
        }
    }
    matches!(T::deserialize(Probe), Err(Asked(true)))
}

/// Runs a worker hook, logging a panic instead of unwinding into the server.
fn guard<T>(hook: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::error!(
                hook,
                "a worker hook panicked; Sidekiq's default is used instead"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_argument_list_reads_as_unit() {
        let () = parse_args("[]").unwrap();
        assert!(parse_args::<()>("[1]").is_err());
        assert_eq!(parse_args::<(u8,)>("[1]").unwrap(), (1,));
        assert!(parse_args::<(u8,)>("[]").is_err());
    }

    #[test]
    fn default_class_name_is_the_type_name() {
        assert_eq!(short_type_name("a::b::SendEmail<c::D>"), "SendEmail");
        assert_eq!(short_type_name("Plain"), "Plain");
    }

    #[test]
    fn no_args_reads_any_array_and_writes_an_empty_one() {
        assert_eq!(serde_json::to_string(&NoArgs).unwrap(), "[]");
        assert!(serde_json::from_str::<NoArgs>("[1, \"x\"]").is_ok());
        assert!(serde_json::from_str::<NoArgs>("{}").is_err());
    }

    #[test]
    fn errors_convert_with_their_type_name_and_causes() {
        let err: JobError = std::io::Error::other("disk full").into();
        assert_eq!(err.class(), "io::Error");
        assert_eq!(err.message(), "disk full");
        let boxed: Box<dyn std::error::Error + Send + Sync> = "boom".into();
        let err: JobError = boxed.into();
        assert_eq!((err.class(), err.message()), ("Error", "boom"));
        let err: JobError = String::from("card expired").into();
        assert_eq!(err.class(), "RuntimeError");
        let err: JobError = "x".parse::<u8>().unwrap_err().into();
        assert_eq!(err.class(), "ParseIntError");
        assert_eq!(
            crate::job::failure::error_class("sqlx_core::error::Error"),
            "sqlx_core::Error"
        );
        assert_eq!(
            crate::job::failure::error_class("reqwest::error::Error"),
            "reqwest::Error"
        );
    }

    fn question_mark_works_on_common_error_types() -> JobResult {
        fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            Err("boxed".into())
        }
        boxed()?;
        Err(anyhow::anyhow!("from anyhow"))?;
        std::fs::read("/nonexistent")?;
        Err("a message")?
    }

    #[test]
    fn question_mark_converts() {
        assert_eq!(
            question_mark_works_on_common_error_types()
                .unwrap_err()
                .class(),
            "Error"
        );
        let err: JobError = anyhow::anyhow!("from anyhow").into();
        assert_eq!(
            (err.class(), err.message()),
            ("anyhow::Error", "from anyhow")
        );
    }
}
