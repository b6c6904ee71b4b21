//! One job to push, built before it is written: its class, arguments and options
//! (queue, retries, schedule, expiry, uniqueness, any payload field), from a worker type or
//! from a class name, and the payload it becomes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::job::payload::{self, JobMap, Retry};
use crate::job::unique;
use crate::job::unique::UniqueUntil;
use crate::job::worker::{Backtrace, Worker, WorkerOptions};

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
    pub(crate) class: String,
    pub(crate) args: Box<RawValue>,
    pub(crate) queue: String,
    pub(crate) retry: Retry,
    pub(crate) at: Option<SystemTime>,
    pub(crate) jid: Option<String>,
    pub(crate) expiry: Option<Expiry>,
    pub(crate) unique: Option<Unique>,
    pub(crate) debounce: Option<crate::job::debounce::Debounce>,
    /// Whether its arguments are sealed at the push (see [`Job::encrypt`]).
    pub(crate) encrypt: bool,
    pub(crate) options: JobMap,
    /// Set for a job of a Ruby ActiveJob class: `args` are then the job's own arguments,
    /// written inside Rails' record (see [`Job::active_job`]).
    pub(crate) active_job: Option<crate::job::active_job::Wrapped>,
}

/// The payload field of a job's priority within its queue (Sidekiq ignores it).
/// Named for Psychiq, so a Ruby job's own `priority` option is never taken for it.
pub(crate) const PRIORITY_FIELD: &str = "psychiq_priority";

/// The payload fields of a job's group and its limit (Sidekiq ignores them).
pub(crate) const GROUP_FIELD: &str = "psychiq_group";
pub(crate) const GROUP_LIMIT_FIELD: &str = "psychiq_group_limit";
pub(crate) const GROUP_RATE_FIELD: &str = "psychiq_group_rate";

/// A unique job's settings (see [`Job::unique_for`]).
#[derive(Debug, Clone)]
pub(crate) struct Unique {
    /// How long the lock lives at most, from when the job is due.
    pub(crate) for_: Duration,
    pub(crate) until: UniqueUntil,
    /// What names "the same job", from the client's key function; its arguments if `None`.
    pub(crate) identity: Option<String>,
}

