//! The client: puts jobs into Redis, now, later or in bulk.
//!
//! One round trip per single enqueue (a pipeline of `SADD queues` and `LPUSH`), one per
//! 1,000 jobs in bulk. A [`Client`] is cheap to clone: clones share one multiplexed
//! connection that reconnects by itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::store::connection::Connection;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::job::middleware::ClientChain;
use crate::job::payload::{self, JobMap, Retry};
use crate::job::unique;
use crate::job::unique::UniqueUntil;
use crate::job::worker::{Backtrace, Worker, WorkerOptions};
use crate::store::connection::RedisConfig;
use crate::store::keys::Keys;

/// Jobs per command in bulk enqueues, as Sidekiq 7's `push_bulk` batches.
pub const BULK_BATCH: usize = 1_000;
/// Batches sent in one round trip.
const BATCHES_PER_ROUND_TRIP: usize = 10;

/// One job to push: its class, arguments and options. Built from a [`Worker`] type with
/// [`Job::of`], or from a class name for a worker that lives in another process or in Ruby
/// with [`Job::new`].
///
/// ```
/// use psychiq::{Job, Retry};
/// let job = Job::new("Billing::InvoiceJob", (42, "eur"))?
///     .queue("billing")
///     .retry(Retry::Max(5))
///     .option("tags", serde_json::json!(["q4"]));
/// assert_eq!(job.class(), "Billing::InvoiceJob");
/// # Ok::<(), psychiq::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Job {
    class: String,
    args: Box<RawValue>,
    queue: String,
    retry: Retry,
    at: Option<SystemTime>,
    jid: Option<String>,
    expiry: Option<Expiry>,
    unique: Option<Unique>,
    options: JobMap,
    /// Set for a job of a Ruby ActiveJob class: `args` are then the job's own arguments,
    /// written inside Rails' record (see [`Job::active_job`]).
    active_job: Option<crate::job::active_job::Wrapped>,
}

/// A unique job's settings (see [`Job::unique_for`]).
#[derive(Debug, Clone)]
struct Unique {
    /// How long the lock lives at most, from when the job is due.
    for_: Duration,
    until: UniqueUntil,
    /// What names "the same job", from the client's key function; its arguments if `None`.
    identity: Option<String>,
}

/// A function that names "the same job" from its arguments (see [`Client::unique_key_for`]).
type KeyFn = Arc<dyn Fn(&Value) -> String + Send + Sync>;
/// When a job expires: relative to when it is due, or at a fixed time.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    In(Duration),
    At(SystemTime),
}

impl Job {
    /// A job for `class` with `args`: a tuple, a `Vec` or a `serde_json::json!([...])` is
    /// the argument list (`()` gives `[]`); a struct or map is the job's one argument,
    /// `[{…}]`, Sidekiq 7's recommended shape (a worker whose `Args` is that struct reads it
    /// back).
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Order { id: u64, sku: String }
    /// let job = psychiq::Job::new("Ship", Order { id: 7, sku: "A1".into() })?;
    /// assert_eq!(job.args_json(), r#"[{"id":7,"sku":"A1"}]"#);
    /// assert_eq!(psychiq::Job::new("Ship", (7, "A1"))?.args_json(), r#"[7,"A1"]"#);
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn new(class: impl Into<String>, args: impl Serialize) -> Result<Job> {
        let mut args = serde_json::value::to_raw_value(&args)
            .map_err(|e| Error::Payload(format!("arguments do not serialise to JSON: {e}")))?;
        if args.get() == "null" {
            // `()`: a job without arguments, which Sidekiq writes as `[]`.
            args = RawValue::from_string("[]".to_string()).expect("[] is JSON");
        }
        if args.get().starts_with('{') {
            // A struct or map: the job's one argument.
            args = RawValue::from_string(format!("[{}]", args.get())).expect("[{…}] is JSON");
        }
        if !args.get().starts_with('[') {
            return Err(Error::Payload(format!(
                "arguments must serialise to a JSON list or object (Sidekiq passes a list), got {}; use a tuple such as (id,), a Vec or a struct",
                args.get()
            )));
        }
        Ok(Job {
            class: class.into(),
            args,
            queue: "default".to_string(),
            retry: Retry::Default,
            at: None,
            jid: None,
            expiry: None,
            unique: None,
            options: JobMap::new(),
            active_job: None,
        })
    }

