//! The manager: keeps N workers busy, and on quiet and on a hard stop pushes unfinished
//! jobs back.
//!
//! It starts `concurrency` workers (see [`crate::server::backlog`]) and fetches for them: as many
//! jobs as there is room for in one fetch (running plus a bounded prefetch; up to three
//! fetches in flight while the queues have work), waiting for room for half the prefetch
//! while the workers have jobs, so each round trip brings many. A worker records
//! `(queue, payload, in-progress hash)` in the running-jobs map so the heartbeat can show
//! it and a stop that runs out of time can push exactly those bytes back. Successful jobs
//! are acknowledged (`HDEL` of their slots in the in-progress hash) by one task in batches,
//! so a busy server pays a fraction of a command per job for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::store::connection::Connection;
use crate::store::scripts::REQUEUE;
use redis::{AsyncCommands, Script};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::server::backlog::{self, Backlog, Queued};
use crate::server::fetch::Fetcher;
use crate::server::processor::Processor;
use crate::server::running::{Running, RunningJob};
use crate::server::work::UnitOfWork;
use crate::store::keys::Keys;
use crate::store::outage::Outage;

/// How long a job recovered from a dead process runs alone before other jobs start.
const SUSPECT_ALONE: Duration = Duration::from_secs(1);

/// Runs jobs in up to `concurrency` workers, fetching ahead for them.
pub(crate) struct Manager<'a> {
    pub processor: &'a Arc<Processor>,
    pub concurrency: usize,
    /// Jobs held beyond those running at most (see [`crate::server::backlog`]).
    pub prefetch: usize,
    /// The prefetch was not set, so it may grow to cover fetch round trips.
    pub prefetch_covers_round_trips: bool,
    pub running: &'a Running,
    pub keys: &'a Keys,
    pub conn: Connection,
    /// Acknowledgements not yet written to Redis.
    pub pending_acks: &'a AtomicUsize,
}

/// Fetches in flight at once (reliable fetch). With one, workers freed while a fetch's
/// reply is on its way wait a whole round trip; with more, jobs are asked for meanwhile.
/// Each fetch asks only for the room it reserved, so no more than `concurrency` plus the
/// prefetch are ever held.
const MAX_FETCHES: usize = 3;

/// What a fetch task hands back: how many jobs it asked for, whether it could block, and
/// the jobs it took.
type FetchReply = (usize, bool, redis::RedisResult<Vec<UnitOfWork>>);

