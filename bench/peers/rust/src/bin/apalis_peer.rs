//! apalis 1.0 with apalis-redis 1.0 as a peer in Psychiq's benchmark panel.
//!
//! `push N`: enqueues N no-op tasks on queue "default" with the storage's own bulk API
//! (`TaskSink::push_bulk`, which apalis-redis sends as one `batch_push.lua` call per batch),
//! in batches of PUSH_BATCH with up to PUSH_IN_FLIGHT batches in flight.
//!
//! `drain N C`: runs an apalis `Worker` on a `RedisStorage` for "default" with the crate's
//! default `Config`, `.enable_tracing()`, `.concurrency(C)` and `.parallelize(tokio::spawn)`
//! (the README's worker setup), a no-op handler that counts completions; prints the result
//! line at the Nth, then stops the worker gracefully (it flushes its pending acks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use futures::{StreamExt, TryStreamExt};
use psychiq_bench_peers::{self as peers, Completions, Mode};
use serde::{Deserialize, Serialize};

const NAME: &str = "apalis-redis";
const VERSION: &str = env!("PEER_APALIS_REDIS_VERSION");
/// Tasks per `push_bulk` call (one Lua script run each).
const PUSH_BATCH: usize = 1000;
/// `push_bulk` calls in flight at once on the (multiplexed) connection.
const PUSH_IN_FLIGHT: usize = 4;

/// The no-op task; JSON `null` on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop;

async fn noop(
    _task: Noop,
    worker: WorkerContext,
    completions: Data<Arc<Completions>>,
) -> Result<(), BoxDynError> {
    if completions.complete() {
        worker.stop()?;
    }
    Ok(())
}

async fn storage(url: &str) -> RedisStorage<Noop> {
    let conn = apalis_redis::connect(url)
        .await
        .unwrap_or_else(|e| peers::fail(format!("cannot connect to {url}: {e}")));
    // Config::default() is the crate's own (batch_size 10, 30 s heartbeats, lock_tasks,
    // persist_results, emit_events); only the queue name is ours (`RedisStorage::new` would
    // otherwise name the queue after the Rust type).
    RedisStorage::new(conn).with_config(Config::default().queue(peers::QUEUE))
}

async fn push(url: &str, jobs: u64) {
    let storage = storage(url).await;
    let batches: Vec<usize> = (0..jobs as usize)
        .step_by(PUSH_BATCH)
        .map(|start| PUSH_BATCH.min(jobs as usize - start))
        .collect();
    let started = Instant::now();
    let result = futures::stream::iter(batches)
        .map(|size| {
            let mut storage = storage.clone();
            async move { storage.push_bulk(vec![Noop; size]).await }
        })
        .buffer_unordered(PUSH_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await;
    if let Err(e) = result {
        peers::fail(format!("{NAME} push failed: {e}"));
    }
    peers::print_push(NAME, VERSION, jobs, started.elapsed());
}

async fn drain(url: &str, jobs: u64, concurrency: usize) {
    let storage = storage(url).await;
    let completions = Completions::new(jobs);
    // A worker name may not be reused while its registration is fresh (the backend refuses a
    // name seen within heartbeat_interval x missed_heartbeats), so each process has its own.
    let name = format!("apalis-peer-{}-{}", std::process::id(), unix_millis());
    let worker = WorkerBuilder::new(name)
        .backend(storage)
        .enable_tracing()
        .concurrency(concurrency)
        .parallelize(tokio::spawn)
        .data(completions.clone())
        .build(noop);

    completions.start_clock();
    let mut run = tokio::spawn(worker.run());
    let took = tokio::select! {
        took = completions.wait(NAME) => took,
        ended = &mut run => {
            let why = match ended {
                Ok(Ok(())) => "no error".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            let hint = if why.contains("too many results to unpack") {
                // fetch_next.lua promotes every due task of the scheduled set with one
                // `rpush ... unpack(ids)`, and Redis's Lua unpacks at most 7999 values; every
                // push lands in that set (batch_push.lua schedules at max(run_at, now)).
                " (apalis-redis 1.0.0 cannot start on a backlog of 8000 or more due tasks: \
                 fetch_next.lua unpacks them all into one RPUSH; drain fewer than 8000)"
            } else {
                ""
            };
            peers::fail(format!(
                "{NAME} worker stopped after {} of {jobs} jobs: {why}{hint}",
                completions.done()
            ))
        }
    };
    peers::print_drain(NAME, VERSION, jobs, concurrency, took);

    // The handler called stop() at the Nth: let the worker finish its in-flight tasks and
    // write their acks, bounded.
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("warning: {NAME} worker shutdown: {e}"),
        Ok(Err(e)) => eprintln!("warning: {NAME} worker task: {e}"),
        Err(_) => eprintln!("warning: {NAME} worker did not stop within 10 s"),
    }
    std::process::exit(0);
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let mode = peers::parse_args();
    peers::init_logging();
    let url = peers::redis_url();
    match mode {
        Mode::Push { jobs } => push(&url, jobs).await,
        Mode::Drain { jobs, concurrency } => drain(&url, jobs, concurrency).await,
    }
}