    /// A job for the Ruby ActiveJob class `job_class`, run by a Ruby Sidekiq as
    /// `JobClass.perform_later(*args)` would: the payload is Rails 6.1's
    /// (`class` `ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper`, which Sidekiq 6.4 to
    /// 8.0 run, `wrapped` the class, `args` ActiveJob's record with `queue_name`, a new
    /// `job_id` and the arguments serialized as Rails does). Objects are Ruby hashes with
    /// string keys; for keyword arguments, GlobalIDs and symbols see
    /// [`crate::job::active_job::keywords`], [`global_id`](crate::job::active_job::global_id) and
    /// [`symbol`](crate::job::active_job::symbol). A Psychiq server runs it too, with the worker
    /// registered as `job_class`.
    ///
    /// ```
    /// use psychiq::{Job, active_job};
    /// use serde_json::json;
    /// let job = Job::active_job("Billing::InvoiceJob", (42, active_job::keywords(json!({"currency": "eur"}))?))?
    ///     .queue("billing");
    /// assert_eq!(job.class(), active_job::JOB_WRAPPER);
    /// assert_eq!(job.get_option("wrapped"), Some(&json!("Billing::InvoiceJob")));
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn active_job(job_class: impl Into<String>, args: impl Serialize) -> Result<Job> {
        let job_class = job_class.into();
        let plain = Job::new(crate::job::active_job::JOB_WRAPPER, args)?;
        let arguments: Value = serde_json::from_str(plain.args.get())
            .map_err(|e| Error::Payload(format!("arguments are not JSON: {e}")))?;
        let encoded = crate::job::active_job::encode_arguments(arguments)?;
        let args = serde_json::value::to_raw_value(&encoded)
            .map_err(|e| Error::Payload(format!("arguments do not serialise to JSON: {e}")))?;
        let mut job = Job { args, ..plain }.option("wrapped", Value::String(job_class.clone()));
        job.active_job = Some(crate::job::active_job::Wrapped::new(job_class));
        Ok(job)
    }

    /// A job for worker `W`, with `W`'s class name and options.
    pub fn of<W: Worker>(args: &W::Args) -> Result<Job> {
        Ok(Job::new(W::class_name(), args)?.with_options(&W::options()))
    }

    fn with_options(mut self, options: &WorkerOptions) -> Job {
        self.queue.clone_from(&options.queue);
        self.retry = options.retry;
        match options.backtrace {
            Backtrace::Off => {}
            Backtrace::All => self = self.option("backtrace", Value::Bool(true)),
            Backtrace::Lines(n) => self = self.option("backtrace", Value::from(n)),
        }
        if !options.dead {
            self = self.option("dead", Value::Bool(false));
        }
        self.expiry = options.expires_in.map(Expiry::In);
        self.unique = options.unique_for.map(|for_| Unique {
            for_,
            until: options.unique_until,
            identity: None,
        });
        self
    }

    /// The class name written to the payload.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// Sends the job to `queue` instead of the worker's.
    pub fn queue(mut self, queue: impl Into<String>) -> Job {
        self.queue = queue.into();
        self
    }

    /// Overrides the retry policy for this job.
    pub fn retry(mut self, retry: Retry) -> Job {
        self.retry = retry;
        self
    }

    /// Runs the job at `time` (at once if that is not in the future).
    pub fn at(mut self, time: SystemTime) -> Job {
        self.at = Some(time);
        self
    }

    /// Runs the job after `delay`.
    pub fn delay(self, delay: Duration) -> Job {
        self.at(SystemTime::now() + delay)
    }

    /// Discards the job unrun if it has not started within `expires_in` of when it is due
    /// (now, or its scheduled time), as Sidekiq Pro's `expires_in`: written to the payload
    /// as `expires_at` (epoch seconds), which servers with the expiry extension check
    /// ([`crate::extensions::Expiry`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let job = psychiq::Job::new("Cache::Warm", ())?.expires_in(Duration::from_secs(1800));
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn expires_in(mut self, expires_in: Duration) -> Job {
        self.expiry = Some(Expiry::In(expires_in));
        self
    }

