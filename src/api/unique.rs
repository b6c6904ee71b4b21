//! Unique jobs' locks: listing, reading and letting one go.

use crate::job::unique::lock_key;

use super::Api;
use crate::extensions::unique::*;

impl Api {
    /// Unique jobs' locks, up to `limit` (in no order: Redis's `SCAN`).
    pub async fn unique_locks(&self, limit: usize) -> crate::Result<Vec<UniqueLock>> {
        let prefix = lock_key(self.keys(), "");
        let pattern = format!("{}*", crate::store::keys::glob_escape(&prefix));
        let mut names: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1_000),
                )
                .await?;
            names.extend(page);
            cursor = next;
            if cursor == 0 || names.len() >= limit {
                break;
            }
        }
        names.truncate(limit);
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.get(name).ttl(name);
        }
        let replies: Vec<(Option<String>, i64)> = self.query_pipe(&pipe).await?;
        Ok(names
            .into_iter()
            .zip(replies)
            .filter_map(|(name, (jid, ttl))| {
                Some(UniqueLock {
                    key: name.strip_prefix(&prefix)?.to_string(),
                    jid: jid?,
                    ttl_secs: ttl,
                })
            })
            .collect())
    }

    /// The lock of `unique_key`, if it is held.
    pub async fn unique_lock(&self, unique_key: &str) -> crate::Result<Option<UniqueLock>> {
        let name = lock_key(self.keys(), unique_key);
        let mut pipe = redis::pipe();
        pipe.get(&name).ttl(&name);
        let (jid, ttl): (Option<String>, i64) = self.query_pipe(&pipe).await?;
        Ok(jid.map(|jid| UniqueLock {
            key: unique_key.to_string(),
            jid,
            ttl_secs: ttl,
        }))
    }

    /// Lets the lock of `unique_key` go, so the same job can be pushed again; `false` if
    /// it was not held.
    pub async fn unlock_unique(&self, unique_key: &str) -> crate::Result<bool> {
        let removed: u64 = self
            .query(redis::cmd("DEL").arg(lock_key(self.keys(), unique_key)))
            .await?;
        Ok(removed == 1)
    }
}
