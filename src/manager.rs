//! The manager: keeps up to N jobs running, acknowledges finished ones, and on a hard stop
//! pushes unfinished ones back.
//!
//! It takes as many jobs as there are free slots in one fetch (up to three fetches in flight
//! while the queues have work), spawns each as a task that
//! holds its slot, and records `(queue, payload, in-progress list)` so the heartbeat can show
//! it and a stop that runs out of time can push exactly those bytes back. Successful jobs
//! are acknowledged (`LREM` from the in-progress list) by one task in pipelines, so a busy
//! server pays a fraction of a round trip per job for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::connection::Connection;
use redis::{AsyncCommands, Script};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinSet;

use crate::connection::Outage;
use crate::fetch::Fetcher;
use crate::keys::Keys;
use crate::payload;
use crate::processor::Processor;
use crate::work::UnitOfWork;

/// How long a job recovered from a dead process runs alone before other jobs start.
const SUSPECT_ALONE: Duration = Duration::from_secs(1);

/// Runs jobs in up to `concurrency` slots.
pub(crate) struct Manager<'a> {
    pub processor: &'a Arc<Processor>,
    pub concurrency: usize,
    pub running: &'a Running,
    pub keys: &'a Keys,
    pub conn: Connection,
    /// Acknowledgements not yet written to Redis.
    pub pending_acks: &'a AtomicUsize,
}

/// Fetches in flight at once (reliable fetch). With one, slots freed while a fetch's reply is
/// on its way wait a whole round trip; with more, they are asked for meanwhile. Each fetch
/// asks only for slots it holds, so no more than `concurrency` jobs are ever taken. Three
/// drained no-op jobs ~45% faster than one and ~15% faster than two here; four, no faster.
const MAX_FETCHES: usize = 3;

/// What a fetch task hands back: the slots it held, whether it could block, and the jobs it
/// took for them.
type FetchReply = (
    Vec<OwnedSemaphorePermit>,
    bool,
    redis::RedisResult<Vec<UnitOfWork>>,
);

