//! The server: fetches jobs and runs them, N at a time, until told to stop.
//!
//! One fetch loop takes a job whenever one of the N slots is free and spawns it as a task;
//! a poller moves due scheduled and retry jobs; the counters are flushed every few seconds
//! and at shutdown. Stopping stops fetching, lets running jobs finish within the shutdown
//! timeout, and pushes the ones still running back to their queues.

pub(crate) mod acks;
pub(crate) mod backlog;
pub(crate) mod capsule;
pub(crate) mod chunk;
pub(crate) mod control;
pub(crate) mod departure;
pub mod events;
pub(crate) mod execute;
pub(crate) mod fetch;
pub(crate) mod heartbeat;
pub(crate) mod job_log;
pub(crate) mod launcher;
pub(crate) mod lifecycle;
pub(crate) mod manager;
pub(crate) mod orphans;
pub(crate) mod poller;
pub(crate) mod processor;
pub(crate) mod recovery;
pub(crate) mod registry;
pub(crate) mod retry;
pub(crate) mod running;
pub(crate) mod scheduler;
pub(crate) mod signals;
pub(crate) mod stats;
pub(crate) mod work;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::job::middleware::ServerChain;
use crate::plugins::Plugin;
use crate::server::capsule::Capsule;
use crate::server::events::{Event, FailedJob, Hooks};
use crate::server::fetch::{FetchMode, QueueSpec};
use crate::server::launcher::ServerHandle;
use crate::server::registry::Registry;
use crate::store::config::RedisConfig;
use crate::store::keys::DEFAULT_NAMESPACE;

