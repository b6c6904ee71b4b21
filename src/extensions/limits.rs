//! Rate limits shared by every process (Sidekiq Enterprise's `Sidekiq::Limiter`): named
//! limiters kept in Redis, checked in one atomic Lua step each, by Redis's own clock.
//!
//! - [`Limiter::concurrent`]: at most N holders at once. Each holder has a lease that its
//!   process renews while it holds it; a process killed with `kill -9` stops renewing and
//!   its leases lapse after the lease time (30 s unless set), freeing their places.
//! - [`Limiter::window`]: at most N per interval, in fixed windows (aligned to the
//!   interval); [`Limiter::sliding_window`]: at most N in any interval.
//! - [`Limiter::bucket`]: a token bucket: bursts of up to N, refilled at N per interval.
//!   [`Limiter::leaky`]: a leaky bucket: N per interval, evenly spaced (a burst of 1 unless
//!   [`Limiter::burst`] says more).
//!
//! Inside `perform`, [`Limits::within`] runs a future within a limit; as a worker option
//! ([`crate::WorkerOptions::rate_limit`]) the server's [`RateLimit`] middleware runs the
//! whole job within it. Over the limit (after waiting up to [`Limiter::wait`] in place), the
//! job is **snoozed**: back to the schedule after a backoff, not a failure, its retry count
//! unchanged. Once it has been snoozed for longer than [`Limiter::max_snooze`] (an hour
//! unless set), it fails with `Psychiq::OverLimit` and follows the retry rules.
//!
//! ```no_run
//! use std::time::Duration;
//! use psychiq::limits::{Limiter, Limits};
//! use psychiq::{JobResult, Worker, WorkerOptions};
//!
//! /// Three calls to the payment provider at once, across every process.
//! struct Charge { limits: Limits }
//!
//! impl Worker for Charge {
//!     type Args = (u64,);
//!     async fn perform(&self, (order,): (u64,)) -> JobResult {
//!         let stripe = Limiter::concurrent("stripe", 3);
//!         self.limits.within(&stripe, async { /* call the provider */ }).await?;
//!         Ok(())
//!     }
//! }
//!
//! /// Or for the whole job, as an option: 100 a minute in any minute.
//! struct Sync;
//! impl Worker for Sync {
//!     type Args = ();
//!     fn options() -> WorkerOptions {
//!         WorkerOptions::default()
//!             .rate_limit(Limiter::sliding_window("crm", 100, Duration::from_secs(60)))
//!     }
//!     async fn perform(&self, _: ()) -> JobResult { Ok(()) }
//! }
//! ```

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;

use crate::error::{Error, Result};
use crate::job::failure::JobError;
pub use crate::job::limit::{DEFAULT_LEASE, DEFAULT_MAX_SNOOZE, LimitKind, Limiter};
use crate::store::config::RedisConfig;
use crate::store::connection::Connection;
use crate::store::keys::Keys;
use crate::store::scripts::LIMIT_BUCKET;
use crate::store::scripts::LIMIT_CONCURRENT;
use crate::store::scripts::LIMIT_RENEW;
use crate::store::scripts::LIMIT_SLIDING;
use crate::store::scripts::LIMIT_WINDOW;

/// The longest backoff between two tries of a snoozed job (before Redis's own hint): long
/// enough that a crowd of waiting jobs costs little, short enough that none starves.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The milliseconds of Redis's clock, in every script (so processes' clocks do not matter).
const NOW: &str =
    "local t = redis.call('time'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n";

impl Limiter {
    /// Its state, under its kind too: a limiter renamed to another kind starts afresh
    /// rather than meeting a key of the wrong type.
    pub(crate) fn state_key(&self, keys: &Keys) -> String {
        let kind = serde_json::to_value(self.kind).ok();
        let kind = kind.as_ref().and_then(|k| k.as_str()).unwrap_or("limit");
        keys.key(&format!("limits:{kind}:{}", self.name))
    }

    /// Milliseconds between grants at a bucket's steady rate.
    pub(crate) fn step_ms(&self) -> f64 {
        self.interval.as_secs_f64() * 1000.0 / f64::from(self.size)
    }
}

