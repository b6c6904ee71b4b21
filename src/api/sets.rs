//! The scheduled, retry and dead sets: paging, searching and finding jobs, and moving them (retry now, add to queue, delete, kill), one or all.

use super::*;
use crate::job::status::End;

impl Api {
    /// Jobs in a sorted set (in the cluster layout, in every queue's).
    pub async fn set_size(&self, kind: SetKind) -> Result<u64> {
        let mut pipe = redis::pipe();
        for (key, _) in self.set_keys(kind).await? {
            pipe.zcard(key);
        }
        let sizes: Vec<u64> = self.query_pipe(&pipe).await?;
        Ok(sizes.into_iter().sum())
    }

    /// Up to `count` jobs of a set from position `start`: scheduled and retries soonest
    /// first, dead newest first, as Sidekiq's dashboard shows them.
    pub async fn set_page(&self, kind: SetKind, start: u64, count: u64) -> Result<Vec<JobRecord>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let sets = self.set_keys(kind).await?;
        // One set is paged in Redis; several (the cluster layout) are merged here, each
        // read up to the end of the page.
        let (first, skip) = if sets.len() == 1 {
            (start, 0)
        } else {
            (0, start)
        };
        let mut pipe = redis::pipe();
        for (key, _) in &sets {
            pipe.cmd("ZRANGE")
                .arg(key)
                .arg(first)
                .arg(start + count - 1);
            if kind == SetKind::Dead {
                pipe.arg("REV");
            }
            pipe.arg("WITHSCORES");
        }
        let mut jobs = records(self.query_pipe(&pipe).await?, &sets);
        if sets.len() > 1 {
            sort_as_listed(kind, &mut jobs);
        }
        Ok(jobs
            .into_iter()
            .skip(skip as usize)
            .take(count as usize)
            .collect())
    }

    /// One `ZSCAN` step over a set with a `MATCH` pattern: the next cursor and the jobs.
    pub(super) async fn zscan(
        &self,
        (key, queue): &(String, Option<String>),
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<JobRecord>)> {
        let (next, rows): (u64, Vec<(Vec<u8>, f64)>) = self
            .query(
                redis::cmd("ZSCAN")
                    .arg(key)
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1_000),
            )
            .await?;
        let jobs = rows
            .into_iter()
            .map(|(raw, score)| JobRecord::new(raw, Some(score), queue.as_deref()))
            .collect();
        Ok((next, jobs))
    }

    /// Jobs of a set whose payload contains `text` (class, arguments, error, jid...).
    pub async fn set_search(
        &self,
        kind: SetKind,
        text: &str,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        let pattern = format!("*{}*", crate::store::keys::glob_escape(text));
        let mut found = Vec::new();
        'sets: for set in self.set_keys(kind).await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, jobs) = self.zscan(&set, cursor, &pattern).await?;
                found.extend(jobs);
                cursor = next;
                if found.len() >= limit {
                    break 'sets;
                }
                if cursor == 0 {
                    break;
                }
            }
        }
        sort_as_listed(kind, &mut found);
        found.truncate(limit);
        Ok(found)
    }

    /// The job of a set with this jid: a scan for members holding the jid, stopping at the
    /// first whose `jid` field is it (however the JSON is spaced).
    pub async fn set_find(&self, kind: SetKind, jid: &str) -> Result<Option<JobRecord>> {
        if jid.is_empty() {
            return Ok(None);
        }
        let pattern = format!("*{}*", crate::store::keys::glob_escape(jid));
        for set in self.set_keys(kind).await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, jobs) = self.zscan(&set, cursor, &pattern).await?;
                if let Some(job) = jobs.into_iter().find(|job| job.jid() == jid) {
                    return Ok(Some(job));
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(None)
    }

    /// The job of a set with this score and jid (Sidekiq's `SCORE-JID` key): one
    /// `ZRANGE … BYSCORE`, however large the set.
    pub async fn set_find_at(
        &self,
        kind: SetKind,
        score: f64,
        jid: &str,
    ) -> Result<Option<JobRecord>> {
        let score = score_text(score);
        let sets = self.set_keys(kind).await?;
        let mut pipe = redis::pipe();
        for (key, _) in &sets {
            pipe.cmd("ZRANGE")
                .arg(key)
                .arg(&score)
                .arg(&score)
                .arg("BYSCORE")
                .arg("WITHSCORES");
        }
        let found = records(self.query_pipe(&pipe).await?, &sets);
        Ok(found.into_iter().find(|job| job.jid() == jid))
    }

    /// A job of a set by `SCORE-JID` (as the dashboard links it; the score may be negative
    /// or infinite) or by jid alone.
    pub async fn set_find_key(&self, kind: SetKind, key: &str) -> Result<Option<JobRecord>> {
        if let Some((score, jid)) = split_key(key)
            && let Some(found) = self.set_find_at(kind, score, jid).await?
        {
            return Ok(Some(found));
        }
        // A jid of its own may look like a key (`42-nightly`): then it is the jid.
        self.set_find(kind, key).await
    }

    /// Moves a job of a set to its queue now. From the retry and dead sets its
    /// `retry_count` goes down by one first, as Sidekiq's "Retry Now" does, so the attempt
    /// does not count against its retries. `false` if it was no longer in the set.
    pub async fn retry_now(&self, kind: SetKind, job: &JobRecord) -> Result<bool> {
        self.move_to_queue(kind, job, kind != SetKind::Scheduled)
            .await
    }

    /// Moves a job of a set to its queue now, as it is ("Add to queue").
    pub async fn add_to_queue(&self, kind: SetKind, job: &JobRecord) -> Result<bool> {
        self.move_to_queue(kind, job, false).await
    }

    pub(super) async fn move_to_queue(
        &self,
        kind: SetKind,
        job: &JobRecord,
        uncount: bool,
    ) -> Result<bool> {
        // Rewritten field by field: what is not changed keeps its exact text (big integers).
        let rewrite = std::str::from_utf8(&job.raw)
            .ok()
            .and_then(|text| payload::Rewrite::parse(text).ok());
        let Some(mut item) = rewrite else {
            return Err(Error::Payload(format!(
                "the job is not a JSON object, so it cannot be queued; delete it instead: {}",
                crate::job::text::printable(job.raw())
            )));
        };
        if uncount && let Some(count) = item.get("retry_count").and_then(Value::as_i64) {
            // As Sidekiq: 0 becomes -1, so the next failure is counted as the first retry again.
            item.insert("retry_count".into(), Value::from(count - 1));
        }
        item.remove("at");
        item.insert(
            "enqueued_at".into(),
            payload::timestamp_value(crate::clock::now_secs()),
        );
        let new = item.to_json();
        static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(MOVE_TO_QUEUE));
        let mut invocation = SCRIPT.key(self.set_key_of(kind, job));
        invocation.key(self.queue_key(job.queue()));
        if !self.keys.is_cluster() {
            invocation.key(self.keys.queues());
        }
        let moved: u64 = invocation
            .arg(job.raw_bytes())
            .arg(new)
            .arg(&*unescape(job.queue()))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.redis_error(e))?;
        Ok(moved == 1)
    }

    /// Deletes a job from a set; `false` if it was no longer there. A batch job dies for
    /// its batch and a unique job's lock goes (a dead job's did already).
    pub async fn delete(&self, kind: SetKind, job: &JobRecord) -> Result<bool> {
        self.remove_from_set(kind, job, &End::Discarded { reason: "deleted" })
            .await
    }

    /// Removes a job from a set, leaving as `end` says (a dead job had its farewell when it
    /// died); `false` if it was no longer there.
    pub(super) async fn remove_from_set(
        &self,
        kind: SetKind,
        job: &JobRecord,
        end: &End<'_>,
    ) -> Result<bool> {
        let removed: u64 = self
            .query(
                redis::cmd("ZREM")
                    .arg(self.set_key_of(kind, job))
                    .arg(job.raw_bytes()),
            )
            .await?;
        if removed == 1 && kind != SetKind::Dead {
            self.farewell([job.raw_bytes()], end).await?;
        }
        Ok(removed == 1)
    }

    /// Moves a job of a set (or, with `kind = None`, of its queue) to the dead set.
    pub async fn kill(&self, kind: Option<SetKind>, job: &JobRecord) -> Result<bool> {
        if kind == Some(SetKind::Dead) {
            return Ok(false);
        }
        let now = crate::clock::now_secs();
        let (from, shape) = match kind {
            Some(kind) => (self.set_key_of(kind, job).into_bytes(), "set"),
            None => (self.queue_key(job.queue()), "list"),
        };
        static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(KILL));
        let moved: u64 = SCRIPT
            .key(from)
            .key(self.keys.dead_of(job.queue()))
            .arg(job.raw_bytes())
            .arg(job.raw_bytes())
            .arg(payload::timestamp_text(now))
            .arg(shape)
            .arg(payload::timestamp_text(now - DEAD_TIMEOUT_SECS))
            .arg(DEAD_MAX_JOBS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.redis_error(e))?;
        if moved == 1 {
            // Dead: it dies for its batch and lets its unique lock go, as a job that dies
            // after its last retry does.
            self.farewell([job.raw_bytes()], &End::Dead { error: "killed" })
                .await?;
        }
        Ok(moved == 1)
    }

    /// Retries every job of a set now; returns how many moved.
    pub async fn retry_all(&self, kind: SetKind) -> Result<u64> {
        self.for_all(
            kind,
            |api, job| async move { api.retry_now(kind, &job).await },
        )
        .await
    }

    /// Moves every job of the retry or scheduled set to the dead set.
    pub async fn kill_all(&self, kind: SetKind) -> Result<u64> {
        self.for_all(
            kind,
            |api, job| async move { api.kill(Some(kind), &job).await },
        )
        .await
    }

    /// Deletes a whole set (in the cluster layout, every queue's); returns how many jobs
    /// it held.
    pub async fn clear(&self, kind: SetKind) -> Result<u64> {
        let mut cleared = 0;
        for (key, _) in self.set_keys(kind).await? {
            if kind == SetKind::Dead {
                // Dead jobs had their farewell when they died.
                let mut pipe = redis::pipe();
                pipe.atomic().zcard(&key).del(&key).ignore();
                let (size,): (u64,) = self.query_pipe(&pipe).await?;
                cleared += size;
            } else if let Some(aside) = self.set_aside(key.as_bytes()).await? {
                cleared += self.part_with(&aside, "ZRANGE").await?;
            }
        }
        Ok(cleared)
    }

    pub(super) async fn for_all<F, Fut>(&self, kind: SetKind, action: F) -> Result<u64>
    where
        F: Fn(Api, JobRecord) -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let mut done = 0;
        // Jobs that cannot move (not JSON, say) stay where they are and are stepped over.
        let mut stuck = 0;
        loop {
            let page = self.set_page(kind, stuck, 100).await?;
            if page.is_empty() {
                return Ok(done);
            }
            let before = (done, stuck);
            for job in page {
                match action(self.clone(), job).await {
                    Ok(true) => done += 1,
                    Ok(false) => {}
                    Err(Error::Payload(_)) => stuck += 1,
                    Err(e) => return Err(e),
                }
            }
            if (done, stuck) == before {
                // Nothing moved and nothing was stepped over: stop rather than loop.
                return Ok(done);
            }
        }
    }
}