impl Manager<'_> {
    /// Takes jobs whenever slots are free, until the server is quieted (or stopped).
    pub async fn fetch_until_quiet(
        &self,
        fetcher: &Arc<Fetcher>,
        tasks: &mut JoinSet<()>,
        mut quiet: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let max_fetches = if fetcher.can_overlap() {
            MAX_FETCHES
        } else {
            1
        };
        // Spawned, so a fetch is never cancelled half-way (jobs it took would be stranded).
        let mut fetches: JoinSet<FetchReply> = JoinSet::new();
        let mut next_id: u64 = 0;
        let mut outage = Outage::new("fetch");
        // After a failed fetch, Redis may have moved jobs whose reply never arrived.
        let mut maybe_stranded = false;
        let mut backoff = Duration::from_millis(100);
        // The last fetch brought jobs: the queues have work, so a second fetch pays off.
        let mut busy = false;
        let mut blocking_in_flight = false;
        loop {
            while tasks.try_join_next().is_some() {}
            if maybe_stranded
                && fetches.is_empty()
                && slots.available_permits() == self.concurrency
                && self.pending_acks.load(Ordering::SeqCst) == 0
            {
                // Nothing runs and every ack is written: whatever is in our lists is stranded.
                maybe_stranded = !self.push_back_stranded(fetcher).await;
            }
            // A blocking fetch (BLMOVE) holds the shared fetch connection: nothing joins it.
            let can_fetch = fetches.len() < max_fetches
                && (fetches.is_empty() || (busy && !blocking_in_flight));
            // A clone to wait on, so the branches below may borrow `quiet` themselves.
            let mut quieted = quiet.clone();
            tokio::select! {
                biased;
                _ = until_quiet(&mut quieted) => break,
                Some(reply) = fetches.join_next(), if !fetches.is_empty() => {
                    let (permits, result) = match reply {
                        Ok((permits, could_block, result)) => {
                            if could_block {
                                blocking_in_flight = false;
                            }
                            (permits, result)
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "a fetch task failed");
                            maybe_stranded = true;
                            blocking_in_flight = false;
                            continue;
                        }
                    };
                    match result {
                        Ok(fetched) => {
                            if outage.ok() {
                                backoff = Duration::from_millis(100);
                            }
                            busy = !fetched.is_empty();
                            if fetched.iter().any(UnitOfWork::is_suspect) {
                                // A job recovered from a crash runs alone: jobs that fetches
                                // beside it took go back first, so a crash it causes does not
                                // count against them.
                                busy = false;
                                blocking_in_flight = false;
                                if !self.push_back_in_flight(&mut fetches).await {
                                    maybe_stranded = true;
                                }
                            }
                            self.start(fetched, permits, tasks, &mut next_id, &mut quiet).await;
                        }
                        Err(e) => {
                            outage.failed(&e);
                            maybe_stranded = true;
                            busy = false;
                            drop(permits);
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = until_quiet(&mut quiet) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                first = Arc::clone(&slots).acquire_owned(), if can_fetch => {
                    let mut permits = vec![first.expect("the semaphore is never closed")];
                    while let Ok(more) = Arc::clone(&slots).try_acquire_owned() {
                        permits.push(more);
                    }
                    // Only a fetch with none beside it, after the queues looked empty, may
                    // block waiting for work; while they are busy, an empty look returns.
                    let may_block = fetches.is_empty() && !busy;
                    blocking_in_flight |= may_block;
                    let fetcher = Arc::clone(fetcher);
                    fetches.spawn(async move {
                        let result = fetcher.fetch(permits.len(), may_block).await;
                        (permits, may_block, result)
                    });
                }
            }
        }
        // Quiet: let the fetches in flight finish and push back what they took.
        if !self.push_back_in_flight(&mut fetches).await {
            tracing::warn!(
                "some fetched jobs could not be pushed back; they stay in this process's in-progress lists and are recovered after it exits"
            );
        }
    }

    /// Runs fetched jobs, each holding one of `permits`. A job recovered from a dead process
    /// runs alone for a moment: if it kills this process too, no job fetched after it is
    /// caught with it.
    async fn start(
        &self,
        fetched: Vec<UnitOfWork>,
        mut permits: Vec<OwnedSemaphorePermit>,
        tasks: &mut JoinSet<()>,
        next_id: &mut u64,
        quiet: &mut watch::Receiver<bool>,
    ) {
        let run_at = payload::now_secs() as u64;
        let mut suspect_done = None;
        for (job, permit) in fetched.into_iter().zip(permits.drain(..)) {
            *next_id += 1;
            let id = *next_id;
            let job = running_job(job, run_at);
            // Only a suspect is waited for; other jobs need no channel.
            let done_tx = job.work.is_suspect().then(|| {
                let (tx, rx) = oneshot::channel::<()>();
                suspect_done = Some(rx);
                tx
            });
            self.running
                .lock()
                .expect("running jobs lock")
                .insert(id, job.clone());
            let processor = Arc::clone(self.processor);
            let running = Arc::clone(self.running);
            tasks.spawn(async move {
                processor.process(&job.work).await;
                running.lock().expect("running jobs lock").remove(&id);
                drop(permit);
                if let Some(done) = done_tx {
                    let _ = done.send(());
                }
            });
        }
        if let Some(done) = suspect_done {
            tokio::select! {
                _ = done => {}
                _ = tokio::time::sleep(SUSPECT_ALONE) => {}
                _ = until_quiet(quiet) => {}
            }
        }
    }
}

impl Manager<'_> {
    /// Waits for the fetches in flight and pushes back whatever they took. `false` when a
    /// fetch failed or the push-back did: jobs may be left in this process's lists.
    async fn push_back_in_flight(&self, fetches: &mut JoinSet<FetchReply>) -> bool {
        let mut back = Vec::new();
        let mut all_known = true;
        while let Some(reply) = fetches.join_next().await {
            match reply {
                Ok((_, _, Ok(fetched))) => {
                    back.extend(fetched.into_iter().map(|f| running_job(f, 0)));
                }
                _ => all_known = false,
            }
        }
        requeue(self.conn.clone(), self.keys, &back).await && all_known
    }

    /// Pushes back every job in this process's in-progress lists; call only when none is
    /// running and every acknowledgement is written. Returns whether that succeeded.
    async fn push_back_stranded(&self, fetcher: &Fetcher) -> bool {
        let mut conn = self.conn.clone();
        let mut stranded = Vec::new();
        for (queue, list) in fetcher.inprogress_lists() {
            match conn.lrange::<_, Vec<Vec<u8>>>(&*list, 0, -1).await {
                Ok(jobs) => stranded.extend(jobs.into_iter().map(|raw| RunningJob {
                    work: UnitOfWork::held(Arc::clone(&queue), Arc::from(raw), Arc::clone(&list)),
                    run_at: 0,
                })),
                Err(_) => return false,
            }
        }
        if stranded.is_empty() {
            return true;
        }
        tracing::warn!(
            count = stranded.len(),
            "jobs were moved by a fetch whose reply was lost; pushing them back"
        );
        requeue(self.conn.clone(), self.keys, &stranded).await
    }
}

