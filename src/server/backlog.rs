//! The backlog and the workers: `concurrency` long-lived worker tasks take fetched jobs
//! from a local queue and run them one after another, as Sidekiq's processor threads do.
//!
//! A worker that finishes a job takes the next one from the backlog at once: no task is
//! spawned per job and no other task is woken. So that the backlog is rarely empty while
//! jobs are short, the manager fetches ahead: a process holds at most `concurrency` running
//! jobs plus a bounded **prefetch** of jobs waiting for a worker. Every held job is in the
//! process's in-progress hash from the moment it is fetched, so prefetched jobs are as safe
//! as running ones, recovered alike, and pushed back when the process goes quiet.
//!
//! The prefetch shrinks with the jobs' mean run time: it holds about
//! [`PREFETCH_WORK`] of work (`prefetch × min(1, PREFETCH_WORK / mean run time)`), so
//! no-op jobs get the whole prefetch while a 1 s job gets none, and a prefetched job waits
//! for a worker for about that long on average, however long jobs run. Other processes
//! therefore never wait long for jobs this one took ahead.
//!
//! Unless a prefetch was set, a process (capsule) that reads one queue also grows it to
//! keep the workers busy for two fetch round trips (`concurrency × 2 × round trip / mean run time`, at most [`ROUND_TRIP_PER_SLOT`]
//! jobs a worker and [`ROUND_TRIP_MOST`] in all): behind a network the two-per-worker prefetch of no-op jobs ran out long
//! before the next fetch came back (29,000 jobs/s behind a 1.3 ms round trip; 1,000 held
//! jobs made it 209,000, BENCHMARKS.md "Sidekiq's published setup"). Not with several
//! queues: a fetch takes its batch queue by queue in the weighted order, and batches of
//! hundreds would share the queues out in lumps.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, oneshot};

use crate::server::processor::Processor;
use crate::server::running::{Running, RunningJob};
use crate::server::work::UnitOfWork;

/// How much work the prefetch holds at most, in mean job run time.
pub(crate) const PREFETCH_WORK: Duration = Duration::from_millis(1);

/// The prefetch unless one is set: this many jobs a worker. With one, a fetch waits for
/// room for half the concurrency, and no-op jobs took about 5 jobs a Redis command; with
/// two, about 16, which cut Redis's CPU per job by a quarter and the server's by a fifth
/// (BENCHMARKS.md, "Speed, second round").
pub(crate) const DEFAULT_PREFETCH_PER_SLOT: usize = 2;

/// The most a default prefetch grows to cover fetch round trips, in jobs a worker, and in
/// all (a process of 1,000 workers does not hold 40,000 jobs others cannot take).
pub(crate) const ROUND_TRIP_PER_SLOT: usize = 40;
pub(crate) const ROUND_TRIP_MOST: usize = 1_000;

/// Folds `elapsed` into an exponentially weighted mean in nanoseconds (0: none yet). Weight
/// 1/8: a change shows within a few dozen samples.
fn fold_into(mean_ns: &AtomicU64, elapsed: Duration) {
    let sample = elapsed.as_nanos().min(u64::MAX as u128) as u64;
    let mean = mean_ns.load(Ordering::Relaxed);
    let next = if mean == 0 {
        sample
    } else {
        mean - mean / 8 + sample / 8
    };
    mean_ns.store(next, Ordering::Relaxed);
}

/// A fetched job waiting for a worker.
pub(crate) struct Queued {
    pub work: UnitOfWork,
    /// Told when the job is done (a suspect, which runs alone for a moment).
    pub done: Option<oneshot::Sender<()>>,
}

/// Fetched jobs waiting for a worker, and the counts the manager fetches by.
pub(crate) struct Backlog {
    jobs: Mutex<VecDeque<Queued>>,
    /// One permit per job in `jobs`; closed when the server goes quiet.
    ready: Semaphore,
    /// Jobs this process holds: being fetched, waiting, or running.
    held: AtomicUsize,
    /// When `held` falls to this, the manager is woken to fetch more.
    refill_at: AtomicUsize,
    refill: Notify,
    /// The mean run time of recent jobs, in nanoseconds (exponentially weighted).
    mean_run_ns: AtomicU64,
    /// The mean time a fetch takes to come back, in nanoseconds (exponentially weighted).
    fetch_rtt_ns: AtomicU64,
    concurrency: usize,
    prefetch: usize,
    /// The prefetch was not set: it may grow to cover fetch round trips.
    covers_round_trips: bool,
}