/// A function that names "the same job" from its arguments (see [`crate::Client::unique_key_for`]).
pub(crate) type KeyFn = Arc<dyn Fn(&Value) -> String + Send + Sync>;
/// When a job expires: relative to when it is due, or at a fixed time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expiry {
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
            debounce: None,
            encrypt: false,
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

    pub(crate) fn with_options(mut self, options: &WorkerOptions) -> Job {
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
        if let Some(retention) = options.track {
            self = self.track_for(retention);
        }
        self.encrypt = options.encrypt;
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

    /// Tracks this job: its status (and result) is kept a day after its last change, for
    /// [`crate::JobHandle`], `psychiq job JID` and the dashboard (see [`crate::status`]).
    pub fn track(self) -> Job {
        self.track_for(crate::job::status::DEFAULT_RETENTION)
    }

    /// Tracks this job, keeping its status for `retention` after its last change (at least
    /// a second).
    pub fn track_for(self, retention: Duration) -> Job {
        let secs = retention.as_secs().max(1);
        self.option(crate::job::status::TRACK_FIELD, Value::from(secs))
    }

    /// The retention this job's tracking asks for, in seconds.
    pub(crate) fn tracked_for(&self) -> Option<u64> {
        self.options
            .get(crate::job::status::TRACK_FIELD)
            .and_then(crate::job::status::retention_of)
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

    /// Gives the job a priority within its queue, from 0 (the default: the queue's own
    /// list, as Sidekiq has it) to 9 (most urgent; higher values count as 9): Psychiq
    /// servers take a queue's higher priorities first, so an urgent job passes the backlog
    /// without a queue of its own. A job with a priority above 0 waits in `prio:P:QUEUE`,
    /// which Ruby servers do not read; a retried or scheduled one keeps its priority.
    ///
    /// ```
    /// let urgent = psychiq::Job::new("Mailer::PasswordReset", (42,))?.priority(9);
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn priority(mut self, priority: u8) -> Job {
        let priority = priority.min(9);
        if priority == 0 {
            self.options.remove(PRIORITY_FIELD);
        } else {
            self.options
                .insert(PRIORITY_FIELD.into(), Value::from(priority));
        }
        self
    }

    /// Puts the job in group `key` of its queue (a tenant, a customer): a group's jobs run
    /// at most its limit at once across every server (1 unless [`Job::group_limit`] says
    /// otherwise: one at a time, in order, a sequence), and groups take turns, so one
    /// group's backlog never holds up another's first job. See the README's groups.
    ///
    /// ```
    /// let webhook = psychiq::Job::new("Stripe::Webhook", ("evt_1",))?.group("cus_42");
    /// let export = psychiq::Job::new("Export::Rows", (7,))?.group("tenant-9").group_limit(5);
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn group(mut self, key: impl Into<String>) -> Job {
        self.options
            .insert(GROUP_FIELD.into(), Value::String(key.into()));
        self
    }

    /// With [`Job::group`]: how many of the group's jobs may run at once (at least 1); the
    /// first job that names one sets it for the group (`psychiq groups limit` changes it).
    pub fn group_limit(mut self, limit: u32) -> Job {
        self.options
            .insert(GROUP_LIMIT_FIELD.into(), Value::from(limit.max(1)));
        self
    }

    /// Seals the job's arguments with AES-256-GCM at the push, under the newest key of the
    /// client's keyring ([`crate::Client::encrypt_with`]): Redis, the dashboard, the CLI
    /// and the logs see `[encrypted]`, and only a server holding the key opens them, right
    /// before `perform`. See [`crate::encryption`].
    ///
    /// ```
    /// let charge = psychiq::Job::new("Billing::Charge", (42, "4242 4242 4242 4242"))?.encrypt();
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn encrypt(mut self) -> Job {
        self.encrypt = true;
        self
    }

    /// Refuses a job that asks for encryption on a path that writes its payload itself
    /// (a batch, a workflow, a periodic entry): only the client's push seals.
    pub(crate) fn refuse_encrypt(&self, path: &str) -> Result<()> {
        if self.encrypt {
            return Err(Error::Config(format!(
                "job {} asks for its arguments to be encrypted, which {path} does not do yet; push it with Client::push, or without encrypt()",
                self.class
            )));
        }
        Ok(())
    }

    /// With [`Job::group`]: at most `count` of the group's jobs start in any window of
    /// `per` across the fleet (a tenant's API quota), on top of its limit at once. Like the
    /// limit, the first job that names one sets it for the group (`psychiq groups rate`
    /// changes or clears it). A count of 0 or an empty window sets no rate.
    ///
    /// ```
    /// use std::time::Duration;
    /// let call = psychiq::Job::new("Crm::Sync", (42,))?
    ///     .group("tenant-9")
    ///     .group_limit(4)
    ///     .group_rate(100, Duration::from_secs(60));
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn group_rate(mut self, count: u32, per: std::time::Duration) -> Job {
        if count == 0 || per.is_zero() {
            self.options.remove(GROUP_RATE_FIELD);
        } else {
            self.options.insert(
                GROUP_RATE_FIELD.into(),
                serde_json::json!([count, per.as_secs_f64()]),
            );
        }
        self
    }

    /// The job's group, if [`Job::group`] gave it one.
    pub(crate) fn group_key(&self) -> Option<&str> {
        self.options.get(GROUP_FIELD).and_then(Value::as_str)
    }

    /// The job's priority (0 unless [`Job::priority`] set one).
    pub(crate) fn priority_level(&self) -> u8 {
        self.options
            .get(PRIORITY_FIELD)
            .and_then(Value::as_u64)
            .map_or(0, |p| p.min(9) as u8)
    }

    /// Debounces the job by `key`: pushes with the same key while its job still waits make
    /// one job, with the last push's arguments, run `delay` after the last push (see
    /// [`Job::debounce_max_wait`] for a burst that never pauses). The push returns the
    /// waiting job's jid ([`crate::Push::Debounced`] when it replaced one). Atomic under
    /// concurrent pushes, on Redis's clock; the job waits in the schedule, so a Ruby
    /// server's poller runs it as any scheduled job.
    ///
    /// ```
    /// use std::time::Duration;
    /// let job = psychiq::Job::new("Search::Reindex", (42,))?
    ///     .debounce("reindex-user-42", Duration::from_secs(5))
    ///     .debounce_max_wait(Duration::from_secs(60));
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn debounce(mut self, key: impl Into<String>, delay: Duration) -> Job {
        let key = key.into();
        self.options.insert(
            crate::job::debounce::DEBOUNCE_FIELD.into(),
            Value::String(key.clone()),
        );
        self.debounce = Some(crate::job::debounce::Debounce {
            key,
            delay,
            max_wait: self.debounce.and_then(|d| d.max_wait),
        });
        self.at(SystemTime::now() + delay)
    }

    /// With [`Job::debounce`]: the job runs at most `max_wait` after the first push of a
    /// burst, however long the burst goes on.
    pub fn debounce_max_wait(mut self, max_wait: Duration) -> Job {
        if let Some(debounce) = &mut self.debounce {
            debounce.max_wait = Some(max_wait);
        }
        self
    }

    /// Makes the job unique for `unique_for`: while a job of the same class, queue and
    /// arguments (as canonical JSON) is enqueued, scheduled, retrying or running, pushing
    /// this one writes nothing and returns that job's jid ([`crate::Push::Duplicate`]). The lock
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
    pub(crate) fn unique_key(&self) -> Option<String> {
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
        if let Some(group) = self.group_key() {
            if group.is_empty() {
                return Err(Error::Payload(format!(
                    "job {} has an empty group; name the tenant or customer it is for",
                    self.class
                )));
            }
            if self.priority_level() > 0 {
                return Err(Error::Payload(format!(
                    "job {} has both a group and a priority, which grouped jobs do not take yet; drop one",
                    self.class
                )));
            }
        }
        if self.unique.is_some() && self.priority_level() > 0 {
            return Err(Error::Payload(format!(
                "job {} is both unique and given a priority, which unique jobs do not take yet; drop one",
                self.class
            )));
        }
        if let Some(debounce) = &self.debounce {
            if self
                .jid
                .as_deref()
                .is_some_and(|jid| jid.contains(['"', '\\']))
            {
                return Err(Error::Payload(format!(
                    "debounced job {} has a jid with a quote or backslash; give it a plain one",
                    self.class
                )));
            }
            if debounce.key.is_empty() {
                return Err(Error::Payload(format!(
                    "job {} has an empty debounce key; name what its pushes stand for",
                    self.class
                )));
            }
            if self.unique.is_some() {
                return Err(Error::Payload(format!(
                    "job {} is both unique and debounced; a debounced job is already one per key, so drop unique_for",
                    self.class
                )));
            }
        }
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
    pub(crate) fn scheduled_at(&self) -> Option<f64> {
        let at = self.at?;
        (!crate::clock::secs_until(at).is_zero()).then(|| crate::clock::epoch_secs(at))
    }

    /// The payload in Sidekiq's key order: options, then args, class, jid and timestamps.
    pub(crate) fn to_json(
        &self,
        jid: &str,
        created_at: f64,
        enqueued_at: Option<f64>,
    ) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::Duration;

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
