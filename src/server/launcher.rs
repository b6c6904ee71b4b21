//! The launcher: starts a server's parts (heartbeat, fetch and job slots, plugins), fires
//! the lifecycle events, and carries out quiet, stop and the hard stop; [`ServerHandle`]
//! lets a host app do the same from code.
//!
//! ```no_run
//! # async fn demo() -> psychiq::Result<()> {
//! let handle = psychiq::Server::new(Default::default(), psychiq::Registry::new()).start().await?;
//! // ... the app runs; then, say on its own shutdown:
//! handle.stop();            // as TERM: no new jobs, running ones get the shutdown timeout
//! handle.stopped().await;   // counters flushed, process deregistered
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::plugins::{self, Plugin};
use crate::server::Server;
use crate::server::acks::{self, Acks};
use crate::server::backlog::DEFAULT_PREFETCH_PER_SLOT;
use crate::server::capsule::{self, Capsule, DEFAULT_CAPSULE};
use crate::server::control::Control;
use crate::server::events::Event;
use crate::server::execute::Executor;
use crate::server::fetch::{FETCH_TIMEOUT, Fetcher, QueueSpec};
use crate::server::heartbeat::Heartbeat;
use crate::server::lifecycle::{self, Lifecycle};
use crate::server::manager::{self, Manager};
use crate::server::orphans::Recovery;
use crate::server::poller::Poller;
use crate::server::processor::Processor;
use crate::server::running::{Running, RunningJob};
use crate::server::stats::Stats;
use crate::store::config::COMMAND_TIMEOUT;

/// A running server, for the app that started it: quiet it, stop it, wait for it, and see
/// what it runs. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    control: Control,
    running: Running,
    identity: String,
    done: watch::Receiver<bool>,
    /// Why the server stopped by itself, if it did (its task panicked).
    failure: Arc<std::sync::Mutex<Option<String>>>,
}

/// A job a server is running now.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunningJobInfo {
    /// The queue it came from.
    pub queue: String,
    /// The payload as fetched (bytes that are not UTF-8 shown escaped).
    pub payload: String,
    /// When it started, in epoch seconds.
    pub run_at: u64,
}

impl ServerHandle {
    /// The process identity in Redis (`host:pid:hex`), as dashboards show it.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Stops taking new jobs (as TSTP); running jobs go on, the heartbeat keeps beating.
    pub fn quiet(&self) {
        self.control.quiet();
    }

    /// Stops gracefully (as TERM): no new jobs, running jobs get the shutdown timeout, the
    /// rest are pushed back. Returns at once; [`ServerHandle::stopped`] waits for the end.
    pub fn stop(&self) {
        self.control.stop();
    }

    /// Stops without waiting out the shutdown timeout: running jobs are cancelled and pushed
    /// back to the front of their queues at once (what a second INT or TERM does).
    pub fn stop_now(&self) {
        self.control.stop_now();
    }

    /// Whether the server is quiet (or stopping).
    pub fn is_quiet(&self) -> bool {
        *self.control.quiet.borrow()
    }

    /// Completes once the server has stopped: jobs finished or pushed back, counters
    /// flushed, the process deregistered.
    pub async fn stopped(&self) {
        let _ = self.done.clone().wait_for(|done| *done).await;
    }

    /// Once stopped: why the server stopped by itself, if nobody asked it to (a bug: its
    /// task panicked). Its unfinished jobs are recovered by the next server.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("failure lock").clone()
    }

    /// The jobs running now.
    pub fn running(&self) -> Vec<RunningJobInfo> {
        let running = self.running.lock().expect("running jobs lock");
        let mut jobs: Vec<RunningJobInfo> = running
            .values()
            .map(|job| RunningJobInfo {
                queue: job.work.queue.to_string(),
                payload: crate::job::text::lossless(&job.work.raw).into_owned(),
                run_at: job.run_at,
            })
            .collect();
        jobs.sort_by_key(|job| job.run_at);
        jobs
    }
}

/// What the cluster layout cannot do yet (each writes a queue's keys and shared ones in one
/// atomic step), refused before anything starts.
fn refuse_outside_the_cluster_layout(
    config: &crate::server::ServerConfig,
    registry: &crate::server::registry::Registry,
) -> Result<()> {
    let refuse = |what: &str| {
        Err(Error::Config(format!(
            "{what} not available in the cluster layout yet; run it on one Redis (Sidekiq's layout, or Sentinel for failover)"
        )))
    };
    if config.fetch == crate::server::fetch::FetchMode::Basic {
        return refuse("basic fetch (BRPOP over several queues' slots) is");
    }
    if registry.declares_unique() {
        return refuse("unique jobs are");
    }
    #[cfg(feature = "periodic")]
    if !registry.periodic_jobs().is_empty() {
        return refuse("periodic jobs are");
    }
    Ok(())
}