/// A server's settings, with the original's defaults: 25 jobs at once, queue `default`, 25 s
/// to finish at shutdown, crash-safe fetch; Sidekiq's bare keys unless a namespace is set.
/// Built through its methods (concurrency at least 1, poll interval at least 10 ms), or from
/// the [`crate::Config`] the app's client is built from ([`crate::Config::server`]).
///
/// ```
/// use std::time::Duration;
/// use psychiq::{Config, FetchMode};
///
/// let config = Config::from_url("redis://127.0.0.1:6379/0")?
///     .namespace("shop")
///     .server()
///     .concurrency(10)
///     .weighted_queue("critical", 3)
///     .weighted_queue("default", 1)
///     .fetch(FetchMode::Reliable)
///     .job_timeout(Duration::from_secs(300))
///     .tag("billing");
/// # let _ = config;
/// # Ok::<(), psychiq::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where Redis is.
    pub(crate) redis: RedisConfig,
    /// Key namespace (`""`, Sidekiq's bare keys, unless set; `"psychiq"` was 0.1's default).
    pub(crate) namespace: String,
    /// How many jobs run at once (25).
    pub(crate) concurrency: usize,
    /// Jobs held beyond those running at most (twice `concurrency` unless set).
    pub(crate) prefetch: Option<usize>,
    /// Queues to serve; `default` when empty.
    pub(crate) queues: Vec<QueueSpec>,
    /// How long running jobs may finish after a stop before they are pushed back (25 s).
    pub(crate) shutdown_timeout: Duration,
    /// Mean time between polls of the schedule and retry sets (2 s).
    pub(crate) poll_interval: Duration,
    /// A tag shown with the process in dashboards (e.g. the app's name).
    pub(crate) tag: String,
    /// How jobs are fetched: crash-safe by default.
    pub(crate) fetch: FetchMode,
    /// Cancel a job that runs longer than this, unless its worker sets its own timeout
    /// (off by default).
    pub(crate) job_timeout: Option<Duration>,
    /// Count batch jobs' outcomes and fire batch callbacks (on).
    pub(crate) batches: bool,
    /// Track every job's status for this long, whatever it asks (off).
    pub(crate) track_all: Option<Duration>,
    /// Opens sealed arguments (see [`crate::encryption`]).
    pub(crate) keyring: Option<Arc<crate::encryption::Keyring>>,
    /// Write the event stream, capped at about this many entries (off).
    pub(crate) events: Option<usize>,
    /// How long a cancelled running job may go on before its task is dropped (10 s).
    pub(crate) cancel_grace: Duration,
    /// Pools beside the server's own queues and concurrency (none).
    pub(crate) capsules: Vec<Capsule>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            redis: RedisConfig::default(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            concurrency: 25,
            prefetch: None,
            queues: Vec::new(),
            shutdown_timeout: Duration::from_secs(25),
            poll_interval: Duration::from_secs(2),
            tag: String::new(),
            fetch: FetchMode::Reliable,
            job_timeout: None,
            batches: true,
            track_all: None,
            keyring: None,
            events: None,
            cancel_grace: Duration::from_secs(10),
            capsules: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// Sets the Redis server.
    pub fn redis(mut self, redis: RedisConfig) -> Self {
        self.redis = redis;
        self
    }
    /// Sets the key namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }
    /// Sets how many jobs run at once (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }
    /// Sets how many fetched jobs may wait for a worker beyond those running (twice the
    /// concurrency unless set; 0 fetches only for idle workers). Waiting jobs are in
    /// this process's in-progress hash like running ones, and the prefetch shrinks for
    /// slow jobs so it holds about a millisecond of work (see the README's "Guarantees"). Only
    /// reliable fetch prefetches.
    ///
    /// ```
    /// let config = psychiq::ServerConfig::default().concurrency(50).prefetch(10);
    /// # let _ = config;
    /// ```
    pub fn prefetch(mut self, jobs: usize) -> Self {
        self.prefetch = Some(jobs);
        self
    }
    /// Formerly turned on the discarding of expired jobs for every class. Every server
    /// now obeys a job's `expires_at` (and a unique job's `unique_until`) without being
    /// told; this does nothing.
    #[deprecated(
        since = "0.2.0",
        note = "always on: every server obeys a job's expires_at"
    )]
    pub fn expiring_jobs(self, _on: bool) -> Self {
        self
    }
    /// Formerly turned on the release of unique jobs' locks for every class; always on
    /// now, so this does nothing.
    #[deprecated(
        since = "0.2.0",
        note = "always on: every server lets a unique job's lock go"
    )]
    pub fn unique_jobs(self, _on: bool) -> Self {
        self
    }
    /// Counts the outcomes of batch jobs (those with `bid`) and fires their batches'
    /// callbacks ([`crate::batch`]); on by default. Every server that may run batch jobs
    /// must have it on; a fleet without batches may turn it off to skip a substring check
    /// a job.
    pub fn batches(mut self, on: bool) -> Self {
        self.batches = on;
        self
    }
    /// Adds a queue. Queues added this way are served in strict order, as Sidekiq's
    /// `-q critical -q default`: a job of a later queue runs only when the earlier ones are
    /// empty. Beside [weighted](ServerConfig::weighted_queue) queues it has weight 1.
    ///
    /// ```
    /// let strict = psychiq::ServerConfig::default().queue("critical").queue("default");
    /// # let _ = strict;
    /// ```
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queues.push(QueueSpec {
            name: name.into(),
            weight: 0,
        });
        self
    }
    /// Adds a queue with a weight, as Sidekiq's `-q critical,3 -q default,1`: each fetch
    /// tries the queues in a random order where one of weight 3 comes first three times as
    /// often as one of weight 1, so no queue starves. A weight of 0 counts as 1.
    ///
    /// ```
    /// let weighted = psychiq::ServerConfig::default()
    ///     .weighted_queue("critical", 3)
    ///     .weighted_queue("default", 1);
    /// # let _ = weighted;
    /// ```
    pub fn weighted_queue(mut self, name: impl Into<String>, weight: u32) -> Self {
        self.queues.push(QueueSpec {
            name: name.into(),
            weight: weight.max(1),
        });
        self
    }
    /// Adds a capsule: a pool of its own beside the server's queues and concurrency (which
    /// make the capsule `default`), with its own queues, concurrency and prefetch (see
    /// [`Capsule`]). Checked when the server starts: unique names, each queue in one
    /// capsule.
    pub fn capsule(mut self, capsule: Capsule) -> Self {
        self.capsules.push(capsule);
        self
    }
    /// Adds a queue as the CLI's `-q NAME[,WEIGHT]` gives it ([`QueueSpec::parse`]).
    pub fn queue_spec(mut self, spec: QueueSpec) -> Self {
        self.queues.push(spec);
        self
    }
    /// Sets how long running jobs get to finish after a stop before they are pushed back
    /// to their queues (25 s; the CLI's `-t/--shutdown-timeout`).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
    /// There is no plain `timeout`: two settings could be meant, so this says which.
    #[deprecated(
        since = "0.2.0",
        note = "say which timeout: `shutdown_timeout` (how long running jobs get at a stop, the CLI's -t) or `job_timeout` (how long one job may run)"
    )]
    pub fn timeout(self, timeout: Duration) -> Self {
        self.shutdown_timeout(timeout)
    }
    /// Sets the scheduler's mean poll interval (at least 10 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }
    /// Sets the tag shown with the process in dashboards (e.g. the app's name).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }
    /// Sets how jobs are fetched ([`FetchMode::Reliable`] unless set).
    pub fn fetch(mut self, fetch: FetchMode) -> Self {
        self.fetch = fetch;
        self
    }
    /// Tracks every job's status (and result) for `retention` after its last change, as if
    /// each asked for it (see [`crate::status`]); jobs that ask keep their own retention.
    pub fn track_all(mut self, retention: Duration) -> Self {
        self.track_all = Some(retention);
        self
    }
    /// Opens the sealed arguments of encrypted jobs with these keys (see
    /// [`crate::encryption`]); the `psychiq` binary reads them from
    /// `PSYCHIQ_ENCRYPTION_KEYS`. A sealed job whose key is missing dies, saying which.
    pub fn encryption(mut self, keyring: crate::encryption::Keyring) -> Self {
        self.keyring = Some(Arc::new(keyring));
        self
    }
    /// Writes the stream of job events, kept to about `cap` entries (see
    /// [`crate::job_events`]; [`crate::job_events::DEFAULT_CAP`] is a good start).
    pub fn events(mut self, cap: usize) -> Self {
        self.events = Some(cap.max(1));
        self
    }
    /// How long a cancelled running job may go on (to stop cleanly, seeing
    /// [`crate::context::cancelled`]) before its task is dropped: 10 s unless set. A
    /// command worker's process group gets TERM at the cancel and KILL when it is dropped.
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }
    /// Cancels a job that runs longer than `timeout` unless its worker sets its own
    /// (off unless set); a cancelled job fails as `Psychiq::JobTimeout` and is retried.
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.job_timeout = Some(timeout);
        self
    }
}

