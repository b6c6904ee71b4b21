//! rusty-sidekiq (crate `rusty-sidekiq`, lib `sidekiq`) as a peer in Psychiq's benchmark panel.
//!
//! `push N`: enqueues N no-op jobs on queue "default" with the crate's own client. The crate
//! has no bulk enqueue (0.15 offers `perform_async`/`perform_in` per job, each an SADD
//! `queues` and an LPUSH), so the jobs go out one by one from PUSH_TASKS concurrent tasks
//! sharing a bb8 pool of as many connections.
//!
//! `drain N C`: runs the crate's `Processor` on "default" with `num_workers = C` and a no-op
//! worker that counts completions; prints the result line at the Nth and stops gracefully.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use psychiq_bench_peers::{self as peers, Completions, Mode};
use sidekiq::{Processor, ProcessorConfig, RedisConnectionManager, RedisPool, Worker};

const NAME: &str = "rusty-sidekiq";
const VERSION: &str = env!("PEER_RUSTY_SIDEKIQ_VERSION");
/// Concurrent enqueuers (and pool connections) for `push`.
const PUSH_TASKS: usize = 32;

/// The no-op job. Its class name on the wire is `NoopJob`.
struct NoopJob {
    completions: Arc<Completions>,
}

#[async_trait]
impl Worker<()> for NoopJob {
    fn opts() -> sidekiq::WorkerOpts<(), Self> {
        sidekiq::WorkerOpts::new().queue(peers::QUEUE)
    }

    async fn perform(&self, _args: ()) -> sidekiq::Result<()> {
        self.completions.complete();
        Ok(())
    }
}

async fn pool(url: &str, size: u32) -> RedisPool {
    let manager = RedisConnectionManager::new(url)
        .unwrap_or_else(|e| peers::fail(format!("bad REDIS_URL {url}: {e}")));
    // One direct connection first: its error says why (bb8 would only say "timed out").
    if let Err(e) = bb8::ManageConnection::connect(&manager).await {
        peers::fail(format!("cannot connect to {url}: {e}"));
    }
    let pool = bb8::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(5))
        .build(manager)
        .await
        .unwrap_or_else(|e| peers::fail(format!("cannot connect to {url}: {e}")));
    pool
}

async fn push(url: &str, jobs: u64) {
    let tasks = PUSH_TASKS.min(jobs as usize);
    let redis = pool(url, tasks as u32).await;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (redis, next) = (redis.clone(), next.clone());
        set.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < jobs {
                NoopJob::perform_async(&redis, ()).await?;
            }
            Ok::<(), sidekiq::Error>(())
        });
    }
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => peers::fail(format!("{NAME} push failed: {e}")),
            Err(e) => peers::fail(format!("{NAME} push task failed: {e}")),
        }
    }
    peers::print_push(NAME, VERSION, jobs, started.elapsed());
}

async fn drain(url: &str, jobs: u64, concurrency: usize) {
    // The README's advice: a pool at least as large as the number of worker tasks, or they
    // wait for connections (each worker holds one through its 2 s BRPOP). Plus a few for the
    // heartbeat, the retry/schedule poller and the periodic poller.
    let redis = pool(url, concurrency as u32 + 4).await;
    let completions = Completions::new(jobs);
    let mut processor = Processor::new(redis, vec![peers::QUEUE.to_string()])
        .with_config(ProcessorConfig::default().num_workers(concurrency));
    processor.register(NoopJob { completions: completions.clone() });
    let stop = processor.get_cancellation_token();

    completions.start_clock();
    let mut server = tokio::spawn(processor.run());
    let took = tokio::select! {
        took = completions.wait(NAME) => took,
        _ = &mut server => peers::fail(format!(
            "{NAME} processor stopped after {} of {jobs} jobs", completions.done()
        )),
    };
    peers::print_drain(NAME, VERSION, jobs, concurrency, took);

    // Stop as a deploy would: workers finish their job, the process deregisters. Bounded,
    // since an idle worker sits in BRPOP for up to 2 s.
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    std::process::exit(0);
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
