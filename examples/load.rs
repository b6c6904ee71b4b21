//! A load test in the spirit of Sidekiq's `bin/sidekiqload`: enqueue N no-op jobs in bulk
//! into a fresh namespace, then drain them with a server at concurrency C and report rates.
//!
//! `cargo run --release --example load -- [--jobs 100000] [-c 25] [--middleware 3] [--redis-url URL]`
//!
//! `--middleware N` puts N pass-through server middleware around every job, to measure
//! what the chain costs. `--track` pushes every job tracked (status written at push, start
//! and end), `--results` makes the worker a `Task` that returns a value (tracked, its
//! result kept), and `--events` has the client and the server write the event stream.
//! `--workflow` pushes the jobs as one workflow (a root step, the rest after it).
//! `--groups N [--group-limit L]` spreads them over N groups of L at once each.
//! `--due-in S` schedules them all to become due in the same second, S seconds from now,
//! and times the drain from that second; `--priority P` gives them all priority P.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use psychiq::context::JobContext;
use psychiq::middleware::{Next, ServerMiddleware};
use psychiq::{
    Client, Job, JobResult, NoArgs, Outcome, RedisConfig, Registry, Server, ServerConfig, Worker,
};

/// Counts its runs; served as `Noop`, like the demo's worker.
struct Noop(Arc<AtomicUsize>);

impl Worker for Noop {
    type Args = NoArgs;
    async fn perform(&self, _: NoArgs) -> JobResult {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Returns a small value; served as `Noop` too, so the same pushed jobs run either way.
struct NoopTask(Arc<AtomicUsize>);

impl psychiq::Task for NoopTask {
    type Args = NoArgs;
    type Output = (u64, String);
    fn class_name() -> String {
        "Noop".into()
    }
    async fn run(&self, _: NoArgs) -> Result<(u64, String), psychiq::JobError> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Ok((n as u64, "ok".into()))
    }
}

/// Calls the rest of the chain and returns its outcome: the cost of a chain link alone.
struct PassThrough<const N: usize>;

impl<const N: usize> ServerMiddleware for PassThrough<N> {
    async fn call(&self, _: &JobContext, next: Next<'_>) -> Outcome {
        next.run().await
    }
}

#[derive(Parser)]
struct Args {
    /// Jobs to enqueue and drain
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Jobs run at once
    #[arg(short = 'c', long, default_value_t = 25)]
    concurrency: usize,
    /// Fetch mode: reliable (crash-safe) or basic (BRPOP)
    #[arg(long, value_enum, default_value_t = psychiq::cli::Fetch::Reliable)]
    fetch: psychiq::cli::Fetch,
    /// Redis URL
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Pass-through server middleware around every job (0 to 3)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    middleware: u8,
    /// Push every job tracked (its status kept)
    #[arg(long)]
    track: bool,
    /// Run a Task that returns a value, tracked (its result kept)
    #[arg(long)]
    results: bool,
    /// Write the event stream (client and server)
    #[arg(long)]
    events: bool,
    /// Push the jobs as one workflow: a root step and the rest after it
    #[arg(long)]
    workflow: bool,
    /// Spread the jobs over this many groups (Job::group), round robin
    #[arg(long)]
    groups: Option<usize>,
    /// With --groups: each group's limit
    #[arg(long, default_value_t = 1)]
    group_limit: u32,
    /// Push every job with its arguments sealed (AES-256-GCM), opened by the server
    #[arg(long)]
    encrypt: bool,
    /// Schedule every job to become due in this many seconds, all in the same second; the
    /// drain is then timed from that second (the server starts right after the push)
    #[arg(long)]
    due_in: Option<u64>,
    /// Give every job this priority (1 to 9; Job::priority)
    #[arg(long)]
    priority: Option<u8>,
    /// Leave the namespace's keys (to measure Redis without the cleanup; delete them after)
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> psychiq::Result<()> {
    let args = Args::parse();
    let redis = RedisConfig::from_url(args.redis_url.clone())?;
    let namespace = format!("psychiq-load-{}", std::process::id());
    let mut client = Client::connect(&redis, &namespace).await?;
    if args.events {
        client.emit_events(psychiq::job_events::DEFAULT_CAP);
    }
    // A fixed key: this measures the work, not key handling.
    let keyring =
        || psychiq::encryption::Keyring::parse("load:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    if args.encrypt {
        client.encrypt_with(keyring()?);
    }

    // One whole second, a moment after the push is expected to end.
    let due_at = args.due_in.map(|secs| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs() + secs)
    });
    let started = Instant::now();
    let jobs: Vec<Job> = (0..args.jobs)
        .map(|n| {
            let mut job = Job::new("Noop", NoArgs).expect("[] is an array");
            if let Some(groups) = args.groups {
                job = job
                    .group(format!("g{}", n % groups.max(1)))
                    .group_limit(args.group_limit);
            }
            if args.encrypt {
                job = job.encrypt();
            }
            if let Some(at) = due_at {
                job = job.at(at);
            }
            if let Some(priority) = args.priority {
                job = job.priority(priority);
            }
            if args.track || args.results {
                job.track()
            } else {
                job
            }
        })
        .collect();
    if args.workflow {
        let mut workflow = psychiq::workflow::Workflow::new("load");
        for (n, job) in jobs.into_iter().enumerate() {
            workflow = workflow.step(format!("s{n}"), job);
            if n > 0 {
                workflow = workflow.after(["s0"]);
            }
        }
        workflow.push(&client).await?;
    } else {
        client.push_bulk(jobs).await?;
    }
    let enqueue = started.elapsed();