impl Manager<'_> {
    /// Starts the workers into `workers` and fetches for them until the server is quieted
    /// (or stopped); then pushes back what was fetched and not started.
    pub async fn fetch_until_quiet(
        &self,
        fetcher: &Arc<Fetcher>,
        workers: &mut JoinSet<()>,
        mut quiet: watch::Receiver<bool>,
    ) {
        let prefetch = if fetcher.can_overlap() {
            self.prefetch
        } else {
            0
        };
        let backlog = Arc::new(Backlog::with_prefetch(
            self.concurrency,
            prefetch,
            self.prefetch_covers_round_trips && fetcher.can_overlap(),
        ));
        let mut next_worker: u64 = 0;
        for _ in 0..self.concurrency {
            self.spawn_worker(&backlog, workers, &mut next_worker);
        }
        let max_fetches = if fetcher.can_overlap() {
            MAX_FETCHES
        } else {
            1
        };
        // Spawned, so a fetch is never cancelled half-way (jobs it took would be stranded).
        let mut fetches: JoinSet<FetchReply> = JoinSet::new();
        let mut outage = Outage::new("fetch");
        // After a failed fetch, Redis may have moved jobs whose reply never arrived.
        let mut maybe_stranded = false;
        let mut backoff = Duration::from_millis(100);
        // The last fetch brought jobs: the queues have work, so a second fetch pays off.
        let mut busy = false;
        let mut blocking_in_flight = false;
        loop {
            while let Some(ended) = workers.try_join_next() {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "a worker failed; starting another");
                    self.spawn_worker(&backlog, workers, &mut next_worker);
                }
            }
            if maybe_stranded
                && fetches.is_empty()
                && backlog.held() == 0
                && self.pending_acks.load(Ordering::SeqCst) == 0
            {
                // Nothing runs and every ack is written: whatever is in our hashes is stranded.
                maybe_stranded = !self.push_back_stranded(fetcher).await;
            }
            // A blocking fetch (BLMOVE) holds the shared fetch connection: nothing joins it.
            let can_fetch = fetches.len() < max_fetches
                && (fetches.is_empty() || (busy && !blocking_in_flight));
            // With work in hand, wait for room for a good batch; with none, take what fits.
            let needed = if fetches.is_empty() && backlog.waiting() == 0 {
                1
            } else {
                backlog.batch()
            };
            let room = backlog.room();
            if can_fetch && room >= needed && !*quiet.borrow() {
                // Only a fetch with none beside it, after the queues looked empty, may
                // block waiting for work; while they are busy, an empty look returns.
                let may_block = fetches.is_empty() && !busy;
                blocking_in_flight |= may_block;
                backlog.reserve(room);
                let reserved = Reserved(Some(Arc::clone(&backlog)), room);
                let fetcher = Arc::clone(fetcher);
                let timed = Arc::clone(&backlog);
                fetches.spawn(async move {
                    let sent = std::time::Instant::now();
                    let result = fetcher.fetch(room, may_block).await;
                    if !may_block && result.is_ok() {
                        timed.fetched_in(sent.elapsed());
                    }
                    reserved.replied();
                    (room, may_block, result)
                });
                continue;
            }
            let wait_for_room = can_fetch;
            if wait_for_room {
                backlog.refill_when_room(needed);
            }
            // A clone to wait on, so the branches below may borrow `quiet` themselves.
            let mut quieted = quiet.clone();
            tokio::select! {
                biased;
                _ = until_quiet(&mut quieted) => break,
                Some(reply) = fetches.join_next(), if !fetches.is_empty() => {
                    let (asked, could_block, result) = match reply {
                        Ok(reply) => reply,
                        Err(e) => {
                            // Its reservation was given back when the task ended.
                            tracing::error!(error = %e, "a fetch task failed");
                            maybe_stranded = true;
                            blocking_in_flight = false;
                            continue;
                        }
                    };
                    if could_block {
                        blocking_in_flight = false;
                    }
                    match result {
                        Ok(fetched) => {
                            if outage.ok() {
                                backoff = Duration::from_millis(100);
                            }
                            busy = !fetched.is_empty();
                            backlog.release(asked - fetched.len());
                            self.start(fetched, &backlog, &mut fetches, &mut maybe_stranded, &mut quiet).await;
                            if !busy {
                                blocking_in_flight = false;
                            }
                        }
                        Err(e) => {
                            backlog.release(asked);
                            outage.failed(&e);
                            maybe_stranded = true;
                            busy = false;
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = until_quiet(&mut quiet) => {}
                            }
                            // At most half a second: work resumes within a second of Redis
                            // answering again (a failed fetch costs Redis nothing).
                            backoff = (backoff * 2).min(Duration::from_millis(500));
                        }
                    }
                }
                _ = backlog.room_made(), if wait_for_room => {}
            }
        }
        // Quiet: no job starts now; the waiting ones and those the fetches in flight bring
        // go back.
        let waiting = backlog.close();
        let count = waiting.len();
        let back: Vec<RunningJob> = waiting.into_iter().map(|w| running_job(w, 0)).collect();
        let pushed = self.push_back_in_flight(&mut fetches, &backlog, back).await;
        backlog.release(count);
        if !pushed {
            tracing::warn!(
                "some fetched jobs could not be pushed back; they stay in this process's in-progress hashes and are recovered after it exits"
            );
        }
    }

    fn spawn_worker(&self, backlog: &Arc<Backlog>, workers: &mut JoinSet<()>, next: &mut u64) {
        *next += 1;
        workers.spawn(backlog::work(
            Arc::clone(backlog),
            Arc::clone(self.processor),
            Arc::clone(self.running),
            *next,
        ));
    }

    /// Hands fetched jobs to the workers. A job recovered from a dead process runs alone
    /// for a moment: the jobs fetches beside it took go back first, and no fetch starts
    /// until it is done (or [`SUSPECT_ALONE`] has passed), so a crash it causes does not
    /// count against jobs fetched after it.
    async fn start(
        &self,
        fetched: Vec<UnitOfWork>,
        backlog: &Arc<Backlog>,
        fetches: &mut JoinSet<FetchReply>,
        maybe_stranded: &mut bool,
        quiet: &mut watch::Receiver<bool>,
    ) {
        if !fetched.iter().any(UnitOfWork::is_suspect) {
            backlog.push(fetched.into_iter().map(|work| Queued { work, done: None }));
            return;
        }
        if !self.push_back_in_flight(fetches, backlog, Vec::new()).await {
            *maybe_stranded = true;
        }
        let (tx, done) = oneshot::channel::<()>();
        let mut tx = Some(tx);
        backlog.push(fetched.into_iter().map(|work| Queued {
            done: if work.is_suspect() { tx.take() } else { None },
            work,
        }));
        tokio::select! {
            _ = done => {}
            _ = tokio::time::sleep(SUSPECT_ALONE) => {}
            _ = until_quiet(quiet) => {}
        }
    }
}