    /// Makes the job unique for `unique_for`: while a job of the same class, queue and
    /// arguments (as canonical JSON) is enqueued, scheduled, retrying or running, pushing
    /// this one writes nothing and returns that job's jid ([`Push::Duplicate`]). The lock
    /// lives at most `unique_for` from when the job is due, and goes earlier as
    /// [`Job::unique_until`] says (on success by default). See [`crate::extensions`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let job = psychiq::Job::new("Search::Reindex", (42,))?.unique_for(Duration::from_secs(600));
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn unique_for(mut self, unique_for: Duration) -> Job {
        let until = self
            .unique
            .as_ref()
            .map_or_else(UniqueUntil::default, |u| u.until);
        self.unique = Some(Unique {
            for_: unique_for,
            until,
            identity: None,
        });
        self
    }

    /// When a unique job's lock goes (with [`Job::unique_for`]; on success by default).
    pub fn unique_until(mut self, until: UniqueUntil) -> Job {
        if let Some(unique) = &mut self.unique {
            unique.until = until;
        }
        self
    }

    /// The unique job's `unique_key`, if it is one: what names "the same job".
    fn unique_key(&self) -> Option<String> {
        let unique = self.unique.as_ref()?;
        let identity = match &unique.identity {
            Some(identity) => identity.clone(),
            None => serde_json::from_str::<Value>(self.args.get())
                .map(|args| unique::canonical_json(&args))
                .unwrap_or_else(|_| self.args.get().to_string()),
        };
        Some(unique::unique_key(&self.class, &self.queue, &identity))
    }

    /// Discards the job unrun if it has not started by `time`.
    pub fn expires_at(mut self, time: SystemTime) -> Job {
        self.expiry = Some(Expiry::At(time));
        self
    }

    /// Uses a given job id instead of a random one.
    pub fn jid(mut self, jid: impl Into<String>) -> Job {
        self.jid = Some(jid.into());
        self
    }

    /// Adds any other payload field (Sidekiq option or middleware data such as `tags`).
    /// The fields a `Job` writes itself are not duplicated: `queue`, `retry` and `jid` set
    /// what [`Job::queue`], [`Job::retry`] and [`Job::jid`] set (given a string, a
    /// boolean or number, a string), and `class`, `args`, `at`, `created_at` and
    /// `enqueued_at`, which the push writes, are ignored.
    ///
    /// ```
    /// let job = psychiq::Job::new("Mailer", ())?.option("queue", "mail".into()).option("tags", serde_json::json!(["q4"]));
    /// assert_eq!(job.queue_name(), "mail");
    /// assert_eq!(job.get_option("queue"), None);
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn option(mut self, key: impl Into<String>, value: Value) -> Job {
        self.set_option(key, value);
        self
    }

    /// Sets a payload field in place (for client middleware), as [`Job::option`] does.
    pub fn set_option(&mut self, key: impl Into<String>, value: Value) -> &mut Job {
        let key = key.into();
        match (key.as_str(), &value) {
            ("queue", Value::String(queue)) => self.queue.clone_from(queue),
            ("jid", Value::String(jid)) => self.jid = Some(jid.clone()),
            ("retry", _) => {
                if let Some(retry) = Retry::from_value(Some(&value)) {
                    self.retry = retry;
                }
            }
            ("queue" | "jid" | "class" | "args" | "at" | "created_at" | "enqueued_at", _) => {
                tracing::warn!(
                    field = key,
                    "Job::option cannot set this field (the push writes it); ignored"
                );
            }
            _ => {
                self.options.insert(key, value);
            }
        }
        self
    }

    /// A payload field set with [`Job::option`] / [`Job::set_option`].
    pub fn get_option(&self, key: &str) -> Option<&Value> {
        self.options.get(key)
    }

    /// Moves the job to another queue in place (for client middleware).
    pub fn set_queue(&mut self, queue: impl Into<String>) -> &mut Job {
        self.queue = queue.into();
        self
    }

    /// The queue it goes to.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The arguments as JSON text (an array).
    pub fn args_json(&self) -> &str {
        self.args.get()
    }

    /// The jid given with [`Job::jid`], if any (else one is made when it is pushed).
    pub fn given_jid(&self) -> Option<&str> {
        self.jid.as_deref()
    }

    /// When it is to run, if later than now.
    pub fn run_at(&self) -> Option<SystemTime> {
        self.at
    }

    /// The payload as a client would write it now, with a new jid unless one was given.
    #[cfg(feature = "server")]
    pub(crate) fn payload_now(&self) -> String {
        let jid = self.jid.clone().unwrap_or_else(payload::new_jid);
        let now = crate::clock::now_secs();
        // Serialising a built job cannot fail: its parts were JSON when it was built.
        self.to_json(&jid, now, Some(now)).unwrap_or_default()
    }