/// Completes once the server is quiet; holds no borrow of the flag afterwards, so it can sit
/// in a `select!` whose other branches await.
async fn until_quiet(quiet: &mut watch::Receiver<bool>) {
    let _ = quiet.wait_for(|quiet| *quiet).await;
}

fn running_job(work: UnitOfWork, run_at: u64) -> RunningJob {
    RunningJob { work, run_at }
}

/// Pushes jobs back where they are popped next; with reliable fetch only those still in
/// their in-progress list (one that finished meanwhile is not run again).
/// ARGV: (in-progress list or "", queue key, payload) triples.
const REQUEUE: &str = r#"
local moved = 0
for i = 1, #ARGV, 3 do
  if ARGV[i] == '' or redis.call('lrem', ARGV[i], -1, ARGV[i + 2]) == 1 then
    redis.call('rpush', ARGV[i + 1], ARGV[i + 2])
    moved = moved + 1
  end
end
return moved
"#;

/// Pushes unfinished jobs back to the front of their queues, in one atomic call.
pub(crate) async fn requeue(mut conn: Connection, keys: &Keys, jobs: &[RunningJob]) -> bool {
    if jobs.is_empty() {
        return true;
    }
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REQUEUE));
    let mut invocation = SCRIPT.prepare_invoke();
    // RPUSH puts each job where it is popped next: the last pushed runs first, so push in
    // reverse to keep the order they were taken in.
    for job in jobs.iter().rev() {
        invocation
            .arg(job.work.list_arg())
            .arg(keys.queue(&job.work.queue))
            .arg(&*job.work.raw);
    }
    match invocation.invoke_async::<usize>(&mut conn).await {
        Ok(count) => {
            tracing::info!(count, "Pushed unfinished jobs back to Redis");
            true
        }
        Err(e) => {
            for job in jobs {
                tracing::error!(error = %e, queue = &*job.work.queue, payload = %crate::text::escape(&job.work.raw), "could not push an unfinished job back");
            }
            if jobs.iter().all(|job| job.work.is_held()) {
                tracing::warn!(
                    "those jobs stay in this process's in-progress lists and are recovered once its heartbeat expires"
                );
            }
            false
        }
    }
}

/// A job that is running now.
#[derive(Debug, Clone)]
pub(crate) struct RunningJob {
    /// The job: its exact bytes, to show and to push back on a hard stop, and what holds it.
    pub work: UnitOfWork,
    /// When it started, in whole epoch seconds (as Sidekiq writes `run_at`).
    pub run_at: u64,
}

/// The jobs running now, by slot id.
pub(crate) type Running = Arc<Mutex<HashMap<u64, RunningJob>>>;

/// Logs every running job (TTIN).
pub(crate) fn log_running(running: &Running) {
    let running = running.lock().expect("running jobs lock");
    tracing::info!(busy = running.len(), "TTIN: running jobs");
    for (slot, job) in running.iter() {
        tracing::info!(
            slot = radix36(*slot),
            queue = &*job.work.queue,
            run_at = job.run_at,
            payload = %String::from_utf8_lossy(&job.work.raw),
            "running"
        );
    }
}

pub(crate) fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}
