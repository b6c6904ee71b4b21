//! The server: fetches jobs and runs them, N at a time, until told to stop.
//!
//! One fetch loop takes a job whenever one of the N slots is free and spawns it as a task;
//! a poller moves due scheduled and retry jobs; the counters are flushed every few seconds
//! and at shutdown. Stopping stops fetching, lets running jobs finish within the shutdown
//! timeout, and pushes the ones still running back to their queues.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::connection::{COMMAND_TIMEOUT, RedisConfig};
use crate::error::Result;
use crate::events::{Event, FailedJob, Hooks};
use crate::fetch::{FETCH_TIMEOUT, FetchMode, Fetcher, QueueSpec};
use crate::heartbeat::{Control, Heartbeat, Running, RunningJob};
use crate::keys::{DEFAULT_NAMESPACE, Keys};
use crate::manager::{self, Acks, Manager};
use crate::middleware::ServerChain;
use crate::processor::Processor;
use crate::scheduler;
use crate::stats::Stats;
use crate::worker::Registry;

/// A server's settings, with the original's defaults.
///
/// ```
/// use psychiq::ServerConfig;
/// let config = ServerConfig::default().concurrency(10).queue("critical", 3).queue("default", 1);
/// assert_eq!(config.concurrency, 10);
/// assert_eq!(ServerConfig::default().namespace, "psychiq");
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where Redis is.
    pub redis: RedisConfig,
    /// Key namespace (`"psychiq"`; `""` for Sidekiq's bare keys).
    pub namespace: String,
    /// How many jobs run at once (25).
    pub concurrency: usize,
    /// Queues to serve; `default` when empty.
    pub queues: Vec<QueueSpec>,
    /// How long running jobs may finish after a stop before they are pushed back (25 s).
    pub shutdown_timeout: Duration,
    /// Mean time between polls of the schedule and retry sets (2 s).
    pub poll_interval: Duration,
    /// A tag shown with the process in dashboards (e.g. the app's name).
    pub tag: String,
    /// How jobs are fetched: crash-safe by default.
    pub fetch: FetchMode,
    /// Cancel a job that runs longer than this, unless its worker sets its own timeout
    /// (off by default).
    pub job_timeout: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            redis: RedisConfig::default(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            concurrency: 25,
            queues: Vec::new(),
            shutdown_timeout: Duration::from_secs(25),
            poll_interval: Duration::from_secs(2),
            tag: String::new(),
            fetch: FetchMode::Reliable,
            job_timeout: None,
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
    /// Adds a queue with a weight (0 = strict order).
    pub fn queue(mut self, name: impl Into<String>, weight: u32) -> Self {
        self.queues.push(QueueSpec {
            name: name.into(),
            weight,
        });
        self
    }
    /// Sets the shutdown timeout.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
    /// Sets the scheduler's mean poll interval.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
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
    config: ServerConfig,
    registry: Registry,
    middleware: ServerChain,
    hooks: Hooks,
}

impl Server {
    /// A server for `registry`'s workers.
    pub fn new(config: ServerConfig, registry: Registry) -> Server {
        Server {
            config,
            registry,
            middleware: ServerChain::default(),
            hooks: Hooks::default(),
        }
    }

    /// The server middleware chain, to add, insert and remove middleware (see
    /// [`crate::middleware`]). Empty by default.
    pub fn middleware(&mut self) -> &mut ServerChain {
        &mut self.middleware
    }

    /// Runs `hook` at every `event` (see [`crate::events`]), after hooks added before it.
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

    /// Runs `hook` when a job goes to the dead set (Sidekiq's `death_handlers`).
    pub fn on_death<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: Fn(Arc<FailedJob>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.on_death(hook);
        self
    }

    /// Runs until SIGINT or SIGTERM (or a remote `TERM`). SIGTSTP quiets the server and
    /// SIGTTIN logs the running jobs.
    pub async fn run(self) -> Result<()> {
        self.start(crate::signals::terminate(), true).await
    }