    /// The payload as a client writes it at `created_at` (also its `enqueued_at` when
    /// `enqueued`), with a new jid unless one was given.
    pub(crate) fn payload_at(&self, created_at: f64, enqueued: bool) -> String {
        let jid = self.jid.clone().unwrap_or_else(payload::new_jid);
        // Serialising a built job cannot fail: its parts were JSON when it was built.
        self.to_json(&jid, created_at, enqueued.then_some(created_at))
            .unwrap_or_default()
    }

    /// What Sidekiq's client refuses (`job_util.rb`'s `validate`), refused here too, after
    /// the client middleware had their say: an empty queue, `tags` that are not a list, a
    /// `retry_for` that is not a number of seconds up to 10^9.
    pub(crate) fn check(&self) -> Result<()> {
        if self.queue.is_empty() {
            return Err(Error::Payload(format!(
                "job {} has an empty queue name; give it one with .queue(\"name\")",
                self.class
            )));
        }
        if let Some(tags) = self.options.get("tags").filter(|tags| !tags.is_array()) {
            return Err(Error::Payload(format!(
                "tags must be a list such as [\"q4\"], not {tags}"
            )));
        }
        let in_range = |secs: &Value| secs.as_f64().is_some_and(|s| (0.0..=1e9).contains(&s));
        match self.options.get("retry_for") {
            Some(retry_for) if !in_range(retry_for) => Err(Error::Payload(format!(
                "retry_for must be a number of seconds from 0 to 1000000000, not {retry_for}"
            ))),
            _ => Ok(()),
        }
    }

    /// When the job should run, if in the future (in epoch seconds).
    fn scheduled_at(&self) -> Option<f64> {
        let at = self.at?;
        (!crate::clock::secs_until(at).is_zero()).then(|| crate::clock::epoch_secs(at))
    }

    /// The payload in Sidekiq's key order: options, then args, class, jid and timestamps.
    fn to_json(&self, jid: &str, created_at: f64, enqueued_at: Option<f64>) -> Result<String> {
        #[derive(Serialize)]
        struct Payload<'a> {
            retry: Value,
            queue: &'a str,
            #[serde(flatten)]
            options: &'a JobMap,
            #[serde(skip_serializing_if = "Option::is_none")]
            expires_at: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            unique_for: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            unique_until: Option<&'static str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            unique_key: Option<String>,
            args: &'a RawValue,
            class: &'a str,
            jid: &'a str,
            created_at: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            enqueued_at: Option<f64>,
        }
        // An ActiveJob's arguments go inside Rails' record, which names the queue too.
        let wrapped = match &self.active_job {
            Some(wrapped) => Some(
                RawValue::from_string(wrapped.args(&self.queue, &self.args, created_at))
                    .map_err(|e| Error::Payload(e.to_string()))?,
            ),
            None => None,
        };
        let payload = Payload {
            retry: self.retry.to_value(),
            queue: &self.queue,
            options: &self.options,
            expires_at: self.expiry.map(|expiry| match expiry {
                // From when it is due: a job scheduled for later expires that much later.
                Expiry::In(after) => {
                    self.scheduled_at().unwrap_or(created_at) + after.as_secs_f64()
                }
                Expiry::At(time) => crate::clock::epoch_secs(time),
            }),
            unique_for: self.unique.as_ref().map(|u| u.for_.as_secs_f64()),
            unique_until: self.unique.as_ref().map(|u| u.until.as_str()),
            unique_key: self.unique_key(),
            args: wrapped.as_deref().unwrap_or(&self.args),
            class: &self.class,
            jid,
            created_at,
            enqueued_at,
        };
        serde_json::to_string(&payload).map_err(|e| Error::Payload(e.to_string()))
    }
}

/// Enqueues jobs. Cheap to clone and safe to share between tasks.
///
/// ```no_run
/// use psychiq::{Client, JobResult, RedisConfig, Worker};
/// struct Email;
/// impl Worker for Email {
///     type Args = (String,);
///     async fn perform(&self, (to,): Self::Args) -> JobResult { Ok(()) }
/// }
/// # async fn demo() -> psychiq::Result<()> {
/// let client = Client::connect(&RedisConfig::default(), "").await?;
/// let jid = client.enqueue::<Email>(("ada@example.com".into(),)).await?;
/// client.enqueue_in::<Email>(std::time::Duration::from_secs(60), ("bob@example.com".into(),)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    backend: Backend,
    keys: Arc<Keys>,
    middleware: Arc<ClientChain>,
    /// Key functions for unique jobs, by class (see [`Client::unique_key_for`]).
    unique_keys: Arc<std::collections::HashMap<String, KeyFn>>,
}

