//! The processes: their heartbeats, quieting and stopping them, the jobs they run, and where any job is now.

use super::*;

/// A server process, from its heartbeat.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// `hostname:pid:hex`.
    pub identity: String,
    /// The `info` JSON (hostname, pid, tag, concurrency, queues, started_at, version...).
    pub info: Value,
    /// Jobs running at the last beat.
    pub busy: u64,
    /// The last beat, float seconds.
    pub beat: f64,
    /// Whether it is quiet (takes no new jobs).
    pub quiet: bool,
    /// Resident memory in KB.
    pub rss: u64,
}

impl ProcessInfo {
    /// The queues it serves, as `a, b`; with capsules (Sidekiq 7's), each with its own:
    /// `default: a, b · reports (2): reports`.
    pub fn queues_text(&self) -> String {
        let names = |list: &Value| {
            list.as_array()
                .map(|q| {
                    q.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        match self.info["capsules"].as_object() {
            Some(capsules) if capsules.len() > 1 => capsules
                .iter()
                .map(|(name, capsule)| {
                    let queues: Vec<&str> = capsule["weights"]
                        .as_object()
                        .map(|w| w.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    format!("{name} ({}): {}", capsule["concurrency"], queues.join(", "))
                })
                .collect::<Vec<_>>()
                .join(" · "),
            _ => names(&self.info["queues"]),
        }
    }
}

/// A job running now, from a process's heartbeat.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunningWork {
    /// The process running it.
    pub process: String,
    /// The slot (Sidekiq's thread id).
    pub thread: String,
    /// The queue it came from.
    pub queue: String,
    /// When it started, seconds.
    pub run_at: f64,
    /// The job.
    pub payload: Value,
}

/// Where a job is now, as [`Api::locate`] finds it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Whereabouts {
    /// Running in a live process.
    Running(RunningWork),
    /// Taken by a process (in its in-progress hash) and about to run, or started since its
    /// last heartbeat: the process's identity and the job.
    Fetched {
        /// The process holding it.
        process: String,
        /// The job, and the queue it came from.
        job: JobRecord,
    },
    /// Waiting in a queue.
    Enqueued(JobRecord),
    /// In the schedule, to be enqueued at its score.
    Scheduled(JobRecord),
    /// In the retry set, to be retried at its score.
    Retrying(JobRecord),
    /// In the dead set.
    Dead(JobRecord),
}

impl Api {
    /// Live server processes (their heartbeat has not expired), by identity.
    pub async fn processes(&self) -> Result<Vec<ProcessInfo>> {
        let mut identities: Vec<Vec<u8>> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.key("processes")))
            .await?;
        identities.sort();
        let mut pipe = redis::pipe();
        for id in &identities {
            pipe.hgetall([self.keys.prefix().as_bytes(), id].concat());
        }
        let hashes: Vec<HashMap<Vec<u8>, Vec<u8>>> = self.query_pipe(&pipe).await?;
        Ok(identities
            .into_iter()
            .zip(hashes.into_iter().map(text_map))
            .filter(|(_, fields)| fields.contains_key("info"))
            .map(|(identity, fields)| {
                let number = |k: &str| fields.get(k).and_then(|v| v.parse::<f64>().ok());
                ProcessInfo {
                    info: serde_json::from_str(&fields["info"]).unwrap_or(Value::Null),
                    busy: number("busy").unwrap_or(0.0) as u64,
                    beat: number("beat").unwrap_or(0.0),
                    quiet: fields.get("quiet").is_some_and(|q| q == "true"),
                    rss: number("rss").unwrap_or(0.0) as u64,
                    identity: escape(&identity).into_owned(),
                }
            })
            .collect())
    }

    /// Asks a process to stop taking jobs (Sidekiq's `quiet!`, the `TSTP` signal).
    pub async fn quiet(&self, identity: &str) -> Result<()> {
        self.signal(identity, "TSTP").await
    }

    /// Asks a process to finish its jobs and exit (Sidekiq's `stop!`, `TERM`).
    pub async fn stop(&self, identity: &str) -> Result<()> {
        self.signal(identity, "TERM").await
    }

    pub(super) async fn signal(&self, identity: &str, signal: &str) -> Result<()> {
        let key = self.named_key(identity, "-signals");
        let mut pipe = redis::pipe();
        pipe.lpush(&key, signal).ignore().expire(&key, 60).ignore();
        self.query_pipe(&pipe).await
    }

