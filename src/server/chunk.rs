//! Chunked workers: jobs of one class taken together, up to `size` a call, waiting at most
//! `max_wait` for a chunk to fill (Oban Pro's Chunk, BullMQ Pro's batches), with an
//! outcome per job.
//!
//! Each job is fetched, held and acknowledged as any job (a `kill -9` recovers each one);
//! its worker slot waits while a collector in the process gathers it into the next chunk
//! and hands the chunk to [`ChunkWorker::perform_chunk`], then gives each job its own
//! outcome: some succeed, some retry, some die, by their own retry settings. A chunk holds
//! at most as many jobs as run at once, so give the server (or capsule) a concurrency of
//! at least `size`. A job's run that ends before its chunk is performed (a timeout, a
//! cancel, a stop) leaves it out; one that ends while `perform_chunk` runs cannot stop it.
//!
//! ```
//! use std::time::Duration;
//! use psychiq::{ChunkWorker, Chunked, JobError, JobResult, Registry};
//!
//! struct InsertRows;
//! impl ChunkWorker for InsertRows {
//!     type Args = (u64, String);
//!     const SIZE: usize = 500;
//!     const MAX_WAIT: Duration = Duration::from_millis(200);
//!     async fn perform_chunk(&self, jobs: Vec<Chunked<(u64, String)>>) -> Vec<JobResult> {
//!         // One INSERT for them all, say; here each row stands alone.
//!         jobs.iter()
//!             .map(|job| if job.args.1.is_empty() { Err(JobError::discard("empty row")) } else { Ok(()) })
//!             .collect()
//!     }
//! }
//! let mut registry = Registry::new();
//! registry.register_chunked(InsertRows);
//! ```

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::job::failure::{JobError, JobResult};
use crate::job::worker::{JobFuture, RawJob, RawWorker, WorkerOptions, parse_args};

/// One job of a chunk: its jid and its arguments.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Chunked<A> {
    /// The job's jid.
    pub jid: String,
    /// Its arguments.
    pub args: A,
}

/// A worker that performs its jobs a chunk at a time (see the module docs).
pub trait ChunkWorker: Send + Sync + Sized + 'static {
    /// One job's arguments.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The most jobs in one call.
    const SIZE: usize = 100;
    /// How long a chunk waits to fill from its first job.
    const MAX_WAIT: Duration = Duration::from_secs(1);

    /// The class name its jobs are enqueued under (the type's name unless overridden).
    fn class_name() -> String {
        crate::job::worker::short_type_name(std::any::type_name::<Self>()).to_string()
    }

    /// Queue, retries and the rest, for its jobs.
    fn options() -> WorkerOptions {
        WorkerOptions::default()
    }

    /// Performs a chunk; returns one outcome per job, in order (a missing one fails its
    /// job, saying so).
    fn perform_chunk(
        &self,
        jobs: Vec<Chunked<Self::Args>>,
    ) -> impl Future<Output = Vec<JobResult>> + Send;
}

/// A job waiting for its chunk: its arguments and where its outcome goes.
type Waiting<A> = (Chunked<A>, oneshot::Sender<JobResult>);

/// A [`ChunkWorker`] as the registry holds it: each job's future joins the collector.
pub(crate) struct ChunkRunner<W: ChunkWorker> {
    worker: Arc<W>,
    options: WorkerOptions,
    /// The collector's inbox, started with the first job (inside the server's runtime).
    inbox: OnceLock<mpsc::UnboundedSender<Waiting<W::Args>>>,
}

impl<W: ChunkWorker> ChunkRunner<W> {
    pub(crate) fn new(worker: W) -> ChunkRunner<W> {
        ChunkRunner {
            worker: Arc::new(worker),
            options: W::options(),
            inbox: OnceLock::new(),
        }
    }

    fn inbox(&self) -> &mpsc::UnboundedSender<Waiting<W::Args>> {
        self.inbox.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(collect(Arc::clone(&self.worker), rx));
            tx
        })
    }
}

impl<W: ChunkWorker> RawWorker for ChunkRunner<W> {
    fn start(&self, job: &RawJob<'_>) -> Result<JobFuture, serde_json::Error> {
        let args: W::Args = parse_args(job.args)?;
        let chunked = Chunked {
            jid: job.jid.to_string(),
            args,
        };
        let inbox = self.inbox().clone();
        // Joins a chunk only when polled: a middleware that skips the job (expired,
        // snoozed by a rate limit, cancelled) never lets it into one.
        Ok(Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            if inbox.send((chunked, tx)).is_err() {
                return Err(JobError::new(
                    "Psychiq::ChunkFailed",
                    "the chunk collector has stopped; the job will be retried",
                ));
            }
            rx.await.unwrap_or_else(|_| {
                Err(JobError::new(
                    "Psychiq::ChunkFailed",
                    "its chunk ended without an outcome for it (perform_chunk panicked?)",
                ))
            })
        }))
    }
    fn options(&self) -> &WorkerOptions {
        &self.options
    }
}

/// Gathers jobs into chunks of up to `SIZE`, each waiting at most `MAX_WAIT` from its first
/// job, and performs each chunk in a task of its own (the next one fills meanwhile).
async fn collect<W: ChunkWorker>(
    worker: Arc<W>,
    mut inbox: mpsc::UnboundedReceiver<Waiting<W::Args>>,
) {
    let size = W::SIZE.max(1);
    while let Some(first) = inbox.recv().await {
        let deadline = tokio::time::Instant::now() + W::MAX_WAIT;
        let mut chunk = vec![first];
        while chunk.len() < size {
            match tokio::time::timeout_at(deadline, inbox.recv()).await {
                Ok(Some(next)) => chunk.push(next),
                _ => break,
            }
        }
        let worker = Arc::clone(&worker);
        tokio::spawn(async move {
            // A job whose run ended meanwhile (a timeout, a cancel, a stop that pushed it
            // back) is left out: it runs again elsewhere, not here too.
            let mut chunk = chunk;
            chunk.retain(|(_, reply)| !reply.is_closed());
            if chunk.is_empty() {
                return;
            }
            let (jobs, replies): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
            let count = jobs.len();
            let mut outcomes = worker.perform_chunk(jobs).await.into_iter();
            let given = outcomes.len();
            for reply in replies {
                let outcome = outcomes.next().unwrap_or_else(|| {
                    Err(JobError::new(
                        "Psychiq::ChunkFailed",
                        format!("perform_chunk returned {given} outcomes for {count} jobs"),
                    ))
                });
                let _ = reply.send(outcome);
            }
        });
    }
}