/// Where a client's jobs go.
#[derive(Clone)]
enum Backend {
    Redis {
        conn: Connection,
        config: RedisConfig,
        /// With `wait_for_replicas`: one push (and its `WAIT`) at a time, as `WAIT` holds
        /// the connection until the replicas answer.
        one_at_a_time: Option<Arc<tokio::sync::Mutex<()>>>,
    },
    /// The test mode's in-memory store (recorded, or performed at once).
    #[cfg(feature = "server")]
    Memory(Arc<crate::testing::Store>),
}

/// What became of a job handed to [`Client::try_push`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Push {
    /// Written to Redis, with this jid.
    Pushed(String),
    /// A client middleware refused it, for this reason; nothing was written.
    Refused(String),
    /// A unique job ([`Job::unique_for`]) whose twin is pending, with the twin's jid;
    /// nothing was written.
    Duplicate(String),
}

impl Push {
    /// The jid, if it was pushed; for a [`Push::Duplicate`], the pending twin's.
    pub fn jid(&self) -> Option<&str> {
        match self {
            Push::Pushed(jid) | Push::Duplicate(jid) => Some(jid),
            Push::Refused(_) => None,
        }
    }
}

/// Payloads with their scores, for one `ZADD`.
type Scored = Vec<(f64, String)>;

impl Client {
    /// Connects to Redis (checking it answers) and uses keys under `namespace`.
    pub async fn connect(config: &RedisConfig, namespace: &str) -> Result<Client> {
        let conn = config.connect().await?;
        Ok(Client::from_connection(conn, config.clone(), namespace))
    }

    pub(crate) fn from_connection(
        conn: Connection,
        config: RedisConfig,
        namespace: &str,
    ) -> Client {
        let one_at_a_time = config.replica_wait().map(|_| Arc::default());
        let keys = Arc::new(config.keys(namespace));
        Client {
            backend: Backend::Redis {
                conn,
                config,
                one_at_a_time,
            },
            keys,
            middleware: Arc::default(),
            unique_keys: Arc::default(),
        }
    }

    /// A client whose pushes go to the test mode's store instead of Redis.
    #[cfg(feature = "server")]
    pub(crate) fn in_memory(store: Arc<crate::testing::Store>) -> Client {
        Client {
            backend: Backend::Memory(store),
            keys: Arc::new(Keys::new(crate::store::keys::DEFAULT_NAMESPACE)),
            middleware: Arc::default(),
            unique_keys: Arc::default(),
        }
    }

    /// The client middleware chain: every job this client pushes passes through it first
    /// (see [`crate::job::middleware::ClientMiddleware`]). Clones made before a change keep the
    /// chain they had.
    pub fn middleware(&mut self) -> &mut ClientChain {
        Arc::make_mut(&mut self.middleware)
    }

    /// Names "the same job" for unique jobs of `class` by `key` of their arguments (a JSON
    /// array) instead of by all of them, e.g. when one argument is a timestamp or a request
    /// id that does not make a job different. Clones made before keep what they had.
    ///
    /// ```
    /// # async fn demo() -> psychiq::Result<()> {
    /// let mut client = psychiq::Client::connect(&Default::default(), "").await?;
    /// // Search::Reindex(record_id, requested_at): one pending reindex per record.
    /// client.unique_key_for("Search::Reindex", |args| args[0].to_string());
    /// # Ok(()) }
    /// ```
    pub fn unique_key_for(
        &mut self,
        class: impl Into<String>,
        key: impl Fn(&Value) -> String + Send + Sync + 'static,
    ) -> &mut Self {
        Arc::make_mut(&mut self.unique_keys).insert(class.into(), Arc::new(key));
        self
    }

    /// The keys this client writes to.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The test mode's store, for a client a [`crate::testing::Fake`] handed out.
    #[cfg(feature = "server")]
    pub(crate) fn test_store(&self) -> Option<&Arc<crate::testing::Store>> {
        match &self.backend {
            Backend::Memory(store) => Some(store),
            Backend::Redis { .. } => None,
        }
    }

