//! Groups: the queues that have them, a queue's groups with their backlog, running jobs,
//! limit, rate and state; pausing, resuming, and setting a group's limit and rate.

use super::*;

/// One group of a queue (see [`crate::Job::group`]).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GroupSummary {
    /// The group's key.
    pub name: String,
    /// Jobs waiting in it.
    pub backlog: u64,
    /// Jobs of it running now (leases not yet ended).
    pub running: u64,
    /// How many of its jobs may run at once.
    pub limit: u64,
    /// At most how many of its jobs start in a window, if it has a rate.
    pub rate: Option<GroupRate>,
    /// Its jobs started in the rate's current window (0 without a rate).
    pub started_in_window: u64,
    /// Whether it is paused.
    pub paused: bool,
    /// When its last job arrived in it (epoch seconds).
    pub last_job_at: f64,
}

/// A group's rate (see [`crate::Job::group_rate`]): at most `count` starts in any window
/// of `per_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GroupRate {
    /// Starts allowed in a window.
    pub count: u64,
    /// The window, in seconds.
    pub per_secs: f64,
}

impl GroupRate {
    /// Reads the stored form, `COUNT/SECONDS`.
    fn parse(text: &str) -> Option<GroupRate> {
        let (count, per) = text.split_once('/')?;
        Some(GroupRate {
            count: count.parse().ok()?,
            per_secs: per.parse().ok()?,
        })
    }
}

impl std::fmt::Display for GroupRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} per {}s", self.count, self.per_secs)
    }
}

impl Api {
    /// The queues whose jobs carry groups, by name.
    pub async fn grouped_queues(&self) -> Result<Vec<String>> {
        let mut queues: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.grouped()))
            .await?;
        queues.sort_unstable();
        Ok(queues)
    }

    /// The `count` groups of `queue` whose jobs arrived last, newest first.
    pub async fn groups(&self, queue: &str, count: u64) -> Result<Vec<GroupSummary>> {
        let key = |kind: &str, group: Option<&str>| self.keys.group_key(kind, queue, group);
        // Running leases and rate windows are on Redis's clock.
        let mut first = redis::pipe();
        first
            .cmd("TIME")
            .cmd("ZREVRANGE")
            .arg(key("grpknown", None))
            .arg(0);
        first.arg(count.saturating_sub(1) as i64).arg("WITHSCORES");
        let ((secs, micros), known): ((u64, u64), Vec<(String, f64)>) =
            self.query_pipe(&first).await?;
        let now = secs as f64 + micros as f64 / 1e6;
        let mut pipe = redis::pipe();
        for (group, _) in &known {
            pipe.llen(key("grp", Some(group)))
                .zcount(key("grprun", Some(group)), now, "+inf")
                .hget(key("grplimit", None), group)
                .hget(key("grprate", None), group)
                .sismember(key("grppaused", None), group);
        }
        type Row = (u64, u64, Option<u64>, Option<String>, bool);
        let rows: Vec<Row> = if known.is_empty() {
            Vec::new()
        } else {
            self.query_pipe(&pipe).await?
        };
        // Each rate-limited group's starts within its window, in a second round trip that
        // only groups with a rate take.
        let rated: Vec<(usize, GroupRate)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| Some((i, GroupRate::parse(row.3.as_deref()?)?)))
            .collect();
        let mut started = vec![0u64; rows.len()];
        if !rated.is_empty() {
            let mut pipe = redis::pipe();
            for (i, rate) in &rated {
                pipe.zcount(
                    key("grpstarts", Some(&known[*i].0)),
                    now - rate.per_secs,
                    "+inf",
                );
            }
            let counts: Vec<u64> = self.query_pipe(&pipe).await?;
            for ((i, _), n) in rated.iter().zip(counts) {
                started[*i] = n;
            }
        }
        Ok(known
            .into_iter()
            .zip(rows)
            .zip(started)
            .map(
                |(((name, last), (backlog, running, limit, rate, paused)), started)| GroupSummary {
                    name,
                    backlog,
                    running,
                    limit: limit.unwrap_or(1),
                    rate: rate.as_deref().and_then(GroupRate::parse),
                    started_in_window: started,
                    paused,
                    last_job_at: last,
                },
            )
            .collect())
    }

    /// Pauses group `group` of `queue`: no server starts another of its jobs until
    /// [`Api::resume_group`]. Returns whether it was running.
    pub async fn pause_group(&self, queue: &str, group: &str) -> Result<bool> {
        Ok(self.group_admin(queue, group, "pause", 0).await? == 1)
    }

    /// Resumes a paused group; its jobs start in its next turn. Returns whether it was
    /// paused.
    pub async fn resume_group(&self, queue: &str, group: &str) -> Result<bool> {
        Ok(self.group_admin(queue, group, "resume", 0).await? == 1)
    }

    /// Sets how many of group `group`'s jobs may run at once (at least 1).
    pub async fn set_group_limit(&self, queue: &str, group: &str, limit: u64) -> Result<()> {
        self.group_admin(queue, group, "limit", limit.max(1))
            .await?;
        Ok(())
    }

    /// Sets group `group`'s rate: at most `count` of its jobs start in any window of `per`
    /// (see [`crate::Job::group_rate`]); `None` (or a count of 0) lifts it for good: later
    /// pushes that name a rate do not set one again.
    pub async fn set_group_rate(
        &self,
        queue: &str,
        group: &str,
        rate: Option<(u64, std::time::Duration)>,
    ) -> Result<()> {
        let text = match rate {
            Some((count, per)) if count > 0 && !per.is_zero() => {
                format!("{count}/{}", per.as_secs_f64())
            }
            // Kept as a mark: later pushes naming a rate do not set one again.
            _ => "none".to_string(),
        };
        self.group_admin(queue, group, "rate", text).await?;
        Ok(())
    }

    async fn group_admin(
        &self,
        queue: &str,
        group: &str,
        verb: &str,
        value: impl redis::ToRedisArgs,
    ) -> Result<i64> {
        if self.keys.is_cluster() {
            return Err(Error::Config(
                "groups are not available in the cluster layout yet".into(),
            ));
        }
        self.query(
            redis::cmd("EVAL")
                .arg(crate::store::scripts::GROUP_ADMIN)
                .arg(0)
                .arg(self.keys.prefix())
                .arg(queue)
                .arg(group)
                .arg(verb)
                .arg(value),
        )
        .await
    }
}
