//! Unique jobs, as Sidekiq Enterprise's `unique_for`: while a job with the same class,
//! queue and arguments is enqueued, scheduled, retrying or (by default) running, pushing it
//! again writes nothing and returns the pending job's jid.
//!
//! **The lock.** A job with `unique_for` carries `unique_key` (a SHA-1 of its class, queue
//! and arguments as canonical JSON, object keys sorted, or of what a key function of the
//! client's gives) and `unique_until` in its payload. The client pushes it with one Lua
//! call that sets `NAMESPACE:unique:KEY` to the jid (`SET NX EX`) and, only if that worked,
//! writes the job, so a lock never exists without its job nor a second job beside the lock.
//! The lock always has a TTL: `unique_for`, plus the wait of a scheduled job, so a crash,
//! a lost job or a flushed queue can block pushes for at most that long.
//!
//! **Unlocking** ([`UniqueUntil`]): on success (the default: also when the job is discarded
//! or skipped; a failure keeps the lock while the job waits in the retry set; death, or
//! removal by hand, lets it go), at start,
//! or only by expiry. [`UniqueUnlock`], a server middleware, does it, deleting the lock only
//! while it still names this job's jid. Unlocks are written in batches by a task of their
//! own; those not yet written when the process exits (or while Redis is unreachable) are
//! left to the TTL. A job that keeps failing for longer than `unique_for` loses its lock
//! while it waits for a retry, so pick `unique_for` longer than a job's retries take.

#[cfg(feature = "server")]
pub use server::UniqueUnlock;

#[cfg(feature = "server")]
mod server {
    use std::sync::LazyLock;

    use redis::Script;
    use tokio::sync::{mpsc, oneshot};

    use crate::Outcome;
    use crate::job::context::JobContext;
    use crate::job::middleware::{Next, ServerMiddleware};
    use crate::job::unique::{UniqueUntil, lock_key};
    use crate::store::connection::Connection;
    use crate::store::keys::Keys;
    use crate::store::outage::{Outage, until_cured};
    use crate::store::scripts::UNIQUE_UNLOCK;

    /// Unlocks written in one call at most.
    const UNLOCK_BATCH: usize = 1_000;

    /// A lock to let go: its key, the jid it must still hold, and who waits for it.
    type Unlock = (String, String, oneshot::Sender<()>);

    /// The server middleware that lets unique jobs' locks go (see the module docs). Every
    /// server adds it, near the front of the chain. A job without `unique_key` in its
    /// payload (found by a substring search) goes straight on, unboxed. Unlocks go to one
    /// task that writes whatever has gathered in one call, so a busy server pays a fraction
    /// of a round trip per job; a job waits for its unlock before it is acknowledged, so a
    /// crash between the two cannot leave the lock of a finished job behind.
    pub struct UniqueUnlock {
        keys: Keys,
        unlocks: mpsc::UnboundedSender<Unlock>,
    }

    impl UniqueUnlock {
        /// A middleware unlocking through `conn`, for keys in `keys`' namespace; starts its
        /// unlocking task (it ends with the middleware).
        pub(crate) fn new(conn: Connection, keys: Keys) -> UniqueUnlock {
            let (unlocks, pending) = mpsc::unbounded_channel();
            tokio::spawn(unlock_batches(pending, conn));
            UniqueUnlock { keys, unlocks }
        }

        /// Lets the lock go; completes once it is written (or could not be).
        async fn unlock(&self, job: &JobContext, unique_key: &str) {
            let (done, written) = oneshot::channel();
            // The task outlives the server's jobs; if it is gone, the TTL lets the lock go.
            let sent = self.unlocks.send((
                lock_key(&self.keys, unique_key),
                job.jid().to_string(),
                done,
            ));
            if sent.is_ok() {
                let _ = written.await;
            }
        }
    }

    /// Lets locks go in batches until every sender is gone.
    async fn unlock_batches(mut pending: mpsc::UnboundedReceiver<Unlock>, conn: Connection) {
        static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(UNIQUE_UNLOCK));
        let mut batch: Vec<Unlock> = Vec::new();
        while pending.recv_many(&mut batch, UNLOCK_BATCH).await > 0 {
            let mut invocation = SCRIPT.prepare_invoke();
            for (lock, jid, _) in &batch {
                invocation.key(lock).arg(jid);
            }
            // Until Redis answers, as acknowledgements are written: the jobs wait for it.
            let mut outage = Outage::new("releasing unique jobs' locks");
            let released = until_cured(&mut outage, || {
                let mut conn = conn.clone();
                let invocation = &invocation;
                async move { invocation.invoke_async::<u64>(&mut conn).await }
            })
            .await;
            if let Err(e) = released {
                // Their TTLs let them go in the end; say why they linger.
                tracing::warn!(count = batch.len(), error = %e, "could not release unique jobs' locks; they expire with their TTL");
            }
            for (_, _, done) in batch.drain(..) {
                let _ = done.send(());
            }
        }
    }

    impl ServerMiddleware for UniqueUnlock {
        fn wants(&self, payload: &str) -> bool {
            payload.contains("\"unique_key\"")
        }

        async fn call(&self, job: &JobContext, next: Next<'_>) -> Outcome {
            if !job.payload().contains("\"unique_key\"") {
                return next.run().await;
            }
            let Some(unique_key) = job.field("unique_key").and_then(|v| v.as_str()) else {
                return next.run().await;
            };
            match UniqueUntil::parse(job.field("unique_until").and_then(|v| v.as_str())) {
                UniqueUntil::Start => {
                    self.unlock(job, unique_key).await;
                    next.run().await
                }
                UniqueUntil::Success => {
                    let outcome = next.run().await;
                    if matches!(
                        outcome,
                        Outcome::Done | Outcome::Discarded(_) | Outcome::Skipped(_)
                    ) {
                        self.unlock(job, unique_key).await;
                    }
                    outcome
                }
                UniqueUntil::Expiry => next.run().await,
            }
        }
    }
}

/// A unique job's lock, as the API reads it.
#[cfg(feature = "api")]
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct UniqueLock {
    /// The job's `unique_key` (the lock is `NAMESPACE:unique:KEY`).
    pub key: String,
    /// The jid of the job that took it (which may have finished since, if it died, was
    /// removed by hand before this version, or its server was told to keep it).
    pub jid: String,
    /// Seconds until it lets go by itself.
    pub ttl_secs: i64,
}