    /// The raw-Redis escape hatch: a clone of the underlying connection, for redis-rs
    /// commands of your own. `None` for a test-mode client ([`crate::testing`]), which has
    /// no Redis.
    pub fn redis_connection(&self) -> Option<Connection> {
        match &self.backend {
            Backend::Redis { conn, .. } => Some(conn.clone()),
            #[cfg(feature = "server")]
            Backend::Memory(_) => None,
        }
    }

    /// Enqueues a job for `W` now; returns its jid.
    pub async fn enqueue<W: Worker>(&self, args: W::Args) -> Result<String> {
        self.push(Job::of::<W>(&args)?).await
    }

    /// Enqueues a job for `W` to run after `delay`.
    pub async fn enqueue_in<W: Worker>(&self, delay: Duration, args: W::Args) -> Result<String> {
        self.push(Job::of::<W>(&args)?.delay(delay)).await
    }

    /// Enqueues a job for `W` to run at `time`.
    pub async fn enqueue_at<W: Worker>(&self, time: SystemTime, args: W::Args) -> Result<String> {
        self.push(Job::of::<W>(&args)?.at(time)).await
    }

    /// Enqueues one job for `W` per item of `many`, in batches of 1,000 (10,000 to a round trip); returns the jids
    /// in order.
    pub async fn enqueue_bulk<W: Worker>(
        &self,
        many: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<String>> {
        let jobs = many
            .into_iter()
            .map(|args| Job::of::<W>(&args))
            .collect::<Result<Vec<_>>>()?;
        self.push_bulk(jobs).await
    }

    /// Pushes one job, built with [`Job::new`] or [`Job::of`]; returns its jid, or
    /// [`Error::NotPushed`] if a client middleware refused it.
    /// For a unique job whose twin is pending ([`Job::unique_for`]), nothing is written
    /// and the twin's jid is returned.
    pub async fn push(&self, job: Job) -> Result<String> {
        match self.try_push(job).await? {
            Push::Pushed(jid) | Push::Duplicate(jid) => Ok(jid),
            Push::Refused(reason) => Err(Error::NotPushed { reason }),
        }
    }

    /// Pushes one job; a refusal by a client middleware is a value, not an error.
    pub async fn try_push(&self, job: Job) -> Result<Push> {
        let mut pushes = self.try_push_bulk(vec![job]).await?;
        Ok(pushes.pop().unwrap_or(Push::Refused(String::new())))
    }

    /// Pushes many jobs, 1,000 to a command and 10,000 to a round trip; returns the jids of
    /// those pushed, in order (jobs a client middleware refused are left out; for unique
    /// jobs whose twin is pending, the twin's jid).
    ///
    /// Jobs due now go to their queues (`SADD queues`, one `LPUSH` per queue); jobs for
    /// later go to the `schedule` set, scored by their time.
    pub async fn push_bulk(&self, jobs: Vec<Job>) -> Result<Vec<String>> {
        let pushes = self.try_push_bulk(jobs).await?;
        Ok(pushes
            .into_iter()
            .filter_map(|push| match push {
                Push::Pushed(jid) | Push::Duplicate(jid) => Some(jid),
                Push::Refused(_) => None,
            })
            .collect())
    }

    /// Pushes many jobs; returns what became of each, in order.
    pub async fn try_push_bulk(&self, mut jobs: Vec<Job>) -> Result<Vec<Push>> {
        #[cfg(feature = "opentelemetry")]
        if let Some(traceparent) = crate::job::otel::current_traceparent() {
            for job in &mut jobs {
                job.options
                    .entry(crate::job::otel::TRACEPARENT)
                    .or_insert_with(|| Value::from(traceparent.clone()));
            }
        }
        if !self.unique_keys.is_empty() {
            self.name_unique_jobs(&mut jobs);
        }
        let mut refused: Vec<Option<String>> = Vec::new();
        if !self.middleware.is_empty() {
            refused.reserve(jobs.len());
            for job in &mut jobs {
                refused.push(self.middleware.admit(job).await.err());
            }
        }
        let admitted: Vec<&Job> = if refused.is_empty() {
            jobs.iter().collect()
        } else {
            jobs.iter()
                .zip(&refused)
                .filter(|(_, r)| r.is_none())
                .map(|(job, _)| job)
                .collect()
        };
        let written = self.write(&admitted).await?;
        if refused.is_empty() {
            return Ok(written);
        }
        let mut written = written.into_iter();
        Ok(refused
            .into_iter()
            .map(|r| match r {
                Some(reason) => Push::Refused(reason),
                None => written
                    .next()
                    .unwrap_or_else(|| Push::Refused(String::new())),
            })
            .collect())
    }

    /// Names "the same job" with the key functions of [`Client::unique_key_for`].
    fn name_unique_jobs(&self, jobs: &mut [Job]) {
        for job in jobs {
            let Some(key_fn) = self.unique_keys.get(&job.class) else {
                continue;
            };
            if let Some(unique) = &mut job.unique {
                let args: Value = serde_json::from_str(job.args.get()).unwrap_or_default();
                unique.identity = Some(key_fn(&args));
            }
        }
    }

    /// Writes jobs where this client's backend keeps them.
    async fn write(&self, jobs: &[&Job]) -> Result<Vec<Push>> {
        for job in jobs {
            job.check()?;
        }
        match &self.backend {
            Backend::Redis {
                conn,
                config,
                one_at_a_time,
            } => {
                let _turn = match one_at_a_time {
                    Some(lock) => Some(lock.lock().await),
                    None => None,
                };
                self.write_redis(conn, config, jobs).await
            }
            #[cfg(feature = "server")]
            Backend::Memory(store) => {
                let now = crate::clock::now_secs();
                let mut written = Vec::with_capacity(jobs.len());
                for &job in jobs {
                    let jid = job.jid.clone().unwrap_or_else(payload::new_jid);
                    let at = job.scheduled_at();
                    let json = job.to_json(&jid, now, at.is_none().then_some(now))?;
                    written.push(crate::testing::Pushed {
                        jid,
                        queue: job.queue.clone(),
                        at,
                        payload: json,
                    });
                }
                Box::pin(store.push(written)).await
            }
        }
    }

    /// Writes jobs to Redis: 1,000 to a command, 10,000 to a round trip.
    async fn write_redis(
        &self,
        conn: &Connection,
        config: &RedisConfig,
        jobs: &[&Job],
    ) -> Result<Vec<Push>> {
        if self.keys.is_cluster() && jobs.iter().any(|job| job.unique.is_some()) {
            return Err(Error::Config(
                "unique jobs are not available in the cluster layout yet (the lock and the queue are in different slots); push it without unique_for, or use one Redis".into(),
            ));
        }
        let mut pushes = Vec::with_capacity(jobs.len());
        let now = crate::clock::now_secs();
        // Commands of up to 1,000 jobs each; ten of them share a round trip, which bounds
        // the buffer while cutting round trips tenfold for large bulks.
        for group in jobs.chunks(BULK_BATCH * BATCHES_PER_ROUND_TRIP) {
            let mut pipe = redis::pipe();
            // Unique jobs (their place in `pushes`), answered in the pipeline's order.
            let mut unique: Vec<usize> = Vec::new();
            if group.iter().any(|job| job.unique.is_some()) {
                // Loaded first in the same pipeline, so each job sends only the script's hash.
                pipe.cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(unique::PUSH_SCRIPT)
                    .ignore();
            }
            for chunk in group.chunks(BULK_BATCH) {
                let mut by_queue: Vec<(&str, Vec<String>)> = Vec::new();
                // Per schedule set: one in Sidekiq's layout (all under ""), each queue's
                // own in the cluster's (under the queue's name).
                let mut scheduled: Vec<(&str, Scored)> = Vec::new();
                for &job in chunk {
                    let jid = job.jid.clone().unwrap_or_else(payload::new_jid);
                    let at = job.scheduled_at();
                    let json = job.to_json(&jid, now, at.is_none().then_some(now))?;
                    if let (Some(settings), Some(key)) = (&job.unique, job.unique_key()) {
                        // Locked and written in one atomic step, or not written at all.
                        let waits = at.map_or(0.0, |at| (at - now).max(0.0));
                        let ttl = (settings.for_.as_secs_f64() + waits).ceil().max(1.0) as u64;
                        let (target, score) = match at {
                            Some(at) => (self.keys.schedule(), at.to_string()),
                            None => (self.keys.queue(&job.queue), String::new()),
                        };
                        pipe.cmd("EVALSHA")
                            .arg(unique::push_script_hash())
                            .arg(3)
                            .arg(unique::lock_key(&self.keys, &key))
                            .arg(self.keys.queues())
                            .arg(target)
                            .arg(&jid)
                            .arg(ttl)
                            .arg(&json)
                            .arg(&job.queue)
                            .arg(score);
                        unique.push(pushes.len());
                    } else {
                        match at {
                            Some(at) => {
                                let set = if self.keys.is_cluster() {
                                    &job.queue
                                } else {
                                    ""
                                };
                                match scheduled.iter_mut().find(|(s, _)| *s == set) {
                                    Some((_, list)) => list.push((at, json)),
                                    None => scheduled.push((set, vec![(at, json)])),
                                }
                            }
                            None => match by_queue.iter_mut().find(|(q, _)| *q == job.queue) {
                                Some((_, list)) => list.push(json),
                                None => by_queue.push((job.queue.as_str(), vec![json])),
                            },
                        }
                    }
                    pushes.push(Push::Pushed(jid));
                }
                for (queue, list) in &by_queue {
                    pipe.sadd(self.keys.queues(), *queue).ignore();
                    pipe.lpush(self.keys.queue(queue), list).ignore();
                }
                for (queue, list) in &scheduled {
                    if self.keys.is_cluster() {
                        // So the poller knows to look at this queue's schedule.
                        pipe.sadd(self.keys.queues(), *queue).ignore();
                    }
                    pipe.zadd_multiple(self.keys.schedule_of(queue), list)
                        .ignore();
                }
            }
            // `WAIT` in the same round trip, on the connection that wrote: it counts that
            // connection's writes.
            if let Some((replicas, timeout)) = config.replica_wait() {
                pipe.cmd("WAIT")
                    .arg(replicas)
                    .arg(timeout.as_millis() as u64);
            }
            let mut replies: Vec<redis::Value> = pipe
                .query_async(&mut conn.clone())
                .await
                .map_err(|e| config.redis_error(e))?;
            if let Some((replicas, timeout)) = config.replica_wait() {
                let confirmed = match replies.pop() {
                    Some(redis::Value::Int(n)) => n,
                    _ => 0,
                };
                if confirmed < i64::from(replicas) {
                    tracing::warn!(
                        confirmed,
                        wanted = replicas,
                        "enqueue: only {confirmed} of {replicas} replicas confirmed within {timeout:?}; kept on the master"
                    );
                }
            }
            let holders: Vec<String> = replies
                .into_iter()
                .map(|reply| redis::FromRedisValue::from_redis_value(reply).unwrap_or_default())
                .collect();
            for (place, holder) in unique.into_iter().zip(holders) {
                if pushes[place].jid() != Some(holder.as_str()) {
                    pushes[place] = Push::Duplicate(holder);
                }
            }
        }
        Ok(pushes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_keys_follow_sidekiq_order_and_keep_options() {
        let job = Job::new("OkJob", (1, "two"))
            .unwrap()
            .option("tags", serde_json::json!(["a"]));
        let json = job
            .to_json(
                "0123456789abcdef01234567",
                1_700_000_000.0,
                Some(1_700_000_000.5),
            )
            .unwrap();
        assert_eq!(
            json,
            r#"{"retry":true,"queue":"default","tags":["a"],"args":[1,"two"],"class":"OkJob","jid":"0123456789abcdef01234567","created_at":1700000000.0,"enqueued_at":1700000000.5}"#
        );
    }

    #[test]
    fn expiry_counts_from_when_the_job_is_due() {
        let now = 1_700_000_000.0;
        let expires_at = |job: Job| -> f64 {
            let json = job.to_json("j", now, Some(now)).unwrap();
            let value: Value = serde_json::from_str(&json).unwrap();
            value["expires_at"].as_f64().unwrap()
        };
        let hour = Duration::from_secs(3600);
        let job = || Job::new("X", ()).unwrap();
        assert_eq!(expires_at(job().expires_in(hour)), now + 3600.0);
        // Scheduled two hours ahead with a one-hour expiry: it expires three hours ahead.
        let later = job().delay(2 * hour).expires_in(hour);
        let due = later.scheduled_at().unwrap();
        assert_eq!(expires_at(later), due + 3600.0);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(expires_at(job().expires_at(at)), 1_800_000_000.0);
        let json = job().to_json("j", now, Some(now)).unwrap();
        assert!(!json.contains("expires_at"), "no expiry, no field: {json}");
    }

    #[test]
    fn arguments_are_a_list_or_one_object() {
        let job = Job::new("X", serde_json::json!({"a": 1})).unwrap();
        assert_eq!(job.args_json(), r#"[{"a":1}]"#);
        let err = Job::new("X", 42).unwrap_err();
        assert!(err.to_string().contains("JSON list or object"), "{err}");
    }
}