/// The hash of limiters in use (name → settings as JSON), for the listing.
pub(crate) fn registry_key(keys: &Keys) -> String {
    keys.key("limits")
}

/// The hash of how often each limiter said no (name → count).
pub(crate) fn over_key(keys: &Keys) -> String {
    keys.key("limits:over")
}

/// Checks and takes room in limiters, through one Redis connection. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    conn: Connection,
    keys: Keys,
    /// Names already written to the listing by this handle.
    declared: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("namespace", &self.keys.namespace())
            .finish()
    }
}

/// What [`Limits::acquire`] got.
#[derive(Debug)]
#[must_use = "a permit holds its place until released"]
pub enum Acquired {
    /// Room was taken; for a concurrent limiter, release the permit when done.
    Granted(Permit),
    /// Over the limit; try again after about this long.
    Over(Duration),
}

/// A place taken in a limiter. A concurrent place is renewed while the permit lives and let
/// go by [`Permit::release`] (or, failing that, when it is dropped); other kinds need
/// nothing.
#[derive(Debug)]
pub struct Permit {
    lease: Option<Lease>,
}

struct Lease {
    conn: Connection,
    key: String,
    id: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("id", &self.id)
            .finish()
    }
}

impl Permit {
    /// Lets the place go now.
    pub async fn release(mut self) {
        if let Some(lease) = self.lease.take() {
            lease.renewer.abort();
            let _: redis::RedisResult<u64> = redis::cmd("ZREM")
                .arg(&lease.key)
                .arg(&lease.id)
                .query_async(&mut lease.conn.clone())
                .await;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.renewer.abort();
            // Dropped unreleased (a panic, a cancelled future): let it go in the background;
            // if that cannot run, the lease lapses by itself.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _: redis::RedisResult<u64> = redis::cmd("ZREM")
                        .arg(&lease.key)
                        .arg(&lease.id)
                        .query_async(&mut lease.conn.clone())
                        .await;
                });
            }
        }
    }
}

impl Limits {
    /// Limits through `conn`, for keys in `keys`' namespace.
    pub fn new(conn: Connection, keys: Keys) -> Limits {
        Limits {
            conn,
            keys,
            declared: Arc::default(),
        }
    }

    /// Connects to Redis for limits in `namespace`.
    pub async fn connect(config: &RedisConfig, namespace: &str) -> Result<Limits> {
        Ok(Limits::new(config.connect().await?, config.keys(namespace)))
    }

    /// Limits through a client's connection (`None` for a test-mode client).
    pub fn for_client(client: &crate::Client) -> Option<Limits> {
        Some(Limits::new(
            client.redis_connection()?,
            client.keys().clone(),
        ))
    }

    /// Tries once to take room in `limiter`.
    pub async fn acquire(&self, limiter: &Limiter) -> Result<Acquired> {
        self.try_acquire(limiter)
            .await
            .map_err(|e| Error::Other(format!("rate limit {:?}: {e}", limiter.name)))
    }

    async fn try_acquire(&self, limiter: &Limiter) -> redis::RedisResult<Acquired> {
        self.declare(limiter).await;
        let key = limiter.state_key(&self.keys);
        let id = format!("{:x}", rand::random::<u64>());
        let (size, interval) = (
            limiter.size.to_string(),
            limiter.interval.as_millis().to_string(),
        );
        let args = match limiter.kind {
            LimitKind::Concurrent => vec![size, limiter.lease.as_millis().to_string(), id.clone()],
            LimitKind::Window => vec![size, interval],
            LimitKind::SlidingWindow => vec![size, interval, id.clone()],
            LimitKind::Bucket | LimitKind::Leaky => {
                let step = limiter.step_ms();
                let burst = if limiter.kind == LimitKind::Bucket {
                    limiter.size
                } else {
                    limiter.burst
                };
                let tolerance = step * f64::from(burst.saturating_sub(1));
                // Full precision: a billion a second is a step of a microsecond.
                vec![step.to_string(), tolerance.to_string()]
            }
        };
        let mut invocation = script_for(limiter.kind).key(&key);
        for arg in &args {
            invocation.arg(arg);
        }
        let wait_ms: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        if wait_ms > 0 {
            return Ok(Acquired::Over(Duration::from_millis(wait_ms as u64)));
        }
        let lease = (limiter.kind == LimitKind::Concurrent).then(|| Lease {
            renewer: tokio::spawn(renew(
                self.conn.clone(),
                key.clone(),
                id.clone(),
                limiter.lease,
            )),
            conn: self.conn.clone(),
            key,
            id,
        });
        Ok(Acquired::Granted(Permit { lease }))
    }

