//! The server middleware that counts each batch job's outcome, and fires the callbacks the
//! count completes, with the batch script.

use std::sync::{Arc, LazyLock};

use redis::Script;

use super::*;
use crate::Outcome;
use crate::job::context::JobContext;
use crate::job::failure::JobError;
use crate::job::middleware::{Next, ServerMiddleware};
use crate::store::errors::explain;
use crate::store::outage::{Outage, until_cured};
use crate::store::scripts::BATCH_OUTCOME;

/// The server middleware that counts each batch job's outcome (success or failure;
/// deaths are counted where the dead job is written). A job without `bid` goes
/// straight on.
pub struct BatchCounter {
    counter: Arc<Counter>,
}

/// What counts outcomes: the connection and the namespace.
pub(crate) struct Counter {
    conn: Connection,
    keys: Keys,
}

impl Counter {
    /// Counts `kind` for `jid` in `bid`, trying again while Redis is unreachable. An
    /// error that waiting will not cure (the bid names a key that is not a batch's
    /// hash, say) is returned, for the job to fail with.
    pub(crate) async fn count(&self, bid: &str, jid: &str, kind: &str) -> redis::RedisResult<()> {
        static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(BATCH_OUTCOME));
        let mut outage = Outage::new("counting a batch job's outcome");
        // Until it works, as failures are written: the job is acknowledged only after
        // its batch knows, so an uncounted job cannot leave it open.
        until_cured(&mut outage, || {
            let mut conn = self.conn.clone();
            async move {
                SCRIPT
                    .arg(self.keys.prefix())
                    .arg(bid)
                    .arg(jid)
                    .arg(kind)
                    .arg(crate::clock::now_secs())
                    .arg(DONE_TTL.as_secs())
                    .arg(IDLE_TTL.as_secs())
                    .invoke_async::<i64>(&mut conn)
                    .await
            }
        })
        .await
        .map(|_| ())
    }
}

impl BatchCounter {
    pub(crate) fn new(conn: Connection, keys: Keys) -> BatchCounter {
        BatchCounter {
            counter: Arc::new(Counter { conn, keys }),
        }
    }
}

impl ServerMiddleware for BatchCounter {
    fn wants(&self, payload: &str) -> bool {
        payload.contains("\"bid\"")
    }

    async fn call(&self, job: &JobContext, next: Next<'_>) -> Outcome {
        if !job.payload().contains("\"bid\"") {
            return next.run().await;
        }
        let Some(bid) = job.field("bid").and_then(Value::as_str) else {
            return next.run().await;
        };
        let outcome = next.run().await;
        let kind = match &outcome {
            // A cancelled job dies for its batch in the processor's farewell.
            Outcome::Snoozed(_) | Outcome::Cancelled => return outcome,
            Outcome::Failed(_) => "failure",
            _ => "success",
        };
        match self.counter.count(bid, job.jid(), kind).await {
            Ok(()) => outcome,
            // The job fails into its retries, with the cause named.
            Err(e) => Outcome::Failed(JobError::new(
                "Psychiq::BatchError",
                format!(
                    "counting this job's {kind} in batch {bid:?} failed: {e} ({}); is {bid:?} a batch's bid?",
                    explain(&e)
                ),
            )),
        }
    }
}
