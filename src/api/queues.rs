//! Queues: their sizes and latencies, their jobs, pausing, deleting a job and clearing one.

use super::*;
use crate::job::status::End;

/// One queue's size and latency.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct QueueSummary {
    /// The queue name, without `queue:`.
    pub name: String,
    /// Jobs waiting, those with a priority included.
    pub size: u64,
    /// Of those, the jobs waiting with a priority ([`crate::Job::priority`]).
    pub with_priority: u64,
    /// Seconds the oldest waiting job has waited (its `enqueued_at`).
    pub latency: f64,
    /// Whether it is paused (servers take nothing from it; see [`Api::pause_queue`]).
    pub paused: bool,
}

impl Api {
    /// Every queue in the `queues` set, sorted by name, with size and latency.
    pub async fn queues(&self) -> Result<Vec<QueueSummary>> {
        let mut names: Vec<Vec<u8>> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.queues()))
            .await?;
        names.sort();
        let mut pipe = redis::pipe();
        for name in &names {
            let key = self.raw_queue_key(name);
            pipe.llen(&key)
                .lindex(&key, -1)
                .sismember(self.keys.paused(), name)
                .sismember(self.keys.prioritized(), name);
        }
        let rows: Vec<(u64, Option<Vec<u8>>, bool, bool)> = self.query_pipe(&pipe).await?;
        // Priority lists are read only for the queues that have them.
        let mut urgent = Vec::with_capacity(names.len());
        for (name, (_, _, _, prioritized)) in names.iter().zip(&rows) {
            urgent.push(if *prioritized {
                self.priority_size(name).await?
            } else {
                0
            });
        }
        Ok(names
            .into_iter()
            .zip(rows)
            .zip(urgent)
            .map(
                |((name, (size, oldest, paused, _)), with_priority)| QueueSummary {
                    latency: oldest.map_or(0.0, |raw| JobRecord::new(raw, None, None).latency()),
                    name: escape(&name).into_owned(),
                    size: size + with_priority,
                    with_priority,
                    paused,
                },
            )
            .collect())
    }

    /// Pauses `queue` (named as [`Api::queues`] shows it): from their next fetch, within a
    /// second, no server takes its jobs, which stay in it, until [`Api::unpause_queue`].
    /// Kept in Redis (the `paused` set, as Sidekiq Pro keeps it), so it outlasts restarts.
    /// A queue that does not exist yet may be paused too. Returns whether it was running.
    pub async fn pause_queue(&self, queue: &str) -> Result<bool> {
        self.change_paused("SADD", queue).await
    }

    /// Lets servers take from `queue` again; returns whether it was paused.
    pub async fn unpause_queue(&self, queue: &str) -> Result<bool> {
        self.change_paused("SREM", queue).await
    }

    /// `SADD` or `SREM` of `queue` in the paused set (and in the cluster layout in the
    /// queue's own, which fetch reads); whether that changed the paused set.
    pub(super) async fn change_paused(&self, command: &str, queue: &str) -> Result<bool> {
        let mut pipe = redis::pipe();
        pipe.cmd(command)
            .arg(self.keys.paused())
            .arg(&*unescape(queue));
        if self.keys.is_cluster() {
            pipe.cmd(command)
                .arg(self.keys.paused_of(queue))
                .arg(queue)
                .ignore();
        }
        let (changed,): (u64,) = self.query_pipe(&pipe).await?;
        Ok(changed == 1)
    }

    /// The paused queues, sorted (escaped as [`Api::queues`] shows names).
    pub async fn paused_queues(&self) -> Result<Vec<String>> {
        let mut names: Vec<Vec<u8>> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.paused()))
            .await?;
        names.sort();
        Ok(names.iter().map(|n| escape(n).into_owned()).collect())
    }

    /// Up to `count` jobs of a queue from position `start`, the next to run last (as
    /// Sidekiq's dashboard lists them: newest first).
    pub async fn queue_jobs(&self, queue: &str, start: u64, count: u64) -> Result<Vec<JobRecord>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let raws: Vec<Vec<u8>> = self
            .query(
                redis::cmd("LRANGE")
                    .arg(self.queue_key(queue))
                    .arg(start)
                    .arg(start + count - 1),
            )
            .await?;
        Ok(raws
            .into_iter()
            .map(|raw| JobRecord::new(raw, None, Some(queue)))
            .collect())
    }

    /// Jobs waiting in a queue, those with a priority included.
    pub async fn queue_size(&self, queue: &str) -> Result<u64> {
        let name = unescape(queue);
        let mut pipe = redis::pipe();
        pipe.llen(self.queue_key(queue))
            .sismember(self.keys.prioritized(), &*name);
        let (plain, prioritized): (u64, bool) = self.query_pipe(&pipe).await?;
        if !prioritized {
            return Ok(plain);
        }
        Ok(plain + self.priority_size(&name).await?)
    }

    /// The priority lists of queue `name` (bytes), 9 first; none in the cluster layout.
    fn priority_keys(&self, name: &[u8]) -> Vec<Vec<u8>> {
        if self.keys.is_cluster() {
            return Vec::new();
        }
        (1..=9u8)
            .rev()
            .map(|p| {
                let mut key = self.keys.priority_queue("", p).into_bytes();
                key.extend_from_slice(name);
                key
            })
            .collect()
    }

    /// Jobs waiting in queue `name`'s priority lists (for a queue in `prioritized`).
    async fn priority_size(&self, name: &[u8]) -> Result<u64> {
        let mut pipe = redis::pipe();
        for key in self.priority_keys(name) {
            pipe.llen(key);
        }
        let sizes: Vec<u64> = self.query_pipe(&pipe).await?;
        Ok(sizes.iter().sum())
    }

    /// Whether a queue by this name is known (in the `queues` set) or holds jobs.
    pub async fn queue_exists(&self, queue: &str) -> Result<bool> {
        let mut pipe = redis::pipe();
        pipe.sismember(self.keys.queues(), &*unescape(queue))
            .exists(self.queue_key(queue));
        let (known, exists): (bool, bool) = self.query_pipe(&pipe).await?;
        Ok(known || exists)
    }

    /// The job of a queue with this jid, looking through its first 100,000 jobs (newest
    /// first), so a huge queue cannot make one request read it all.
    pub async fn find_in_queue(&self, queue: &str, jid: &str) -> Result<Option<JobRecord>> {
        const PAGE: u64 = 1_000;
        const MOST: u64 = 100_000;
        let mut start = 0;
        while start < MOST {
            let page = self.queue_jobs(queue, start, PAGE).await?;
            if let Some(found) = page.iter().find(|j| j.jid() == jid) {
                return Ok(Some(found.clone()));
            }
            if (page.len() as u64) < PAGE {
                return Ok(None);
            }
            start += PAGE;
        }
        Ok(None)
    }

    /// Deletes one job from its queue; `false` if it was no longer there. A batch job dies
    /// for its batch and a unique job's lock goes, as on every path that takes a job away.
    pub async fn delete_from_queue(&self, job: &JobRecord) -> Result<bool> {
        self.remove_from_queue(job, &End::Discarded { reason: "deleted" })
            .await
    }

    /// Removes one job from its queue, leaving as `end` says; `false` if it was no longer
    /// there.
    pub(super) async fn remove_from_queue(&self, job: &JobRecord, end: &End<'_>) -> Result<bool> {
        let removed: u64 = self
            .query(
                redis::cmd("LREM")
                    .arg(self.queue_key(job.queue()))
                    .arg(1)
                    .arg(job.raw_bytes()),
            )
            .await?;
        if removed == 1 {
            self.farewell([job.raw_bytes()], end).await?;
        }
        Ok(removed == 1)
    }

    /// Deletes a queue and every job in it; returns how many jobs it held. Its batch jobs
    /// die for their batches and its unique jobs' locks go.
    pub async fn clear_queue(&self, queue: &str) -> Result<u64> {
        let name = unescape(queue);
        let mut cleared = 0;
        // Its priority lists first, then its own.
        let mut lists = self.priority_keys(&name);
        lists.push(self.queue_key(queue));
        let mut asides = Vec::new();
        for key in &lists {
            asides.extend(self.set_aside(key).await?);
        }
        let _: () = self
            .query(redis::cmd("SREM").arg(self.keys.queues()).arg(&*name))
            .await?;
        for aside in asides {
            cleared += self.part_with(&aside, "LRANGE").await?;
        }
        Ok(cleared)
    }

    /// Renames `key` to a key of its own (in the same slot), so what is pushed meanwhile is
    /// not cleared with it; `None` if there was no such key. The copy expires in a day, in
    /// case the clearing is interrupted.
    pub(super) async fn set_aside(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut aside = key.to_vec();
        aside.extend_from_slice(format!(":clearing:{}", payload::new_jid()).as_bytes());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .exists(key)
            .cmd("RENAME")
            .arg(key)
            .arg(&aside)
            .ignore()
            .expire(&aside, 86_400)
            .ignore();
        match pipe.query_async::<(bool,)>(&mut self.conn.clone()).await {
            Ok((true,)) => Ok(Some(aside)),
            Ok((false,)) => Ok(None),
            // RENAME of a key that is gone (cleared by someone else meanwhile).
            Err(e) if e.to_string().contains("no such key") => Ok(None),
            Err(e) => Err(self.config.redis_error(e)),
        }
    }

    /// Reads the list or sorted set `aside` page by page (`read` is `LRANGE` or `ZRANGE`),
    /// writes each page's farewells, then deletes it; returns how many jobs it held.
    pub(super) async fn part_with(&self, aside: &[u8], read: &str) -> Result<u64> {
        const PAGE: i64 = 1_000;
        let mut start = 0;
        loop {
            let page: Vec<Vec<u8>> = self
                .query(redis::cmd(read).arg(aside).arg(start).arg(start + PAGE - 1))
                .await?;
            let end = End::Discarded {
                reason: "its queue was cleared",
            };
            self.farewell(page.iter().map(Vec::as_slice), &end).await?;
            start += page.len() as i64;
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        let _: () = self.query(redis::cmd("DEL").arg(aside)).await?;
        Ok(start as u64)
    }

    /// Writes the [`farewell`](crate::server::departure::farewell) of jobs that left for good.
    pub(super) async fn farewell<'a>(
        &self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
        end: &End<'_>,
    ) -> Result<()> {
        // Batches are counted where they can be: not in the cluster layout.
        let batches = !self.keys.is_cluster();
        let pipe = crate::server::departure::farewells(
            &self.keys,
            payloads,
            crate::clock::now_secs(),
            batches,
            end,
        );
        if pipe.cmd_iter().next().is_none() {
            return Ok(());
        }
        match pipe.query_async::<()>(&mut self.conn.clone()).await {
            Ok(()) => Ok(()),
            // A bid naming a key that is not a batch's: the job is gone all the same.
            Err(e) if !crate::store::errors::waiting_may_cure(&e) => {
                tracing::warn!(error = %e, "a removed job's batch or unique lock could not be updated");
                Ok(())
            }
            Err(e) => Err(self.config.redis_error(e)),
        }
    }
}