impl Backlog {
    /// A backlog for `concurrency` workers and at most `prefetch` jobs waiting.
    #[cfg(test)]
    pub fn new(concurrency: usize, prefetch: usize) -> Backlog {
        Backlog::with_prefetch(concurrency, prefetch, false)
    }

    /// As [`Backlog::new`]; with `covers_round_trips` (the prefetch was not set) the
    /// prefetch also grows to cover two fetch round trips (see the module docs).
    pub fn with_prefetch(concurrency: usize, prefetch: usize, covers_round_trips: bool) -> Backlog {
        Backlog {
            jobs: Mutex::new(VecDeque::with_capacity(concurrency + prefetch)),
            ready: Semaphore::new(0),
            held: AtomicUsize::new(0),
            refill_at: AtomicUsize::new(0),
            refill: Notify::new(),
            mean_run_ns: AtomicU64::new(0),
            fetch_rtt_ns: AtomicU64::new(0),
            concurrency,
            prefetch,
            covers_round_trips,
        }
    }

    /// The prefetch for the jobs' current mean run time (see the module docs).
    pub fn prefetch_now(&self) -> usize {
        let mean = self.mean_run_ns.load(Ordering::Relaxed);
        let budget = PREFETCH_WORK.as_nanos() as u64;
        let for_work = if mean <= budget {
            self.prefetch
        } else {
            (self.prefetch as u64 * budget / mean) as usize
        };
        let rtt = self.fetch_rtt_ns.load(Ordering::Relaxed);
        if !self.covers_round_trips || mean == 0 || rtt == 0 {
            return for_work;
        }
        let for_round_trips = (self.concurrency as u64).saturating_mul(2 * rtt) / mean;
        let most = (self.concurrency * ROUND_TRIP_PER_SLOT)
            .min(ROUND_TRIP_MOST)
            .max(self.prefetch);
        for_work.max((for_round_trips as usize).min(most))
    }

    /// Folds how long a fetch that did not wait for work took into the mean round trip.
    pub fn fetched_in(&self, elapsed: Duration) {
        fold_into(&self.fetch_rtt_ns, elapsed);
    }

    /// How many more jobs the process may hold now.
    pub fn room(&self) -> usize {
        (self.concurrency + self.prefetch_now()).saturating_sub(self.held.load(Ordering::SeqCst))
    }

    /// The smallest fetch worth a round trip while the workers have work: half the
    /// prefetch, so each fetch brings many jobs and lands before the backlog runs dry.
    pub fn batch(&self) -> usize {
        (self.prefetch_now() / 2).max(1)
    }

    /// Jobs held: being fetched, waiting or running.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Jobs waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.jobs.lock().expect("backlog lock").len()
    }

    /// Counts `n` jobs about to be fetched as held.
    pub fn reserve(&self, n: usize) {
        self.held.fetch_add(n, Ordering::SeqCst);
    }

    /// Gives back `n` held jobs (asked for and not fetched, or pushed back).
    pub fn release(&self, n: usize) {
        let before = self.held.fetch_sub(n, Ordering::SeqCst);
        if before - n <= self.refill_at.load(Ordering::Relaxed) {
            self.refill.notify_one();
        }
    }

    /// Wakes the manager once `room()` reaches `needed`.
    pub fn refill_when_room(&self, needed: usize) {
        let capacity = self.concurrency + self.prefetch_now();
        self.refill_at
            .store(capacity.saturating_sub(needed), Ordering::Relaxed);
    }

    /// Completes when a finished job (or a release) has made room; see
    /// [`Backlog::refill_when_room`].
    pub async fn room_made(&self) {
        self.refill.notified().await;
    }

    /// Hands fetched jobs to the workers.
    pub fn push(&self, jobs: impl IntoIterator<Item = Queued>) {
        let mut queue = self.jobs.lock().expect("backlog lock");
        let before = queue.len();
        queue.extend(jobs);
        let added = queue.len() - before;
        drop(queue);
        self.ready.add_permits(added);
    }

    /// Stops the workers taking jobs (they finish the one they run) and returns the jobs
    /// that were waiting, still held, to be pushed back.
    pub fn close(&self) -> Vec<UnitOfWork> {
        self.ready.close();
        let waiting: Vec<UnitOfWork> = self
            .jobs
            .lock()
            .expect("backlog lock")
            .drain(..)
            .map(|queued| queued.work)
            .collect();
        waiting
    }

    /// Folds one job's run time into the mean.
    fn ran_for(&self, elapsed: Duration) {
        fold_into(&self.mean_run_ns, elapsed);
    }

    /// The next job for a worker; `None` once the backlog is closed.
    async fn next(&self) -> Option<Queued> {
        loop {
            self.ready.acquire().await.ok()?.forget();
            // A close may have taken the job this permit stood for; then look again.
            if let Some(job) = self.jobs.lock().expect("backlog lock").pop_front() {
                return Some(job);
            }
        }
    }
}