    /// Takes room in `limiter`, waiting up to its [`Limiter::wait`]; over the limit after
    /// that, the error is a snooze for the job (or, once the job has been snoozed for longer
    /// than [`Limiter::max_snooze`], a `Psychiq::OverLimit` failure).
    pub async fn acquire_for_job(&self, limiter: &Limiter) -> Result<Permit, JobError> {
        let deadline = tokio::time::Instant::now() + limiter.wait;
        loop {
            let hint = match self.try_acquire(limiter).await {
                Ok(Acquired::Granted(permit)) => return Ok(permit),
                Ok(Acquired::Over(hint)) => hint,
                // Redis unreachable: try the job again later rather than run it unlimited.
                Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                    tracing::warn!(limiter = limiter.name, error = %e, "cannot check a rate limit; snoozing the job");
                    return Err(over_limit(limiter, Duration::from_secs(5)));
                }
                // Redis refused the check (a key of another type, a script error): a
                // failure that says so, retried as usual, not an endless snooze.
                Err(e) => {
                    return Err(JobError::new(
                        "Psychiq::LimitError",
                        format!("rate limit {:?} could not be checked: {e}", limiter.name),
                    ));
                }
            };
            let now = tokio::time::Instant::now();
            if now + hint > deadline {
                self.count_over(limiter).await;
                return Err(over_limit(limiter, hint));
            }
            tokio::time::sleep(hint.min(deadline - now)).await;
        }
    }

    /// Runs `work` within `limiter`: takes room (see [`Limits::acquire_for_job`]), awaits
    /// `work`, lets the room go. `limits.within(&l, async { ... }).await?` in `perform`.
    pub async fn within<T>(
        &self,
        limiter: &Limiter,
        work: impl Future<Output = T>,
    ) -> Result<T, JobError> {
        let permit = self.acquire_for_job(limiter).await?;
        let out = work.await;
        permit.release().await;
        Ok(out)
    }

    /// Counts a job sent away by `limiter` (snoozed or failed), for the listing.
    async fn count_over(&self, limiter: &Limiter) {
        let _: redis::RedisResult<i64> = redis::cmd("HINCRBY")
            .arg(over_key(&self.keys))
            .arg(&limiter.name)
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await;
    }

    /// Writes `limiter` to the listing, once per handle (again if the write failed).
    async fn declare(&self, limiter: &Limiter) {
        if self.declared.lock().unwrap().contains(&limiter.name) {
            return;
        }
        let json = serde_json::to_string(limiter).unwrap_or_default();
        let written: redis::RedisResult<()> = redis::cmd("HSET")
            .arg(registry_key(&self.keys))
            .arg(&limiter.name)
            .arg(json)
            .query_async(&mut self.conn.clone())
            .await;
        if written.is_ok() {
            self.declared.lock().unwrap().insert(limiter.name.clone());
        }
    }
}

/// The script that checks and takes room in a limiter of `kind`, each starting with [`NOW`].
fn script_for(kind: LimitKind) -> &'static Script {
    static SCRIPTS: LazyLock<[Script; 4]> = LazyLock::new(|| {
        [LIMIT_CONCURRENT, LIMIT_WINDOW, LIMIT_SLIDING, LIMIT_BUCKET]
            .map(|body| Script::new(&format!("{NOW}{body}")))
    });
    match kind {
        LimitKind::Concurrent => &SCRIPTS[0],
        LimitKind::Window => &SCRIPTS[1],
        LimitKind::SlidingWindow => &SCRIPTS[2],
        LimitKind::Bucket | LimitKind::Leaky => &SCRIPTS[3],
    }
}