    /// Runs until `shutdown` completes (or a remote `TERM`), then stops gracefully.
    ///
    /// Fails only at start-up, when Redis cannot be reached; later Redis errors are logged
    /// and retried.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        self.start(shutdown, false).await
    }

    async fn start(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        listen_to_signals: bool,
    ) -> Result<()> {
        let config = self.config;
        let hooks = Arc::new(self.hooks);
        let keys = Keys::new(&config.namespace);
        let conn = config.redis.connect().await?;
        let fetch_conn = config
            .redis
            .connect_with_timeout(FETCH_TIMEOUT + COMMAND_TIMEOUT)
            .await?;
        let queues = if config.queues.is_empty() {
            vec![QueueSpec::parse("default")?]
        } else {
            config.queues.clone()
        };
        let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
        let identity = Heartbeat::identity();
        tracing::info!(
            identity,
            "Starting processing (concurrency={}) with Redis ({}), queues {:?}, namespace {:?}",
            config.concurrency,
            config.redis.display_address(),
            names,
            keys.namespace()
        );

        let control = Control::new();
        let on_shutdown = control.clone();
        tokio::spawn(async move {
            shutdown.await;
            on_shutdown.stop();
        });
        let running: Running = Arc::default();
        if listen_to_signals {
            tokio::spawn(crate::signals::quiet_and_dump(
                control.clone(),
                Arc::clone(&running),
            ));
        }

        let stats = Arc::new(Stats::default());
        let (acks, ack_rx, pending_acks) = Acks::channel();
        let acker = tokio::spawn(manager::acknowledge(
            ack_rx,
            conn.clone(),
            Arc::clone(&pending_acks),
        ));
        let processor = Arc::new(Processor {
            registry: Arc::new(self.registry),
            keys: Arc::new(keys.clone()),
            conn: conn.clone(),
            stats: Arc::clone(&stats),
            acks,
            job_timeout: config.job_timeout,
            middleware: self.middleware,
            hooks: Arc::clone(&hooks),
        });
        let poller = tokio::spawn(scheduler::run(
            conn.clone(),
            keys.clone(),
            config.poll_interval,
            control.quiet.subscribe(),
        ));
        let weights: Vec<(String, u32)> =
            queues.iter().map(|q| (q.name.clone(), q.weight)).collect();
        let (beat_done, beat_done_rx) = watch::channel(false);
        let mut heartbeat = Heartbeat {
            conn: conn.clone(),
            keys: keys.clone(),
            info: Heartbeat::info(&identity, &config.tag, config.concurrency, &weights),
            identity: identity.clone(),
            concurrency: config.concurrency,
            running: Arc::clone(&running),
            stats: Arc::clone(&stats),
            control: control.clone(),
            had_work: false,
            hooks: Arc::clone(&hooks),
        };
        // Registered (and listed as an owner of in-progress lists) before the first fetch.
        heartbeat
            .beat()
            .await
            .map_err(|e| config.redis.redis_error(e))?;
        let heartbeat = tokio::spawn(heartbeat.run(beat_done_rx));

        let mut tasks = JoinSet::new();
        let fetcher = Arc::new(Fetcher::new(
            fetch_conn,
            &keys,
            &queues,
            config.fetch,
            &identity,
        ));
        let manager = Manager {
            processor: &processor,
            concurrency: config.concurrency,
            running: &running,
            keys: &keys,
            conn: conn.clone(),
            pending_acks: &pending_acks,
        };
        hooks.fire(Event::Startup).await;
        manager
            .fetch_until_quiet(&fetcher, &mut tasks, control.quiet.subscribe())
            .await;
        hooks.fire(Event::Quiet).await;
        // Quiet: keep running jobs and beating until told to stop.
        let _ = control.stop.subscribe().wait_for(|stop| *stop).await;
        hooks.fire(Event::Shutdown).await;

        tracing::info!(
            running = tasks.len(),
            "Shutting down: waiting for running jobs"
        );
        let finished = tokio::time::timeout(config.shutdown_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !finished {
            // Stop them first, then push back exactly those still unfinished.
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let unfinished: Vec<RunningJob> = running
                .lock()
                .expect("running jobs lock")
                .values()
                .cloned()
                .collect();
            manager::requeue(conn.clone(), &keys, &unfinished).await;
        }
        // The last acknowledgements; if Redis is gone they stay listed and are recovered.
        drop(processor);
        if tokio::time::timeout(Duration::from_secs(5), acker)
            .await
            .is_err()
        {
            tracing::warn!(
                "could not acknowledge every finished job; they will be recovered and may run again"
            );
        }
        let _ = poller.await;
        // The heartbeat flushes the last counters and deregisters the process.
        let _ = beat_done.send(true);
        let _ = heartbeat.await;
        hooks.fire(Event::Stopped).await;
        tracing::info!("Exiting");
        Ok(())
    }
}