    let done = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    if args.results {
        registry.register(NoopTask(Arc::clone(&done)));
    } else {
        registry.register(Noop(Arc::clone(&done)));
    }
    let mut config = ServerConfig::default()
        .redis(redis)
        .namespace(namespace.clone())
        .concurrency(args.concurrency)
        .fetch(args.fetch.into());
    if args.events {
        config = config.events(psychiq::job_events::DEFAULT_CAP);
    }
    if args.encrypt {
        config = config.encryption(keyring()?);
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let mut server = Server::new(config, registry);
    let chain = server.middleware();
    if args.middleware >= 1 {
        chain.add(PassThrough::<1>);
    }
    if args.middleware >= 2 {
        chain.add(PassThrough::<2>);
    }
    if args.middleware >= 3 {
        chain.add(PassThrough::<3>);
    }
    let server = tokio::spawn(server.run_until(async move {
        let _ = stop_rx.await;
    }));
    // Scheduled jobs: the drain starts when they become due, and the first job's start is
    // its latency.
    let mut first_after_due = None;
    if let Some(at) = due_at {
        let wait = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_else(|_| panic!("the push took longer than --due-in: give it more seconds"));
        tokio::time::sleep(wait).await;
        let started_at = Instant::now();
        while done.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        first_after_due = Some(started_at.elapsed());
    }
    let started = match due_at {
        Some(_) => Instant::now() - first_after_due.unwrap_or_default(),
        None => started,
    };
    while done.load(Ordering::Relaxed) < args.jobs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = started.elapsed();
    if let Some(first) = first_after_due {
        println!(
            "due in the same second: first job ran {:.1} ms after it was due",
            first.as_secs_f64() * 1e3
        );
    }
    let _ = stop_tx.send(());
    server.await.expect("server task")?;

    if !args.keep {
        let mut conn = client.redis_connection().expect("a Redis client");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{namespace}:*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> =
                redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }
    println!(
        "enqueue {} jobs (bulk): {:.2} s = {:.0} jobs/s",
        args.jobs,
        enqueue.as_secs_f64(),
        args.jobs as f64 / enqueue.as_secs_f64()
    );
    println!(
        "drain {} jobs at -c {} ({:?} fetch, {} middleware): {:.2} s = {:.0} jobs/s",
        args.jobs,
        args.concurrency,
        args.fetch,
        args.middleware,
        drain.as_secs_f64(),
        args.jobs as f64 / drain.as_secs_f64()
    );
    Ok(())
}