/// Renews a lease every third of its life until aborted.
async fn renew(conn: Connection, key: String, id: String, lease: Duration) {
    static S: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{NOW}{LIMIT_RENEW}")));
    loop {
        tokio::time::sleep(lease / 3).await;
        let renewed: redis::RedisResult<i64> = S
            .key(&key)
            .arg(lease.as_millis() as u64)
            .arg(&id)
            .invoke_async(&mut conn.clone())
            .await;
        if let Ok(0) = renewed {
            tracing::warn!(
                key,
                "a rate-limit lease lapsed while held (Redis unreachable, or the process stalled); others may take its place"
            );
        }
    }
}

/// Whether the running job has been snoozed for longer than `limiter` allows.
fn past_max_snooze(limiter: &Limiter) -> bool {
    let since = crate::job::context::current()
        .and_then(|job| job.field("snoozed_at").and_then(|v| v.as_f64()));
    since.is_some_and(|since| crate::clock::now_secs() - since > limiter.max_snooze.as_secs_f64())
}

/// The error for a job over `limiter`: a snooze with backoff, or a failure once it has
/// been snoozed for longer than the limiter allows.
fn over_limit(limiter: &Limiter, hint: Duration) -> JobError {
    if limiter.kind == LimitKind::Window && !past_max_snooze(limiter) {
        // The hint names the window this job has a place in: no backoff on top, only a
        // spread across the first quarter of that window.
        let spread = limiter.interval.mul_f64(rand::random::<f64>() / 4.0);
        return JobError::snooze(hint + spread);
    }
    let job = crate::job::context::current();
    let snoozed = job
        .as_ref()
        .and_then(|j| j.field("snoozed").and_then(|v| v.as_u64()))
        .unwrap_or(0);
    if past_max_snooze(limiter) {
        return JobError::new(
            "Psychiq::OverLimit",
            format!(
                "rate limit {:?} kept this job waiting for more than {:?}; it fails and follows the retry rules",
                limiter.name, limiter.max_snooze
            ),
        );
    }
    // Backoff: half a second doubling per snooze, up to 10 s, jittered, and never sooner
    // than Redis's hint, itself spread by up to a fifth so that jobs told to come back at
    // a window's end do not all come back at once.
    let backoff = Duration::from_millis(500)
        .saturating_mul(1u32 << snoozed.min(5))
        .min(MAX_BACKOFF)
        .mul_f64(0.5 + rand::random::<f64>() / 2.0);
    let hint = hint.mul_f64(1.0 + rand::random::<f64>() / 5.0);
    JobError::snooze(hint.max(backoff))
}

#[cfg(feature = "server")]
pub use server::RateLimit;

#[cfg(feature = "server")]
mod server {
    use std::collections::HashMap;

    use super::{Limiter, Limits};
    use crate::Outcome;
    use crate::job::context::JobContext;
    use crate::job::middleware::{Next, ServerMiddleware};

    /// The server middleware that runs each job of a class with a
    /// [`crate::WorkerOptions::rate_limit`] within its limiter (added by the server when a
    /// registered worker declares one; other jobs go straight on).
    pub struct RateLimit {
        limits: Limits,
        by_class: HashMap<String, Limiter>,
    }

    impl RateLimit {
        pub(crate) fn new(limits: Limits, by_class: HashMap<String, Limiter>) -> RateLimit {
            RateLimit { limits, by_class }
        }
    }

    impl ServerMiddleware for RateLimit {
        async fn call(&self, job: &JobContext, next: Next<'_>) -> Outcome {
            let Some(limiter) = self.by_class.get(job.class()) else {
                return next.run().await;
            };
            // The chain runs with the job as the current context, which `over_limit` reads.
            match self.limits.acquire_for_job(limiter).await {
                Ok(permit) => {
                    let outcome = next.run().await;
                    permit.release().await;
                    outcome
                }
                Err(over) => over.into_outcome(),
            }
        }
    }
}

/// A limiter as the API reads it from Redis: its settings and how much of it is in use.
#[cfg(feature = "api")]
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct LimitSummary {
    /// Its settings, as a process that used it last wrote them.
    pub limiter: Limiter,
    /// How much is taken now: holders (concurrent), grants in the current window, or a
    /// bucket's level, out of its size.
    pub in_use: u64,
    /// How many jobs it has sent away (snoozed, or failed after `max_snooze`).
    pub over: u64,
    /// Why its state could not be read (its key holds another type of value), naming it.
    pub unreadable: Option<String>,
}
