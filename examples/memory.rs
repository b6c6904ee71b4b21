//! What Redis holds per job: pushes N jobs of each kind into a fresh namespace and reads
//! `INFO memory`'s `used_memory` before and after, against the size of the job's JSON as
//! stored.
//!
//! `cargo run --release --example memory -- [--jobs 100000] [--redis-url redis://127.0.0.1:6399]`
//!
//! Kinds: queued with no arguments, a 100-byte and a 1 KB argument; scheduled (1 h out);
//! a retry (run by a server and failed once); tracked (its status and a small result kept
//! after it ran, the queue empty). Use a Redis of your own: anyone else's writes in the
//! same seconds count as the jobs'.

use std::time::Duration;

use clap::Parser;
use psychiq::{
    Client, Job, JobError, JobResult, RedisConfig, Registry, Server, ServerConfig, Worker,
};

#[derive(Parser)]
struct Args {
    /// Jobs of each kind
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Redis URL (a Redis of your own)
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6399")]
    redis_url: String,
}

/// Fails every run: its jobs end in the retry set. Class name `Fails`.
struct Fails;

impl Worker for Fails {
    type Args = (String,);
    async fn perform(&self, _: (String,)) -> JobResult {
        Err(JobError::msg("fails to fill the retry set"))
    }
}

/// Returns a small value, tracked: status and result kept. Class name `Tracked`.
struct Tracked;

impl psychiq::Task for Tracked {
    type Args = (String,);
    type Output = u64;
    fn class_name() -> String {
        "Tracked".into()
    }
    async fn run(&self, (text,): (String,)) -> Result<u64, JobError> {
        Ok(text.len() as u64)
    }
}

/// What Redis held for one kind.
struct Measured {
    kind: &'static str,
    bytes_per_job: f64,
    payload: usize,
}

#[tokio::main]
async fn main() -> psychiq::Result<()> {
    let args = Args::parse();
    let redis = RedisConfig::from_url(args.redis_url.clone())?;
    let n = args.jobs;
    let text = |bytes: usize| "x".repeat(bytes);
    let mut rows = Vec::new();

    for (kind, bytes) in [
        ("queued, no arguments", None),
        ("queued, 100-byte argument", Some(100)),
        ("queued, 1 KB argument", Some(1024)),
    ] {
        rows.push(
            measure(&redis, kind, n, |client, ns| async move {
                let jobs = (0..n).map(|_| match bytes {
                    None => Job::new("Noop", ()).unwrap(),
                    Some(b) => Job::new("Noop", (text(b),)).unwrap(),
                });
                client.push_bulk(jobs.collect()).await?;
                sample(&client, &format!("{ns}:queue:default"), "LINDEX").await
            })
            .await?,
        );
    }
    rows.push(
        measure(
            &redis,
            "scheduled, 100-byte argument",
            n,
            |client, ns| async move {
                let jobs = (0..n).map(|_| {
                    Job::new("Noop", (text(100),))
                        .unwrap()
                        .delay(Duration::from_secs(3600))
                });
                client.push_bulk(jobs.collect()).await?;
                sample(&client, &format!("{ns}:schedule"), "ZRANGE").await
            },
        )
        .await?,
    );
    rows.push(
        measure(&redis, "retry, 100-byte argument", n, |client, ns| {
            let redis = redis.clone();
            async move {
                let jobs = (0..n).map(|_| Job::new("Fails", (text(100),)).unwrap());
                client.push_bulk(jobs.collect()).await?;
                let mut registry = Registry::new();
                registry.register(Fails);
                drain(&client, redis, &ns, n, registry, &format!("{ns}:retry")).await?;
                sample(&client, &format!("{ns}:retry"), "ZRANGE").await
            }
        })
        .await?,
    );
    rows.push(
        measure(
            &redis,
            "tracked, 100-byte argument, after it ran (status + result)",
            n,
            |client, ns| {
                let redis = redis.clone();
                async move {
                    let jobs = (0..n).map(|_| Job::new("Tracked", (text(100),)).unwrap().track());
                    client.push_bulk(jobs.collect()).await?;
                    let payload = sample(&client, &format!("{ns}:queue:default"), "LINDEX").await?;
                    let mut registry = Registry::new();
                    registry.register(Tracked);
                    drain(&client, redis, &ns, n, registry, "").await?;
                    Ok(payload)
                }
            },
        )
        .await?,
    );

    println!("| kind | Redis bytes per job | job JSON bytes | ratio |");
    println!("|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.0} | {} | {:.2}× |",
            row.kind,
            row.bytes_per_job,
            row.payload,
            row.bytes_per_job / row.payload as f64
        );
    }
    Ok(())
}

/// Runs `fill` in a fresh namespace and returns what Redis grew by per job; then deletes
/// the namespace's keys.
async fn measure<F, Fut>(
    redis: &RedisConfig,
    kind: &'static str,
    n: usize,
    fill: F,
) -> psychiq::Result<Measured>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: std::future::Future<Output = psychiq::Result<usize>>,
{
    let ns = format!("psychiq-memory-{}-{}", std::process::id(), kind.len());
    let client = Client::connect(redis, &ns).await?;
    let before = used_memory(&client).await;
    let payload = fill(client.clone(), ns.clone()).await?;
    let after = used_memory(&client).await;
    let mut conn = client.redis_connection().expect("a Redis client");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(10_000) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
    Ok(Measured {
        kind,
        bytes_per_job: (after as f64 - before as f64) / n as f64,
        payload,
    })
}

/// The stored length of one job in `key` (a list or a sorted set).
async fn sample(client: &Client, key: &str, command: &str) -> psychiq::Result<usize> {
    let mut conn = client.redis_connection().expect("a Redis client");
    let mut cmd = redis::cmd(command);
    cmd.arg(key).arg(0);
    if command == "ZRANGE" {
        cmd.arg(0);
    }
    let found: redis::RedisResult<Option<String>> = match command {
        "ZRANGE" => cmd
            .query_async::<Vec<String>>(&mut conn)
            .await
            .map(|v| v.into_iter().next()),
        _ => cmd.query_async(&mut conn).await,
    };
    Ok(found.ok().flatten().map(|s| s.len()).unwrap_or(0))
}

/// Runs a server on the namespace until it has run `n` jobs (and, if `until_full` is a
/// key, that sorted set holds all `n`).
async fn drain(
    client: &Client,
    redis: RedisConfig,
    ns: &str,
    n: usize,
    registry: Registry,
    until_full: &str,
) -> psychiq::Result<()> {
    let config = ServerConfig::default()
        .redis(redis)
        .namespace(ns.to_string())
        .concurrency(25);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(config, registry).run_until(async move {
        let _ = stopped.await;
    }));
    let mut conn = client.redis_connection().expect("a Redis client");
    let processed = format!("{ns}:stat:processed");
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ran: Option<usize> = redis::cmd("GET")
            .arg(&processed)
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        let held: usize = if until_full.is_empty() {
            n
        } else {
            redis::cmd("ZCARD")
                .arg(until_full)
                .query_async(&mut conn)
                .await
                .unwrap_or(0)
        };
        if ran.unwrap_or(0) >= n && held >= n {
            break;
        }
    }
    let _ = stop.send(());
    server.await.expect("server task")?;
    Ok(())
}

/// `INFO memory`'s `used_memory`.
async fn used_memory(client: &Client) -> u64 {
    let mut conn = client.redis_connection().expect("a Redis client");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