    /// Jobs running now in every live process, longest running first.
    pub async fn running(&self) -> Result<Vec<RunningWork>> {
        let processes = self.processes().await?;
        self.running_of(&processes).await
    }

    /// Jobs running now in these processes (as [`Api::processes`] read them), longest
    /// running first: one round trip.
    pub async fn running_of(&self, processes: &[ProcessInfo]) -> Result<Vec<RunningWork>> {
        let mut pipe = redis::pipe();
        for p in processes {
            pipe.hgetall(self.named_key(&p.identity, ":work"));
        }
        let works: Vec<HashMap<Vec<u8>, Vec<u8>>> = self.query_pipe(&pipe).await?;
        let mut running = Vec::new();
        for (p, work) in processes.iter().zip(works.into_iter().map(text_map)) {
            for (thread, entry) in work {
                let Ok(entry) = serde_json::from_str::<Value>(&entry) else {
                    continue;
                };
                let payload = match &entry["payload"] {
                    Value::String(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
                    other => other.clone(),
                };
                running.push(RunningWork {
                    process: p.identity.clone(),
                    thread,
                    queue: entry["queue"].as_str().unwrap_or("").to_string(),
                    run_at: entry["run_at"].as_f64().unwrap_or(0.0),
                    payload,
                });
            }
        }
        running.sort_by(|a, b| a.run_at.total_cmp(&b.run_at));
        Ok(running)
    }

    /// Where job `jid` is now: running, in a queue, scheduled, retrying or dead; `None`
    /// when it is in none of them (it has succeeded, been discarded or deleted: Sidekiq's
    /// layout keeps no record of those). It looks where a job spends the least time first:
    /// the running jobs (one round trip), each queue's first 100,000 jobs, then the sets by
    /// a scan for the jid, so it costs a request of the dashboard, not of a hot path.
    pub async fn locate(&self, jid: &str) -> Result<Option<Whereabouts>> {
        let jid = jid.trim();
        if jid.is_empty() {
            return Ok(None);
        }
        if let Some(work) = self
            .running()
            .await?
            .into_iter()
            .find(|work| work.payload["jid"].as_str() == Some(jid))
        {
            return Ok(Some(Whereabouts::Running(work)));
        }
        let queues = self.queues().await?;
        for queue in &queues {
            if let Some(job) = self.find_in_queue(&queue.name, jid).await? {
                return Ok(Some(Whereabouts::Enqueued(job)));
            }
        }
        if let Some(fetched) = self.find_fetched(&queues, jid).await? {
            return Ok(Some(fetched));
        }
        for (kind, place) in [
            (
                SetKind::Scheduled,
                Whereabouts::Scheduled as fn(JobRecord) -> Whereabouts,
            ),
            (SetKind::Retry, Whereabouts::Retrying),
            (SetKind::Dead, Whereabouts::Dead),
        ] {
            if let Some(job) = self.set_find(kind, jid).await? {
                return Ok(Some(place(job)));
            }
        }
        Ok(None)
    }

    /// A job a process has taken into its in-progress hashes (one per queue) that its
    /// heartbeat does not list as running yet. The hashes hold at most a process's running
    /// and prefetched jobs, so every one is read in one round trip (`HVALS`), and only a
    /// payload holding the jid is parsed.
    async fn find_fetched(
        &self,
        queues: &[super::QueueSummary],
        jid: &str,
    ) -> Result<Option<Whereabouts>> {
        let owners: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys().inprogress_owners()))
            .await?;
        let places: Vec<(&String, &str)> = owners
            .iter()
            .flat_map(|owner| queues.iter().map(move |q| (owner, q.name.as_str())))
            .collect();
        if places.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for (owner, queue) in &places {
            pipe.cmd("HVALS").arg(self.keys().inprogress(owner, queue));
        }
        let held: Vec<Vec<Vec<u8>>> = self.query_pipe(&pipe).await?;
        let needle = jid.as_bytes();
        for ((owner, queue), payloads) in places.into_iter().zip(held) {
            for raw in payloads {
                if !raw.windows(needle.len()).any(|w| w == needle) {
                    continue;
                }
                let job = JobRecord::new(raw, None, Some(queue));
                if job.jid() == jid {
                    return Ok(Some(Whereabouts::Fetched {
                        process: owner.clone(),
                        job,
                    }));
                }
            }
        }
        Ok(None)
    }
}
