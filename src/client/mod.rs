//! The client: puts jobs into Redis, now, later or in bulk.
//!
//! One round trip per single enqueue (a pipeline of `SADD queues` and `LPUSH`), one per
//! 1,000 jobs in bulk. A [`Client`] is cheap to clone: clones share one multiplexed
//! connection that reconnects by itself.

use crate::encryption::Keyring;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::store::connection::Connection;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::job::builder::{Job, KeyFn};
use crate::job::job_events::{self, Event, EventKind};
use crate::job::middleware::ClientChain;
use crate::job::payload;
use crate::job::status;
use crate::job::worker::Worker;
use crate::job::{debounce, unique};
use crate::store::config::RedisConfig;
use crate::store::keys::Keys;

/// Jobs per command in bulk enqueues, as Sidekiq 7's `push_bulk` batches.
pub const BULK_BATCH: usize = 1_000;
/// Batches sent in one round trip.
const BATCHES_PER_ROUND_TRIP: usize = 10;

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
    /// Write `enqueued`/`scheduled` to the event stream, capped at about this many entries.
    events: Option<usize>,
    /// Seals the arguments of jobs that ask (see [`Client::encrypt_with`]).
    keyring: Option<Arc<Keyring>>,
    /// Keeps writes Redis could not take (see [`Client::reliable_push`]).
    spool: Option<Arc<spool::Spool>>,
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
    /// A store in place of Redis: the test mode's (recorded, or performed at once).
    #[cfg(feature = "server")]
    Memory(Arc<dyn JobStore>),
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
    /// A debounced job ([`Job::debounce`]) that replaced the arguments of its key's
    /// waiting job, whose jid this is.
    Debounced(String),
    /// Redis could not be reached: kept by reliable push ([`Client::reliable_push`]), to be
    /// pushed, in order, when Redis answers again.
    Buffered(String),
}

impl Push {
    /// The jid, if it was pushed; for a [`Push::Duplicate`], the pending twin's.
    pub fn jid(&self) -> Option<&str> {
        match self {
            Push::Pushed(jid)
            | Push::Duplicate(jid)
            | Push::Debounced(jid)
            | Push::Buffered(jid) => Some(jid),
            Push::Refused(_) => None,
        }
    }
}

mod events;
mod handle;
mod spool;
mod store;

pub use events::EventStream;
pub use handle::JobHandle;
pub use spool::{ReliablePush, SpoolStatus};

/// One reliable-push journal in a directory, as `psychiq spool status` shows it.
#[cfg(feature = "cli")]
pub(crate) struct JournalSummary {
    pub(crate) path: std::path::PathBuf,
    pub(crate) writes: usize,
    pub(crate) jobs: usize,
    /// A running process holds it.
    pub(crate) in_use: bool,
}

/// The reliable-push journals in `dir`.
#[cfg(feature = "cli")]
pub(crate) fn spool_journals(dir: &std::path::Path) -> Result<Vec<JournalSummary>> {
    Ok(spool::journals(dir)?
        .into_iter()
        .map(|(path, file, in_use)| {
            let records = spool::read_records(&file);
            JournalSummary {
                path,
                writes: records.len(),
                jobs: records.iter().map(|r| r.jobs).sum(),
                in_use,
            }
        })
        .collect())
}

pub(crate) use store::{BatchCallback, Pushed};
#[cfg(feature = "server")]
pub(crate) use store::{JobStore, NewBatch};

/// Payloads with their scores, for one `ZADD`.
type Scored = Vec<(f64, String)>;

impl Client {
    /// Connects to Redis (checking it answers) and uses keys under `namespace`.
    pub async fn connect(config: &RedisConfig, namespace: &str) -> Result<Client> {
        let conn = config.connect().await?;
        Ok(Client::from_connection(conn, config.clone(), namespace))
    }

