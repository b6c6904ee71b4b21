//! Groups: a queue's groups with their backlog, running jobs, limit and state; pausing,
//! resuming and setting a group's limit.

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
    /// Whether it is paused.
    pub paused: bool,
    /// When its last job arrived in it (epoch seconds).
    pub last_job_at: f64,
}

impl Api {
    /// The `count` groups of `queue` whose jobs arrived last, newest first.
    pub async fn groups(&self, queue: &str, count: u64) -> Result<Vec<GroupSummary>> {
        let key = |kind: &str, group: Option<&str>| self.keys.group_key(kind, queue, group);
        let known: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZREVRANGE")
                    .arg(key("grpknown", None))
                    .arg(0)
                    .arg(count.saturating_sub(1) as i64)
                    .arg("WITHSCORES"),
            )
            .await?;
        let now = crate::clock::now_secs();
        let mut pipe = redis::pipe();
        for (group, _) in &known {
            pipe.llen(key("grp", Some(group)))
                .zcount(key("grprun", Some(group)), now, "+inf")
                .hget(key("grplimit", None), group)
                .sismember(key("grppaused", None), group);
        }
        let rows: Vec<(u64, u64, Option<u64>, bool)> = if known.is_empty() {
            Vec::new()
        } else {
            self.query_pipe(&pipe).await?
        };
        Ok(known
            .into_iter()
            .zip(rows)
            .map(
                |((name, last), (backlog, running, limit, paused))| GroupSummary {
                    name,
                    backlog,
                    running,
                    limit: limit.unwrap_or(1),
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

    async fn group_admin(&self, queue: &str, group: &str, verb: &str, limit: u64) -> Result<i64> {
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
                .arg(limit),
        )
        .await
    }
}
