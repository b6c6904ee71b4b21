//! A load test in the spirit of Sidekiq's `bin/sidekiqload`: enqueue N no-op jobs in bulk
//! into a fresh namespace, then drain them with a server at concurrency C and report rates.
//!
//! `cargo run --release --example load -- [--jobs 100000] [-c 25] [--middleware 3] [--redis-url URL]`
//!
//! `--middleware N` puts N pass-through server middleware around every job, to measure
//! what the chain costs.

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
}

#[tokio::main]
async fn main() -> psychiq::Result<()> {
    let args = Args::parse();
    let redis = RedisConfig::from_url(args.redis_url.clone())?;
    let namespace = format!("psychiq-load-{}", std::process::id());
    let client = Client::connect(&redis, &namespace).await?;

    let started = Instant::now();
    let jobs: Vec<Job> = (0..args.jobs)
        .map(|_| Job::new("Noop", NoArgs).expect("[] is an array"))
        .collect();
    client.push_bulk(jobs).await?;
    let enqueue = started.elapsed();

    let done = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    registry.register(Noop(Arc::clone(&done)));
    let config = ServerConfig::default()
        .redis(redis)
        .namespace(namespace.clone())
        .concurrency(args.concurrency)
        .fetch(args.fetch.into());
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
    while done.load(Ordering::Relaxed) < args.jobs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = started.elapsed();
    let _ = stop_tx.send(());
    server.await.expect("server task")?;

    let mut conn = client.redis_connection().expect("a Redis client");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
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