/// A fetch's reservation, given back if its task ends without a reply (a panic); with a
/// reply, the manager accounts for it.
struct Reserved(Option<Arc<Backlog>>, usize);

impl Reserved {
    fn replied(mut self) {
        self.0 = None;
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(backlog) = self.0.take() {
            backlog.release(self.1);
        }
    }
}

impl Manager<'_> {
    /// Waits for the fetches in flight and pushes back whatever they took, with `back`.
    /// `false` when a fetch failed or the push-back did: jobs may be left in this
    /// process's in-progress hashes.
    async fn push_back_in_flight(
        &self,
        fetches: &mut JoinSet<FetchReply>,
        backlog: &Backlog,
        mut back: Vec<RunningJob>,
    ) -> bool {
        let mut all_known = true;
        while let Some(reply) = fetches.join_next().await {
            match reply {
                Ok((asked, _, Ok(fetched))) => {
                    backlog.release(asked);
                    back.extend(fetched.into_iter().map(|f| running_job(f, 0)));
                }
                Ok((asked, _, Err(_))) => {
                    backlog.release(asked);
                    all_known = false;
                }
                Err(_) => all_known = false,
            }
        }
        requeue(self.conn.clone(), self.keys, &back).await && all_known
    }

    /// Pushes back every job in this process's in-progress hashes; call only when none is
    /// running and every acknowledgement is written. Returns whether that succeeded.
    async fn push_back_stranded(&self, fetcher: &Fetcher) -> bool {
        let mut conn = self.conn.clone();
        let mut stranded = Vec::new();
        for (queue, hash) in fetcher.inprogress_hashes() {
            match conn.hgetall::<_, Vec<(u64, Vec<u8>)>>(&*hash).await {
                Ok(mut jobs) => {
                    // In the order they were taken.
                    jobs.sort_unstable_by_key(|(slot, _)| *slot);
                    stranded.extend(jobs.into_iter().map(|(slot, raw)| RunningJob {
                        work: UnitOfWork::held(
                            Arc::clone(&queue),
                            Arc::from(raw),
                            Arc::clone(&hash),
                            slot,
                        ),
                        run_at: 0,
                        signals: Arc::default(),
                    }))
                }
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
    RunningJob {
        work,
        run_at,
        signals: Arc::default(),
    }
}

/// Pushes unfinished jobs back to the front of their queues, in one atomic call (in the
/// cluster layout, one per queue: each is in its own slot).
pub(crate) async fn requeue(conn: Connection, keys: &Keys, jobs: &[RunningJob]) -> bool {
    if !keys.is_cluster() {
        return requeue_in_one_slot(conn, keys, jobs, None).await;
    }
    let mut queues: Vec<&str> = jobs.iter().map(|job| &*job.work.queue).collect();
    queues.sort_unstable();
    queues.dedup();
    let mut all = true;
    for queue in queues {
        let of_queue: Vec<RunningJob> = jobs
            .iter()
            .filter(|job| &*job.work.queue == queue)
            .cloned()
            .collect();
        let route = keys.queue(queue);
        all &= requeue_in_one_slot(conn.clone(), keys, &of_queue, Some(&route)).await;
    }
    all
}

/// [`requeue`] of jobs whose keys share a slot; `route` names one of them for a cluster.
async fn requeue_in_one_slot(
    mut conn: Connection,
    keys: &Keys,
    jobs: &[RunningJob],
    route: Option<&str>,
) -> bool {
    if jobs.is_empty() {
        return true;
    }
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REQUEUE));
    let mut invocation = SCRIPT.prepare_invoke();
    if let Some(route) = route {
        invocation.key(route);
    }
    // RPUSH puts each job where it is popped next: the last pushed runs first, so push in
    // reverse to keep the order they were taken in.
    for job in jobs.iter().rev() {
        match job.work.held_in() {
            Some(held) => invocation.arg(&*held.hash).arg(held.slot),
            None => invocation.arg("").arg(0),
        };
        invocation
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
                tracing::error!(error = %e, queue = &*job.work.queue, payload = %crate::job::text::escape(&job.work.raw), "could not push an unfinished job back");
            }
            if jobs.iter().all(|job| job.work.is_held()) {
                tracing::warn!(
                    "those jobs stay in this process's in-progress hashes and are recovered once its heartbeat expires"
                );
            }
            false
        }
    }
}