/// One worker: runs jobs from the backlog until it is closed.
pub(crate) async fn work(
    backlog: Arc<Backlog>,
    processor: Arc<Processor>,
    running: Running,
    id: u64,
) {
    // One set of signals a worker, reset between jobs: no allocation per job, unless the
    // last job's context outlived it (a task it spawned holds it), when a new one is made.
    let mut signals = processor.signals();
    while let Some(Queued { work, done }) = backlog.next().await {
        match Arc::get_mut(&mut signals) {
            Some(mine) => mine.reset(),
            None => signals = processor.signals(),
        }
        let job = RunningJob {
            work,
            run_at: crate::clock::now_secs() as u64,
            signals: Arc::clone(&signals),
        };
        running
            .lock()
            .expect("running jobs lock")
            .insert(id, job.clone());
        let guard = Finishing {
            backlog: &backlog,
            running: &running,
            id,
        };
        let started = Instant::now();
        processor.process(&job.work, &job.signals).await;
        backlog.ran_for(started.elapsed());
        running.lock().expect("running jobs lock").remove(&id);
        drop(guard);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// Gives back a worker's held job when it ends, however it ends: normally, by a panic
/// outside the job's own catcher, or cancelled by a hard stop (whose push-back then reads
/// the running-jobs map, so a cancelled job stays listed there).
struct Finishing<'a> {
    backlog: &'a Backlog,
    running: &'a Running,
    id: u64,
}

impl Drop for Finishing<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(mut running) = self.running.lock()
        {
            running.remove(&self.id);
        }
        self.backlog.release(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefetch_shrinks_for_slow_jobs() {
        let backlog = Backlog::new(10, 20);
        assert_eq!(backlog.prefetch_now(), 20);
        backlog.ran_for(Duration::from_micros(5));
        assert_eq!(backlog.prefetch_now(), 20);
        backlog.mean_run_ns.store(10_000_000, Ordering::Relaxed);
        assert_eq!(backlog.prefetch_now(), 2, "10 ms jobs: a tenth");
        backlog.mean_run_ns.store(1_000_000_000, Ordering::Relaxed);
        assert_eq!(backlog.prefetch_now(), 0);
        assert_eq!(backlog.batch(), 1);
        assert_eq!(backlog.room(), 10);
    }

    #[test]
    fn a_default_prefetch_covers_two_fetch_round_trips_for_short_jobs() {
        let backlog = Backlog::with_prefetch(10, 20, true);
        backlog.mean_run_ns.store(10_000, Ordering::Relaxed); // 10 µs jobs
        assert_eq!(backlog.prefetch_now(), 20, "no round trip measured yet");
        backlog.fetched_in(Duration::from_micros(100));
        assert_eq!(backlog.prefetch_now(), 200, "10 workers × 200 µs / 10 µs");
        backlog.fetched_in(Duration::from_millis(50));
        assert!(backlog.prefetch_now() <= 10 * ROUND_TRIP_PER_SLOT);
        // Slow jobs: a round trip is nothing next to them.
        backlog.mean_run_ns.store(1_000_000_000, Ordering::Relaxed);
        assert!(backlog.prefetch_now() <= 1);
        // A prefetch that was set stays as it was.
        let fixed = Backlog::new(10, 20);
        fixed.mean_run_ns.store(10_000, Ordering::Relaxed);
        fixed.fetched_in(Duration::from_millis(5));
        assert_eq!(fixed.prefetch_now(), 20);
    }

    #[test]
    fn room_counts_every_held_job() {
        let backlog = Backlog::new(2, 2);
        backlog.reserve(3);
        assert_eq!(backlog.room(), 1);
        backlog.release(2);
        assert_eq!((backlog.held(), backlog.room()), (1, 3));
    }
}