    /// Like [`Client::connect`], but succeeds while Redis is away (its pushes fail, or are
    /// kept by [`Client::reliable_push`], until Redis answers): for an app that must start
    /// during an outage. A bad address is still an error.
    pub async fn connect_lazily(config: &RedisConfig, namespace: &str) -> Result<Client> {
        let conn = config.connect_lazily().await?;
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
            events: None,
            keyring: None,
            spool: None,
        }
    }

    /// A client whose pushes go to the test mode's store instead of Redis.
    #[cfg(feature = "server")]
    pub(crate) fn in_memory(store: Arc<dyn JobStore>) -> Client {
        Client {
            backend: Backend::Memory(store),
            keys: Arc::new(Keys::new(crate::store::keys::DEFAULT_NAMESPACE)),
            middleware: Arc::default(),
            unique_keys: Arc::default(),
            events: None,
            keyring: None,
            spool: None,
        }
    }

    /// Seals the arguments of jobs that ask ([`Job::encrypt`], [`crate::WorkerOptions::encrypt`])
    /// with the newest key of `keyring` (see [`crate::encryption`]). Without one, such a
    /// push is refused, saying so.
    ///
    /// ```no_run
    /// # async fn demo() -> psychiq::Result<()> {
    /// use psychiq::encryption::Keyring;
    /// let mut client = psychiq::Client::connect(&Default::default(), "").await?;
    /// if let Some(keys) = Keyring::from_env()? {
    ///     client.encrypt_with(keys);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn encrypt_with(&mut self, keyring: Keyring) -> &mut Self {
        self.keyring = Some(Arc::new(keyring));
        self
    }

    /// Turns reliable push on: a push that cannot reach Redis is kept (in memory, and in
    /// `options`' journal if it names a directory, fsynced before the push returns) and
    /// answered [`Push::Buffered`]; kept writes are pushed in order when Redis answers
    /// again, and later pushes queue behind them. A journal left in the directory by a
    /// process that died is pushed first. Unique and debounced jobs are not kept (their
    /// lock needs Redis's answer): their push fails as before, saying so.
    ///
    /// ```no_run
    /// # async fn demo() -> psychiq::Result<()> {
    /// use psychiq::{Client, Job, Push, ReliablePush};
    /// let mut client = Client::connect(&Default::default(), "").await?;
    /// client.reliable_push(ReliablePush::journal("/var/lib/myapp/psychiq-spool"))?;
    /// match client.try_push(Job::new("Mailer", ("hi",))?).await? {
    ///     Push::Buffered(jid) => println!("{jid} waits for Redis"),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn reliable_push(&mut self, options: ReliablePush) -> Result<SpoolStatus> {
        let conn = match &self.backend {
            Backend::Redis { conn, .. } => conn.clone(),
            #[cfg(feature = "server")]
            Backend::Memory(_) => {
                return Err(Error::Config(
                    "reliable push keeps writes for Redis; the test mode has nothing to keep"
                        .into(),
                ));
            }
        };
        if self.keys.is_cluster() {
            return Err(Error::Config(
                "reliable push is not available in the cluster layout yet (a kept write spans slots); use one Redis".into(),
            ));
        }
        let spool = spool::Spool::open(&options, conn, self.keys.prefix().to_string())?;
        let status = spool.status();
        self.spool = Some(spool);
        Ok(status)
    }

    /// What reliable push holds now (`None` when it is off).
    pub fn spool_status(&self) -> Option<SpoolStatus> {
        self.spool.as_ref().map(|spool| spool.status())
    }

    /// Waits until every kept write is in Redis, at most `within` (then an error says how
    /// many jobs still wait). Returns at once when reliable push is off.
    pub async fn flush_spool(&self, within: Duration) -> Result<()> {
        match &self.spool {
            Some(spool) => spool.flush(within).await,
            None => Ok(()),
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

    /// Writes an `enqueued` or `scheduled` event to the event stream for every job this
    /// client pushes, keeping the stream to about `cap` entries (see [`crate::job_events`]).
    /// Clones made before keep what they had.
    pub fn emit_events(&mut self, cap: usize) -> &mut Self {
        self.events = Some(cap.max(1));
        self
    }

    /// The keys this client writes to.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The store in place of Redis, for a client the test mode handed out.
    #[cfg(feature = "server")]
    pub(crate) fn job_store(&self) -> Option<&dyn JobStore> {
        match &self.backend {
            Backend::Memory(store) => Some(store.as_ref()),
            Backend::Redis { .. } => None,
        }
    }

    /// This client's Redis connection and settings; an error saying what to do for a
    /// test-mode client, which has none (`what` names what needed it).
    pub(crate) fn redis(&self, what: &str) -> Result<(&Connection, &RedisConfig)> {
        let _ = what; // named only in the test mode's error
        match &self.backend {
            Backend::Redis { conn, config, .. } => Ok((conn, config)),
            #[cfg(feature = "server")]
            Backend::Memory(_) => Err(Error::Config(format!(
                "a test-mode client has no Redis for {what}; use a client connected to Redis"
            ))),
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
            Push::Pushed(jid)
            | Push::Duplicate(jid)
            | Push::Debounced(jid)
            | Push::Buffered(jid) => Ok(jid),
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
                Push::Pushed(jid)
                | Push::Duplicate(jid)
                | Push::Debounced(jid)
                | Push::Buffered(jid) => Some(jid),
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
        if jobs.iter().any(|job| job.encrypt) {
            self.seal(&mut jobs)?;
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

    /// Seals the arguments of the jobs that ask, after the middleware had their say (they
    /// see the arguments in clear, as Sidekiq Enterprise's do). A unique job is named by its
    /// arguments in clear first, so twins stay twins whatever their nonces.
    fn seal(&self, jobs: &mut [Job]) -> Result<()> {
        for job in jobs.iter_mut().filter(|job| job.encrypt) {
            if matches!(self.backend, Backend::Redis { .. }) && self.keyring.is_none() {
                return Err(Error::Config(format!(
                    "job {} asks for its arguments to be encrypted, but this client has no keys; call client.encrypt_with(Keyring::from_env()?) with {} set (see the README's encryption)",
                    job.class,
                    crate::encryption::KEYS_ENV
                )));
            }
            if job.active_job.is_some() {
                return Err(Error::Config(format!(
                    "job {} is a Ruby ActiveJob, which cannot open Psychiq's sealed arguments; push it without encrypt()",
                    job.class
                )));
            }
            // The test mode keeps jobs in this process's memory: nothing is at rest.
            let (Some(keyring), Backend::Redis { .. }) = (&self.keyring, &self.backend) else {
                continue;
            };
            if let Some(unique) = &mut job.unique
                && unique.identity.is_none()
            {
                let args: Value = serde_json::from_str(job.args.get()).unwrap_or_default();
                unique.identity = Some(crate::job::unique::canonical_json(&args));
            }
            let (id, sealed) = keyring.seal(&job.class, job.args.get().as_bytes())?;
            job.args = serde_json::value::to_raw_value(&[sealed])
                .map_err(|e| Error::Payload(format!("sealed arguments: {e}")))?;
            job.options
                .insert(crate::encryption::ENCRYPTED_FIELD.into(), Value::from(id));
        }
        Ok(())
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
                    written.push(Pushed {
                        jid,
                        queue: job.queue.clone(),
                        at,
                        payload: json,
                    });
                }
                store.push(written).await
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
        if self.keys.is_cluster() && jobs.iter().any(|job| job.group_key().is_some()) {
            return Err(Error::Config(
                "groups are not available in the cluster layout yet (a group's keys are in other slots than its queue's); use one Redis".into(),
            ));
        }
        if self.keys.is_cluster() && jobs.iter().any(|job| job.priority_level() > 0) {
            return Err(Error::Config(
                "priorities within a queue are not available in the cluster layout yet; use a queue of its own for urgent jobs, or one Redis".into(),
            ));
        }
        if self.keys.is_cluster() && jobs.iter().any(|job| job.debounce.is_some()) {
            return Err(Error::Config(
                "debounced jobs are not available in the cluster layout yet (the key and the schedule are in different slots); use one Redis".into(),
            ));
        }
        let mut pushes = Vec::with_capacity(jobs.len());
        let now = crate::clock::now_secs();
        // Commands of up to 1,000 jobs each; ten of them share a round trip, which bounds
        // the buffer while cutting round trips tenfold for large bulks.
        for group in jobs.chunks(BULK_BATCH * BATCHES_PER_ROUND_TRIP) {
            let group_start = pushes.len();
            let mut pipe = redis::pipe();
            // Unique and debounced jobs (their place in `pushes`, and whether debounced),
            // answered in the pipeline's order.
            let mut answered: Vec<(usize, bool)> = Vec::new();
            // Tracked unique jobs (jid), whose status goes if a twin was pending.
            let mut tracked_unique: Vec<(usize, String)> = Vec::new();
            // Loaded first in the same pipeline, so each job sends only the script's hash.
            if group.iter().any(|job| job.unique.is_some()) {
                pipe.cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(unique::PUSH_SCRIPT)
                    .ignore();
            }
            if group.iter().any(|job| job.debounce.is_some()) {
                pipe.cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(debounce::PUSH_SCRIPT)
                    .ignore();
            }
            for chunk in group.chunks(BULK_BATCH) {
                let mut by_queue: Vec<(&str, Vec<String>)> = Vec::new();
                // Jobs with a priority, by queue and level.
                let mut urgent: Vec<(&str, u8, Vec<String>)> = Vec::new();
                // Per schedule set: one in Sidekiq's layout (all under ""), each queue's
                // own in the cluster's (under the queue's name).
                let mut scheduled: Vec<(&str, Scored)> = Vec::new();
                for &job in chunk {
                    let jid = job.jid.clone().unwrap_or_else(payload::new_jid);
                    let at = job.scheduled_at();
                    let json = job.to_json(&jid, now, at.is_none().then_some(now))?;
                    // Written before the job, so a server's "running" comes after it.
                    if let Some(retention) = job.tracked_for() {
                        status::pushed(
                            &mut pipe, &self.keys, &jid, &job.class, &job.queue, at, now, retention,
                        );
                        if job.unique.is_some() || job.debounce.is_some() {
                            tracked_unique.push((pushes.len(), jid.clone()));
                        }
                    }
                    if let Some(cap) = self.events {
                        let kind = if at.is_some() {
                            EventKind::Scheduled
                        } else {
                            EventKind::Enqueued
                        };
                        let mut event = Event::new(kind, &jid, &job.class, &job.queue, now);
                        if let Some(at) = at {
                            event = event.with("next_at", at);
                        }
                        job_events::append(&mut pipe, &self.keys, &event, cap, true);
                    }
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
                        answered.push((pushes.len(), false));
                    } else if let Some(settings) = &job.debounce {
                        // Replaces its key's waiting job, or waits as the key's new one.
                        pipe.cmd("EVALSHA")
                            .arg(debounce::push_script_hash())
                            .arg(2)
                            .arg(debounce::debounce_key(&self.keys, &settings.key))
                            .arg(self.keys.schedule())
                            .arg(job.to_json(&jid, now, None)?)
                            .arg(&jid)
                            .arg(settings.delay.as_secs_f64())
                            .arg(settings.max_wait.map_or(0.0, |d| d.as_secs_f64()));
                        answered.push((pushes.len(), true));
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
                            None if job.priority_level() > 0 => {
                                let level = job.priority_level();
                                match urgent
                                    .iter_mut()
                                    .find(|(q, p, _)| *q == job.queue && *p == level)
                                {
                                    Some((_, _, list)) => list.push(json),
                                    None => urgent.push((job.queue.as_str(), level, vec![json])),
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
                // Queues with grouped jobs, once each: servers route those as they fetch.
                let mut grouped: Vec<&str> = chunk
                    .iter()
                    .filter(|job| job.group_key().is_some())
                    .map(|job| job.queue.as_str())
                    .collect();
                grouped.sort_unstable();
                grouped.dedup();
                if !grouped.is_empty() {
                    pipe.sadd(self.keys.grouped(), &grouped).ignore();
                }
                for (queue, list) in &by_queue {
                    pipe.sadd(self.keys.queues(), *queue).ignore();
                    pipe.lpush(self.keys.queue(queue), list).ignore();
                }
                for (queue, level, list) in &urgent {
                    pipe.sadd(self.keys.queues(), *queue).ignore();
                    pipe.lpush(self.keys.priority_queue(queue, *level), list)
                        .ignore();
                    pipe.sadd(self.keys.prioritized(), *queue).ignore();
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
            // Reliable push: behind kept writes this one is kept too (their order holds);
            // else it is sent, and kept if Redis cannot be reached.
            let keepable = answered.is_empty();
            if let Some(spool) = &self.spool
                && spool.busy()
            {
                if !keepable {
                    return Err(Error::Other(format!(
                        "{} jobs wait in the reliable-push buffer for Redis, and unique or debounced jobs cannot wait behind them (their lock needs Redis's answer); push them once it has drained (Client::flush_spool)",
                        spool.status().jobs
                    )));
                }
                let why = Error::Other("earlier pushes wait for Redis".into());
                spool.keep(self.record(&pipe, &pushes[group_start..])?, why)?;
                buffer(&mut pushes[group_start..]);
                continue;
            }
            // With reliable push, a write sent now sets its marker in the same transaction:
            // if Redis took it but the reply was lost (it went down mid-push), the kept copy
            // finds the marker on replay and is not pushed twice.
            if self.spool.is_some()
                && keepable
                && config.replica_wait().is_none()
                && let Some(id) = pushes[group_start..].iter().find_map(|p| p.jid())
            {
                pipe.set_options(
                    spool::marker_key(self.keys.prefix(), id),
                    1,
                    redis::SetOptions::default()
                        .with_expiration(redis::SetExpiry::EX(spool::MARKER_SECS)),
                )
                .ignore();
                pipe.atomic();
            }
            // `WAIT` in the same round trip, on the connection that wrote: it counts that
            // connection's writes.
            if let Some((replicas, timeout)) = config.replica_wait() {
                pipe.cmd("WAIT")
                    .arg(replicas)
                    .arg(timeout.as_millis() as u64);
            }
            let mut replies: Vec<redis::Value> = match pipe.query_async(&mut conn.clone()).await {
                Ok(replies) => replies,
                Err(e) => match &self.spool {
                    Some(spool) if keepable && spool::unreachable(&e) => {
                        let record = self.record(&pipe, &pushes[group_start..])?;
                        spool.keep(record, config.redis_error(e))?;
                        buffer(&mut pushes[group_start..]);
                        continue;
                    }
                    Some(_) if spool::unreachable(&e) => {
                        return Err(Error::Other(format!(
                            "{}; unique and debounced jobs are not kept by reliable push (their lock needs Redis's answer)",
                            config.redis_error(e)
                        )));
                    }
                    _ => return Err(config.redis_error(e)),
                },
            };
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
            for ((place, debounced), holder) in answered.into_iter().zip(holders) {
                if pushes[place].jid() != Some(holder.as_str()) {
                    pushes[place] = if debounced {
                        Push::Debounced(holder)
                    } else {
                        Push::Duplicate(holder)
                    };
                }
            }
            // A duplicate was never pushed, and a debounced push took the waiting job's jid:
            // its own status goes (that job has its own).
            let unpushed: Vec<String> = tracked_unique
                .into_iter()
                .filter(|(place, _)| {
                    matches!(pushes[*place], Push::Duplicate(_) | Push::Debounced(_))
                })
                .map(|(_, jid)| self.keys.status(&jid))
                .collect();
            if !unpushed.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL")
                    .arg(&unpushed)
                    .query_async(&mut conn.clone())
                    .await;
            }
        }
        Ok(pushes)
    }

    /// A kept write: the pipeline's commands, named by its first jid.
    fn record(&self, pipe: &redis::Pipeline, pushes: &[Push]) -> Result<spool::Record> {
        Ok(spool::Record {
            id: pushes
                .iter()
                .find_map(|p| p.jid())
                .unwrap_or_default()
                .to_string(),
            jobs: pushes.len(),
            commands: spool::commands_of(pipe)?,
        })
    }
}

/// Marks pushes kept by reliable push.
fn buffer(pushes: &mut [Push]) {
    for push in pushes {
        if let Push::Pushed(jid) = push {
            *push = Push::Buffered(std::mem::take(jid));
        }
    }
}