/// Connects, registers the process and starts everything; returns once the server runs.
pub(crate) async fn launch(server: Server, listen_to_signals: bool) -> Result<ServerHandle> {
    // A library must not install a global logger, but a server whose failures nobody can
    // see is a trap: say once, on stderr, how to see them.
    if !tracing::dispatcher::has_been_set() {
        eprintln!(
            "psychiq: no tracing subscriber is installed, so the server's log lines (failing jobs \
             too) are not shown; add tracing-subscriber and call \
             `tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).init()` at the start of main"
        );
    }
    let Server {
        config,
        mut registry,
        mut middleware,
        hooks,
        plugins,
    } = server;
    #[cfg(feature = "periodic")]
    let plugins = {
        let mut plugins = plugins;
        if !registry.periodic_jobs().is_empty() {
            plugins.push(Arc::new(crate::periodic::PeriodicPlugin::new(
                registry.periodic_jobs().to_vec(),
            )) as Arc<dyn Plugin>);
        }
        plugins
    };
    let keys = config.redis.keys(&config.namespace);
    if keys.is_cluster() {
        refuse_outside_the_cluster_layout(&config, &registry)?;
    }
    // Batches put their jobs and their counts in one transaction: not across slots.
    let batches = config.batches && !keys.is_cluster();
    let conn = config.redis.connect().await?;
    // The built-in middleware go in front of the app's own, from the outside in:
    // BatchCounter (it counts the outcome the whole chain arrived at), UniqueUnlock, Expiry
    // (an expired job meets no other work) and RateLimit (an expired job takes no room).
    // Each is prepended, so the innermost comes first here; one the app added stays put.
    let rate_limits = registry.rate_limits();
    if !rate_limits.is_empty() && !middleware.contains::<crate::limits::RateLimit>() {
        middleware.prepend(crate::limits::RateLimit::new(
            crate::limits::Limits::new(conn.clone(), keys.clone()),
            rate_limits,
        ));
    }
    // A job's own fields are obeyed whatever this server was told: a job without the field
    // passes each of these with a substring search of its payload.
    if !middleware.contains::<crate::extensions::Expiry>() {
        middleware.prepend(crate::extensions::Expiry);
    }
    if !middleware.contains::<crate::extensions::UniqueUnlock>() {
        middleware.prepend(crate::extensions::UniqueUnlock::new(
            conn.clone(),
            keys.clone(),
        ));
    }
    if batches && !middleware.contains::<crate::batch::BatchCounter>() {
        // Deaths are counted by the processor, in the transaction that writes the dead job.
        middleware.prepend(crate::batch::BatchCounter::new(conn.clone(), keys.clone()));
    }
    // A grouped job's end frees a slot without a push: the fetch is told directly.
    let group_freed = Arc::new(tokio::sync::Notify::new());
    if !keys.is_cluster() && !middleware.contains::<crate::extensions::GroupSlots>() {
        // A grouped job's slot is given up however its run ends, after the chain inside.
        middleware.prepend(crate::extensions::GroupSlots::new(
            conn.clone(),
            keys.clone(),
            Arc::clone(&group_freed),
        ));
    }
    if !keys.is_cluster() && !middleware.contains::<crate::workflow::WorkflowSteps>() {
        // Outermost: a step's success is the outcome the whole chain arrived at; its death
        // is counted by the farewell.
        middleware.prepend(crate::workflow::WorkflowSteps::new(
            conn.clone(),
            keys.clone(),
        ));
        // A batch step's batch ends its step through a job of this class.
        registry.register_as(
            crate::workflow::BATCH_STEP_CLASS,
            crate::workflow::BatchStepEnd,
        );
    }
    let hooks = Arc::new(hooks);
    // The server's own queues and concurrency are the capsule `default`; each capsule
    // fetches on a connection of its own.
    let mut capsules = vec![Capsule {
        name: DEFAULT_CAPSULE.to_string(),
        queues: if config.queues.is_empty() {
            vec![QueueSpec::parse("default")?]
        } else {
            config.queues.clone()
        },
        concurrency: config.concurrency,
        prefetch: config.prefetch,
    }];
    capsules.extend(config.capsules.iter().cloned());
    capsules.extend(registry.capsules().iter().cloned());
    capsule::check(&capsules)?;
    let mut fetch_conns = Vec::with_capacity(capsules.len());
    for _ in &capsules {
        fetch_conns.push(
            config
                .redis
                .connect_with_timeout(FETCH_TIMEOUT + COMMAND_TIMEOUT)
                .await?,
        );
    }
    let identity = Heartbeat::identity();
    for capsule in &capsules {
        let names: Vec<&str> = capsule.queues.iter().map(|q| q.name.as_str()).collect();
        tracing::info!(
            identity,
            capsule = capsule.name,
            "Starting processing (concurrency={}) with Redis ({}), queues {:?}, namespace {:?}",
            capsule.concurrency,
            config.redis.display_address(),
            names,
            keys.namespace()
        );
    }

    let control = Control::new();
    let iterable = registry.iterable_classes();
    if !iterable.is_empty() {
        // Innermost: iterable jobs see the server's Redis and its stop signal.
        middleware.add(crate::iteration::IterationSupport {
            env: Arc::new(crate::iteration::Env {
                cursors: crate::iteration::Cursors::Redis {
                    conn: conn.clone(),
                    keys: keys.clone(),
                },
                stop: control.stop.subscribe(),
                steps_per_run: None,
            }),
            classes: iterable,
        });
    }
    let running: Running = Arc::default();
    if listen_to_signals {
        tokio::spawn(crate::server::signals::quiet_and_dump(
            control.clone(),
            Arc::clone(&running),
        ));
    }

    let stats = Arc::new(Stats::default());
    let (acks, ack_rx, pending_acks) = Acks::channel();
    // Waiting for replicas blocks a connection until they answer: the acker gets its own.
    let ack_conn = if config.redis.replica_wait().is_some() {
        config.redis.connect().await?
    } else {
        conn.clone()
    };
    let acker = tokio::spawn(acks::acknowledge(
        ack_rx,
        ack_conn,
        Arc::clone(&pending_acks),
        config.redis.clone(),
    ));
    let keys_arc = Arc::new(keys.clone());
    let (notes, notes_rx) = tokio::sync::mpsc::unbounded_channel();
    let lifecycle = Arc::new(Lifecycle {
        keys: Arc::clone(&keys_arc),
        identity: identity.clone(),
        track_all: config.track_all.map(|d| d.as_secs().max(1)),
        events: config.events,
        notes,
        book: Arc::default(),
        grace: config.cancel_grace,
    });
    let note_writer = tokio::spawn(lifecycle::write_notes(
        notes_rx,
        conn.clone(),
        Arc::clone(&keys_arc),
        config.events,
    ));
    // Before the first fetch: a cancelled job this process would take ends unrun.
    let since = lifecycle::load_cancels(&conn, &keys_arc, &lifecycle.book)
        .await
        .map_err(|e| config.redis.redis_error(e))?;
    let cancel_watch = tokio::spawn(lifecycle::watch_cancels(
        conn.clone(),
        Arc::clone(&keys_arc),
        Arc::clone(&lifecycle.book),
        Arc::clone(&running),
        control.stop.subscribe(),
        since,
    ));
    let processor = Arc::new(Processor {
        executor: Executor {
            registry: Arc::new(registry),
            job_timeout: config.job_timeout,
            middleware,
            stats: Arc::clone(&stats),
            lifecycle: Some(lifecycle),
            keyring: config.keyring.clone(),
        },
        keys: keys_arc,
        conn: conn.clone(),
        stats: Arc::clone(&stats),
        acks,
        hooks: Arc::clone(&hooks),
        batches,
    });
    let (beat_done, beat_done_rx) = watch::channel(false);
    let mut heartbeat = Heartbeat {
        conn: conn.clone(),
        keys: keys.clone(),
        info: Heartbeat::info(&identity, &config.tag, &capsules),
        identity: identity.clone(),
        concurrency: capsules.iter().map(|c| c.concurrency).sum(),
        running: Arc::clone(&running),
        stats: Arc::clone(&stats),
        control: control.clone(),
        had_work: false,
        hooks: Arc::clone(&hooks),
    };
    // Registered (and listed as an owner of in-progress hashes) before the first fetch.
    heartbeat
        .beat()
        .await
        .map_err(|e| config.redis.redis_error(e))?;
    let heartbeat = tokio::spawn(heartbeat.run(beat_done_rx));

    // Registered; the start-up hooks run before the first fetch and before start() returns.
    hooks.fire(Event::Startup).await;
    let handle_control = control.clone();
    let handle_running = Arc::clone(&running);
    let handle_identity = identity.clone();
    let work = async move {
        let pools: Vec<(Arc<Fetcher>, Manager<'_>)> = capsules
            .iter()
            .zip(fetch_conns)
            .map(|(capsule, fetch_conn)| {
                let fetcher = Arc::new(
                    Fetcher::new(
                        fetch_conn,
                        &keys,
                        &capsule.queues,
                        config.fetch,
                        &identity,
                        control.quiet.subscribe(),
                    )
                    .waking_on(Arc::clone(&group_freed)),
                );
                let manager = Manager {
                    processor: &processor,
                    concurrency: capsule.concurrency,
                    prefetch: capsule
                        .prefetch
                        .unwrap_or(DEFAULT_PREFETCH_PER_SLOT * capsule.concurrency),
                    // One queue only: a fetch takes its batch queue by queue, so with
                    // weights, batches of hundreds would share the queues out in lumps.
                    prefetch_covers_round_trips: capsule.prefetch.is_none()
                        && capsule.queues.len() == 1,
                    running: &running,
                    keys: &keys,
                    conn: conn.clone(),
                    pending_acks: &pending_acks,
                };
                (fetcher, manager)
            })
            .collect();
        // The built-in plugins first: the poller and the recovery of dead processes' jobs.
        let mut all: Vec<Arc<dyn Plugin>> = vec![
            Arc::new(Poller {
                interval: config.poll_interval,
            }),
            Arc::new(Recovery),
        ];
        all.extend(plugins);
        let identity: Arc<str> = Arc::from(identity.as_str());
        let mut supervised = JoinSet::new();
        for plugin in all {
            let stop = if plugin.runs_while_quiet() {
                control.stop.subscribe()
            } else {
                control.quiet.subscribe()
            };
            supervised.spawn(plugins::supervise(
                plugin,
                conn.clone(),
                keys.clone(),
                Arc::clone(&identity),
                stop,
            ));
        }
        // Every capsule fetches for its own workers until quiet.
        let mut workers: Vec<JoinSet<()>> = pools.iter().map(|_| JoinSet::new()).collect();
        futures_util::future::join_all(pools.iter().zip(workers.iter_mut()).map(
            |((fetcher, manager), workers)| {
                manager.fetch_until_quiet(fetcher, workers, control.quiet.subscribe())
            },
        ))
        .await;
        hooks.fire(Event::Quiet).await;
        // Quiet: keep running jobs and beating until told to stop.
        let _ = control.stop.subscribe().wait_for(|stop| *stop).await;
        hooks.fire(Event::Shutdown).await;

        let busy = running.lock().expect("running jobs lock").len();
        tracing::info!(
            running = busy,
            "Shutting down: waiting up to {:.0} s for running jobs, then pushing back what is unfinished (a second INT or TERM does it at once)",
            config.shutdown_timeout.as_secs_f64()
        );
        let mut now = control.now.subscribe();
        let finished = tokio::select! {
            _ = async {
                for set in &mut workers {
                    while set.join_next().await.is_some() {}
                }
            } => true,
            _ = tokio::time::sleep(config.shutdown_timeout) => false,
            _ = now.wait_for(|now| *now) => {
                tracing::info!("Stopping now: running jobs go back to their queues");
                false
            }
        };
        if !finished {
            // Stop them first, then push back exactly those still unfinished.
            for set in &mut workers {
                set.abort_all();
            }
            for set in &mut workers {
                while set.join_next().await.is_some() {}
            }
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
        // The last progress and events (reports: not waited for long).
        let _ = tokio::time::timeout(Duration::from_secs(2), note_writer).await;
        cancel_watch.abort();
        // Plugins were told to stop; one that does not is left behind after 5 s.
        let plugins_done = tokio::time::timeout(Duration::from_secs(5), async {
            while supervised.join_next().await.is_some() {}
        })
        .await;
        if plugins_done.is_err() {
            tracing::warn!("a plugin did not stop within 5 s; it was cancelled");
            supervised.abort_all();
        }
        // The heartbeat flushes the last counters and deregisters the process.
        let _ = beat_done.send(true);
        let _ = heartbeat.await;
        hooks.fire(Event::Stopped).await;
        tracing::info!("Exiting");
    };
    let (done_tx, done_rx) = watch::channel(false);
    let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let task = tokio::spawn(work);
    let failed = Arc::clone(&failure);
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "the server's task failed");
            *failed.lock().expect("failure lock") = Some(e.to_string());
        }
        let _ = done_tx.send(true);
    });
    Ok(ServerHandle {
        control: handle_control,
        running: handle_running,
        identity: handle_identity,
        done: done_rx,
        failure,
    })
}
