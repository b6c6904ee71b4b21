//! Groups: per-key concurrency across the fleet, taken in turn (see the README's groups).
//!
//! A grouped job is pushed to its queue like any other job, carrying `psychiq_group` (and
//! maybe `psychiq_group_limit`); the fetch script (`group_common.lua`, prepended to
//! `fetch.lua`) routes it from the queue's tail to its group's list and takes groups with
//! room in turn, one job each per pass, holding the job's jid in the group's running set
//! under a lease. [`GroupSlots`], around every grouped job, renews that lease while the job
//! runs and gives the slot up when its run ends, however it ends, so the group's next job
//! can start; a crashed process's job comes back through its queue's list (recovery), is
//! routed to the front of its group and gives its old slot up. Groups need Sidekiq's layout.

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::Value;

use crate::job::builder::GROUP_FIELD;
use crate::store::connection::Connection;
use crate::store::keys::Keys;

/// How often a running grouped job's lease (90 s, `GROUP_LEASE` in the Lua) is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(20);

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(crate::store::scripts::GROUP_RELEASE));

/// The server middleware that keeps a grouped job's slot while it runs and gives it up
/// when it ends. A job without `psychiq_group` passes with a substring search.
pub struct GroupSlots {
    conn: Connection,
    keys: Keys,
    /// Told when a slot is given up, so this process's fetch looks again at once.
    freed: std::sync::Arc<tokio::sync::Notify>,
}

impl GroupSlots {
    pub(crate) fn new(
        conn: Connection,
        keys: Keys,
        freed: std::sync::Arc<tokio::sync::Notify>,
    ) -> GroupSlots {
        GroupSlots { conn, keys, freed }
    }
}

impl crate::job::middleware::ServerMiddleware for GroupSlots {
    fn wants(&self, payload: &str) -> bool {
        payload.contains("\"psychiq_group\"")
    }

    async fn call(
        &self,
        job: &crate::context::JobContext,
        next: crate::job::middleware::Next<'_>,
    ) -> crate::Outcome {
        let Some(group) = job.field(GROUP_FIELD).and_then(Value::as_str) else {
            return next.run().await;
        };
        let args = [
            self.keys.prefix().to_string(),
            job.queue().to_string(),
            group.to_string(),
            job.jid().to_string(),
        ];
        // Renewed beside the run, in this task: dropped with it however the run ends (a
        // panic, an abort at shutdown: the slot then comes back when its lease ends).
        let renew = async {
            let mut conn = self.conn.clone();
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let mut renew = SCRIPT.prepare_invoke();
                renew.arg(&args).arg("renew");
                let _: redis::RedisResult<i64> = renew.invoke_async(&mut conn).await;
            }
        };
        let outcome = tokio::select! {
            outcome = next.run() => outcome,
            () = renew => unreachable!("the renewal never ends"),
        };
        // Until it works, before the job is acknowledged: a slot never given up would hold
        // the group until its lease ends, and a group left out of the round would wait for
        // its next push.
        let mut outage = crate::store::outage::Outage::new("giving up a group's slot");
        let _ = crate::store::outage::until_cured(&mut outage, || {
            let (mut conn, args) = (self.conn.clone(), args.clone());
            async move {
                let mut release = SCRIPT.prepare_invoke();
                release.arg(&args);
                release.invoke_async::<i64>(&mut conn).await
            }
        })
        .await;
        self.freed.notify_one();
        outcome
    }
}