impl crate::Config {
    /// A server's settings that take jobs from here, with the other settings at their
    /// defaults, to go on with (`.concurrency(10).queue("mail")`).
    pub fn server(&self) -> crate::ServerConfig {
        crate::ServerConfig::default()
            .redis(self.redis().clone())
            .namespace(self.namespace_name())
    }
}

/// Runs jobs of the registered workers.
///
/// ```no_run
/// use psychiq::{JobResult, Registry, Server, ServerConfig, Worker};
/// struct Hello;
/// impl Worker for Hello {
///     type Args = (String,);
///     async fn perform(&self, (name,): Self::Args) -> JobResult {
///         println!("hello {name}");
///         Ok(())
///     }
/// }
/// # async fn demo() -> psychiq::Result<()> {
/// let mut registry = Registry::new();
/// registry.register(Hello);
/// Server::new(ServerConfig::default(), registry).run().await
/// # }
/// ```
pub struct Server {
    pub(crate) config: ServerConfig,
    pub(crate) registry: Registry,
    pub(crate) middleware: ServerChain,
    pub(crate) hooks: Hooks,
    pub(crate) plugins: Vec<Arc<dyn Plugin>>,
}

impl Server {
    /// A server for `registry`'s workers.
    pub fn new(config: ServerConfig, registry: Registry) -> Server {
        Server {
            config,
            registry,
            middleware: ServerChain::default(),
            hooks: Hooks::default(),
            plugins: Vec::new(),
        }
    }

    /// The server middleware chain, to add, insert and remove middleware (see
    /// [`crate::job::middleware`]). Empty by default.
    pub fn middleware(&mut self) -> &mut ServerChain {
        &mut self.middleware
    }

    /// Runs `hook` at every `event` (see [`crate::server::events`]), after hooks added before it.
    pub fn on<F, Fut>(&mut self, event: Event, hook: F) -> &mut Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.on(event, hook);
        self
    }

    /// Runs `hook` after every failed run (retried, dead or dropped), with the job as
    /// written and the error (Sidekiq's `error_handlers`).
    pub fn on_error<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: Fn(Arc<FailedJob>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.on_error(hook);
        self
    }

    /// Runs `hook` when a job will not run again: it went to the dead set, or was dropped
    /// (`retry: false`, or exhausted with `dead: false`), as Sidekiq's `death_handlers` run.
    pub fn on_death<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: Fn(Arc<FailedJob>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.on_death(hook);
        self
    }

    /// Adds a plugin: a long-running task the server supervises (see [`crate::plugins`]).
    /// The poller and orphan recovery are built in.
    pub fn plugin<P: Plugin>(&mut self, plugin: P) -> &mut Self {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// Starts the server inside the running tokio runtime and returns once it has registered
    /// in Redis; the [`ServerHandle`] quiets it, stops it and waits for it. Fails only when
    /// Redis cannot be reached at start-up. Signals are left to the app.
    pub async fn start(self) -> Result<ServerHandle> {
        crate::server::launcher::launch(self, false).await
    }

    /// Runs until SIGINT or SIGTERM (or a remote `TERM`), then stops gracefully; a second
    /// SIGINT or SIGTERM stops at once, pushing running jobs back. SIGTSTP quiets the
    /// server and SIGTTIN logs the running jobs.
    pub async fn run(self) -> Result<()> {
        let handle = crate::server::launcher::launch(self, true).await?;
        tokio::select! {
            _ = crate::server::signals::terminate() => handle.stop(),
            _ = handle.stopped() => {}
        }
        tokio::select! {
            _ = crate::server::signals::terminate() => handle.stop_now(),
            _ = handle.stopped() => {}
        }
        handle.stopped().await;
        stopped_as_asked(&handle)
    }

    /// Runs until `shutdown` completes (or a remote `TERM`), then stops gracefully.
    ///
    /// Fails only at start-up, when Redis cannot be reached; later Redis errors are logged
    /// and retried.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let handle = self.start().await?;
        tokio::select! {
            _ = shutdown => handle.stop(),
            _ = handle.stopped() => {}
        }
        handle.stopped().await;
        stopped_as_asked(&handle)
    }
}

/// `Ok` unless the server stopped by itself (its task failed): an exit nobody asked for
/// must not look like a graceful one.
fn stopped_as_asked(handle: &crate::server::launcher::ServerHandle) -> Result<()> {
    match handle.failure() {
        None => Ok(()),
        Some(why) => Err(crate::error::Error::Other(format!(
            "the server stopped by itself ({why}); this is a bug, please report it. Its unfinished jobs are recovered by the next server to start"
        ))),
    }
}
