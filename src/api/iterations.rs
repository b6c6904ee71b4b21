//! Iterable jobs in progress: their cursors, and cancelling one.

use super::Api;
use crate::extensions::iteration::*;

impl Api {
    /// The unfinished iterations, most recently stepped first, up to `limit`.
    pub async fn iterations(&self, limit: usize) -> crate::Result<Vec<IterationStatus>> {
        let keys = self.keys();
        let entries: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZREVRANGE")
                    .arg(index_key(keys))
                    .arg(0)
                    .arg(limit.max(1) as i64 - 1)
                    .arg("WITHSCORES"),
            )
            .await?;
        // Every walk's state in one round trip.
        let mut pipe = redis::pipe();
        let names: Vec<String> = entries
            .iter()
            .map(|(jid, _)| state_key(keys, jid))
            .collect();
        for (jid, _) in &entries {
            pipe.cmd("HMGET")
                .arg(state_key(keys, jid))
                .arg("c")
                .arg("cancelled")
                .arg("done");
        }
        type State = (Option<String>, Option<String>, Option<String>);
        let states: Vec<std::result::Result<State, String>> =
            self.query_rows(&mut pipe, 1, &names).await?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for ((jid, updated_at), state) in entries.into_iter().zip(states) {
            let (cursor, cancelled, done) = match state {
                Ok(state) => state,
                Err(unreadable) => {
                    // Shown, not a failure of the whole list.
                    out.push(IterationStatus {
                        jid,
                        cursor: None,
                        updated_at,
                        cancelled: false,
                        unreadable: Some(unreadable),
                    });
                    continue;
                }
            };
            if done.is_some() || (cursor.is_none() && cancelled.is_none()) {
                // Finished, or its state expired (a job deleted or dead long ago).
                gone.push(jid);
                continue;
            }
            out.push(IterationStatus {
                jid,
                cursor,
                updated_at,
                cancelled: cancelled.is_some(),
                unreadable: None,
            });
        }
        if !gone.is_empty() {
            let _: u64 = self
                .query(redis::cmd("ZREM").arg(index_key(keys)).arg(&gone))
                .await?;
        }
        Ok(out)
    }

    /// Cancels the iterable job `jid`: after its running step, or before its first.
    /// Returns whether it had already been cancelled.
    ///
    /// A jid that is neither walking nor waiting in a queue, the schedule or the retries
    /// is refused with [`crate::Error::NotFound`] (a typo would otherwise leave a mark
    /// for 30 days).
    pub async fn cancel_iteration(&self, jid: &str) -> crate::Result<bool> {
        let key = state_key(self.keys(), jid);
        if !self.iteration_known(jid, &key).await? {
            return Err(crate::Error::NotFound(format!(
                "no job {jid:?} is iterating, queued, scheduled or retrying; `psychiq iterations` lists the walks in progress"
            )));
        }
        let mut pipe = redis::pipe();
        pipe.hset_nx(&key, "cancelled", crate::clock::now_secs())
            .expire(&key, UNFINISHED_TTL_SECS as i64)
            .ignore();
        let (newly,): (bool,) = self.query_pipe(&pipe).await?;
        Ok(!newly)
    }

    /// Whether job `jid` has a walk's state, or waits to run (so it may start one).
    async fn iteration_known(&self, jid: &str, key: &str) -> crate::Result<bool> {
        let (state, indexed): (bool, Option<f64>) = self
            .query_pipe(
                redis::pipe()
                    .exists(key)
                    .zscore(index_key(self.keys()), jid),
            )
            .await?;
        if state || indexed.is_some() {
            return Ok(true);
        }
        if self
            .running()
            .await?
            .iter()
            .any(|work| work.payload["jid"] == jid)
        {
            return Ok(true);
        }
        for kind in [crate::api::SetKind::Scheduled, crate::api::SetKind::Retry] {
            if self.set_find(kind, jid).await?.is_some() {
                return Ok(true);
            }
        }
        for queue in self.queues().await? {
            if self.find_in_queue(&queue.name, jid).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
