//! The data API: what Sidekiq's `Stats`, `Queue`, `ScheduledSet` / `RetrySet` / `DeadSet`,
//! `ProcessSet` and `Workers` give Ruby code, for Rust code, the `psychiq` admin commands
//! and the dashboard.
//!
//! Reads never change anything. Every removal names the exact bytes that were read
//! (`LREM` / `ZREM` of that string), so a job that someone else changed or took meanwhile
//! is left alone and the call reports `false` instead of touching another job.
//!
//! Everything is read as bytes. A payload that is not UTF-8 is shown escaped
//! (each byte that is not UTF-8 as `\xHH`) and can still be deleted or killed by its exact
//! bytes; a name (queue, process identity, class) that is not UTF-8 is given in that escaped
//! form (a backslash as `\\`), and every method taking a name takes that form back, so such a queue can be listed,
//! cleared and so on. A counter that is not a number reads as 0.
//!
//! ```no_run
//! # async fn demo() -> psychiq::Result<()> {
//! use psychiq::api::{Api, SetKind};
//! let api = Api::connect(&psychiq::RedisConfig::default(), "").await?;
//! let stats = api.stats().await?;
//! println!("{} processed, {} failed, {} waiting", stats.processed, stats.failed, stats.enqueued);
//! for job in api.set_page(SetKind::Retry, 0, 25).await? {
//!     println!("{} {} {:?}", job.jid(), job.display_class(), job.error_message());
//!     api.retry_now(SetKind::Retry, &job).await?; // back to its queue, at once
//! }
//! # Ok(()) }
//! ```

mod batches;
mod iterations;
mod limits;
#[cfg(feature = "periodic")]
mod periodic;
mod unique;

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use redis::Script;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::job::payload::{self, JobMap};
use crate::job::text::{escape, lossless, unescape};
use crate::server::retry::{DEAD_MAX_JOBS, DEAD_TIMEOUT_SECS, decode_backtrace};
use crate::store::connection::{Connection, RedisConfig};
use crate::store::keys::Keys;
use crate::store::scripts::KILL;
use crate::store::scripts::MOVE_TO_QUEUE;

/// Totals, as `Sidekiq::Stats` gives them.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Jobs run, failures included (`stat:processed`).
    pub processed: u64,
    /// Jobs that failed (`stat:failed`).
    pub failed: u64,
    /// Jobs dropped unrun or unfinished, not failed: expired, or discarded by the job or a
    /// middleware (`stat:discarded`).
    pub discarded: u64,
    /// Jobs waiting in all queues.
    pub enqueued: u64,
    /// Jobs in the `schedule` set.
    pub scheduled: u64,
    /// Jobs in the `retry` set.
    pub retries: u64,
    /// Jobs in the `dead` set.
    pub dead: u64,
    /// Server processes with a live heartbeat.
    pub processes: u64,
    /// Jobs running now, summed over the live processes' heartbeats.
    pub busy: u64,
    /// Seconds the oldest job of queue `default` has waited (0 when it is empty).
    pub default_queue_latency: f64,
    /// Every known queue, by name.
    pub queues: Vec<QueueSummary>,
}

/// One queue's size and latency.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct QueueSummary {
    /// The queue name, without `queue:`.
    pub name: String,
    /// Jobs waiting.
    pub size: u64,
    /// Seconds the oldest waiting job has waited (its `enqueued_at`).
    pub latency: f64,
    /// Whether it is paused (servers take nothing from it; see [`Api::pause_queue`]).
    pub paused: bool,
}

/// One UTC day's counters.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DayStats {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Jobs run that day.
    pub processed: u64,
    /// Jobs failed that day.
    pub failed: u64,
}

/// The three sorted sets of jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    /// Jobs to run later (`schedule`).
    Scheduled,
    /// Failed jobs waiting for their next attempt (`retry`).
    Retry,
    /// Jobs that will not be retried (`dead`).
    Dead,
}

impl SetKind {
    /// The set's key under `keys` (in the cluster layout, see [`SetKind::key_of`]).
    pub fn key(self, keys: &Keys) -> String {
        match self {
            SetKind::Scheduled => keys.schedule(),
            SetKind::Retry => keys.retry(),
            SetKind::Dead => keys.dead(),
        }
    }

    /// The set that holds such jobs of `queue`: the shared one, or in the cluster layout
    /// the queue's own.
    pub fn key_of(self, keys: &Keys, queue: &str) -> String {
        match self {
            SetKind::Scheduled => keys.schedule_of(queue),
            SetKind::Retry => keys.retry_of(queue),
            SetKind::Dead => keys.dead_of(queue),
        }
    }

    /// A name for people: `scheduled`, `retries`, `dead`.
    pub fn label(self) -> &'static str {
        match self {
            SetKind::Scheduled => "scheduled",
            SetKind::Retry => "retries",
            SetKind::Dead => "dead",
        }
    }
}

/// A job as stored: the exact bytes, and what could be read from them.
#[derive(Debug, Clone)]
pub struct JobRecord {
    raw: Vec<u8>,
    /// `raw` escaped, when it is not UTF-8 (when it is, `raw` is its own text).
    escaped: Option<String>,
    item: Option<JobMap>,
    score: Option<f64>,
    queue: String,
}

impl JobRecord {
    fn new(raw: Vec<u8>, score: Option<f64>, queue: Option<&str>) -> JobRecord {
        let item = serde_json::from_slice::<JobMap>(&raw).ok();
        let escaped = std::str::from_utf8(&raw)
            .is_err()
            .then(|| escape(&raw).into_owned());
        // Shown as every queue name is (escaped), so the methods taking a name read it back.
        let queue = queue.map(str::to_string).unwrap_or_else(|| {
            let name = item
                .as_ref()
                .and_then(|i| i.get("queue"))
                .and_then(Value::as_str)
                .unwrap_or("default");
            escape(name.as_bytes()).into_owned()
        });
        JobRecord {
            raw,
            escaped,
            item,
            score,
            queue,
        }
    }

    /// The payload stored in Redis, as text: exact when it is UTF-8, else with the bytes
    /// that are not shown as `\xHH` (`\xHH` for each byte that is not UTF-8).
    pub fn raw(&self) -> &str {
        match &self.escaped {
            Some(escaped) => escaped,
            None => std::str::from_utf8(&self.raw).unwrap_or_default(),
        }
    }

    /// The exact bytes stored in Redis.
    pub fn raw_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Whether the stored bytes are valid UTF-8 (if not, no tool can read them as JSON).
    pub fn is_utf8(&self) -> bool {
        self.escaped.is_none()
    }

    /// The parsed payload; `None` when it is not a JSON object. An integer past 64 bits
    /// reads as a float here; [`JobRecord::field_json`] and [`JobRecord::raw`] keep its
    /// digits.
    pub fn item(&self) -> Option<&JobMap> {
        self.item.as_ref()
    }

    /// One field's JSON text exactly as stored (`"args"` gives `[18446744073709551617]`
    /// where [`JobRecord::item`] would give a float); `None` when absent or not an object.
    pub fn field_json(&self, name: &str) -> Option<&str> {
        let text = std::str::from_utf8(&self.raw).ok()?;
        let fields: std::collections::HashMap<
            std::borrow::Cow<'_, str>,
            &serde_json::value::RawValue,
        > = serde_json::from_str(text).ok()?;
        fields.get(name).map(|value| value.get())
    }

    /// The arguments as Sidekiq's dashboard shows them: for a job a Rails app enqueued, its
    /// ActiveJob arguments without Rails' markers; else `args` as stored.
    pub fn display_args(&self) -> String {
        let args = self.field_json("args").unwrap_or("null");
        let active_job = crate::job::active_job::is_wrapper(self.class())
            .then(|| crate::job::active_job::ActiveJob::from_args(args).ok())
            .flatten();
        match active_job {
            Some(active_job) => active_job.arguments().to_string(),
            None => args.to_string(),
        }
    }

    /// The score in its sorted set (when it runs, or when it failed or died).
    pub fn score(&self) -> Option<f64> {
        self.score
    }

    /// The queue it is in or will go to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.item.as_ref()?.get(key)?.as_str()
    }

    fn time_field(&self, key: &str) -> Option<f64> {
        payload::timestamp_secs(self.item.as_ref()?.get(key)?)
    }

    /// The job id (empty when the payload has none).
    pub fn jid(&self) -> &str {
        self.str_field("jid").unwrap_or("")
    }

    /// The `class` field.
    pub fn class(&self) -> &str {
        self.str_field("class").unwrap_or("")
    }

    /// The class to show: ActiveJob's `wrapped` class when there is one.
    pub fn display_class(&self) -> &str {
        self.str_field("wrapped").unwrap_or_else(|| self.class())
    }

    /// The arguments (`Null` when missing).
    pub fn args(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.item
            .as_ref()
            .and_then(|i| i.get("args"))
            .unwrap_or(&NULL)
    }

    /// When it was pushed to its queue, as float seconds.
    pub fn enqueued_at(&self) -> Option<f64> {
        self.time_field("enqueued_at")
    }

    /// When it was created.
    pub fn created_at(&self) -> Option<f64> {
        self.time_field("created_at")
    }

    /// When it last failed.
    pub fn failed_at(&self) -> Option<f64> {
        self.time_field("failed_at")
    }

    /// Failed attempts so far, minus one (Sidekiq's `retry_count`; -1 after a "Retry Now"
    /// of a job that had failed once).
    pub fn retry_count(&self) -> Option<i64> {
        self.item.as_ref()?.get("retry_count")?.as_i64()
    }

    /// The last error's class.
    pub fn error_class(&self) -> Option<&str> {
        self.str_field("error_class")
    }

    /// The last error's message.
    pub fn error_message(&self) -> Option<&str> {
        self.str_field("error_message")
    }

    /// The last error's backtrace, when the job kept one.
    pub fn backtrace(&self) -> Option<Vec<String>> {
        match self.item.as_ref()?.get("error_backtrace")? {
            Value::String(encoded) => decode_backtrace(encoded),
            Value::Array(lines) => Some(
                lines
                    .iter()
                    .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Seconds since it was pushed to its queue.
    pub fn latency(&self) -> f64 {
        self.enqueued_at()
            .map_or(0.0, |at| (crate::clock::now_secs() - at).max(0.0))
    }
}

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
    /// Waiting in a queue.
    Enqueued(JobRecord),
    /// In the schedule, to be enqueued at its score.
    Scheduled(JobRecord),
    /// In the retry set, to be retried at its score.
    Retrying(JobRecord),
    /// In the dead set.
    Dead(JobRecord),
}

/// Per-class figures over time (see [`Api::class_series`]).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClassSeries {
    /// When each point starts (epoch seconds), oldest first.
    pub starts: Vec<u64>,
    /// The seconds each point covers (60, or 600 beyond 8 hours).
    pub step_secs: u64,
    /// Each class seen in the range, busiest first.
    pub classes: Vec<ClassPoints>,
}

/// One class's figures per point of a [`ClassSeries`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClassPoints {
    /// The job class.
    pub class: String,
    /// Runs of `perform` in each point.
    pub runs: Vec<u64>,
    /// Runs that failed.
    pub failed: Vec<u64>,
    /// Milliseconds spent in runs that succeeded.
    pub ms: Vec<u64>,
}

impl ClassPoints {
    /// Over the whole range: runs, failures, and the mean milliseconds of a successful run
    /// (`None` without one).
    pub fn totals(&self) -> (u64, u64, Option<f64>) {
        let (runs, failed) = (
            self.runs.iter().sum::<u64>(),
            self.failed.iter().sum::<u64>(),
        );
        let ok = runs.saturating_sub(failed);
        let mean = (ok > 0).then(|| self.ms.iter().sum::<u64>() as f64 / ok as f64);
        (runs, failed, mean)
    }
}

/// Runs of one worker class, summed over every server since the metrics began.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClassMetrics {
    /// The job class.
    pub class: String,
    /// Runs of `perform`.
    pub count: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Total seconds spent in `perform`.
    pub secs: f64,
    /// Runs per duration bucket (upper bounds 0.001, 0.005, 0.01 ... 60, 300 s; not cumulative), plus one
    /// past the last bound.
    pub buckets: Vec<u64>,
}

impl ClassMetrics {
    /// Mean seconds a run.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.secs / self.count as f64
        }
    }

    /// The upper bound of the bucket holding the 95th percentile run (`INFINITY` when it is
    /// past the last bound).
    pub fn p95(&self) -> f64 {
        let target = (self.count as f64 * 0.95).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                return crate::server::stats::DURATION_BUCKETS
                    .get(i)
                    .copied()
                    .unwrap_or(f64::INFINITY);
            }
        }
        0.0
    }
}

/// Reads and steers one namespace's jobs. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    conn: Connection,
    keys: Keys,
    config: RedisConfig,
}

/// Rows (member, score) read from each of `sets`, as jobs of the queue their set belongs to.
fn records(rows: Vec<Vec<(Vec<u8>, f64)>>, sets: &[(String, Option<String>)]) -> Vec<JobRecord> {
    rows.into_iter()
        .zip(sets)
        .flat_map(|(rows, (_, queue))| {
            rows.into_iter()
                .map(move |(raw, score)| JobRecord::new(raw, Some(score), queue.as_deref()))
        })
        .collect()
}

/// Jobs of a set in the order its pages list them: soonest first, or newest first for the
/// dead.
fn sort_as_listed(kind: SetKind, jobs: &mut [JobRecord]) {
    jobs.sort_by(|a, b| a.score.unwrap_or(0.0).total_cmp(&b.score.unwrap_or(0.0)));
    if kind == SetKind::Dead {
        jobs.reverse();
    }
}

/// A namespace as people read it: the empty one is Sidekiq's bare keys.
pub(crate) fn namespace_label(namespace: &str) -> String {
    if namespace.is_empty() {
        "(none: bare keys)".to_string()
    } else {
        format!("{:?}", crate::job::text::printable(namespace))
    }
}

impl crate::Config {
    /// Connects the API that reads and changes what is here.
    pub async fn api(&self) -> Result<crate::api::Api> {
        Api::connect(self.redis(), self.namespace_name()).await
    }
}

impl Api {
    /// Connects to Redis and reads keys under `namespace`.
    pub async fn connect(config: &RedisConfig, namespace: &str) -> Result<Api> {
        let conn = config.connect().await?;
        Ok(Api {
            conn,
            keys: config.keys(namespace),
            config: config.clone(),
        })
    }

    /// Which Redis (its password masked) and namespace this API reads:
    /// `redis://localhost:6379/3 · namespace "billing"`, or `· namespace (none: bare keys)`.
    pub fn source(&self) -> String {
        format!(
            "{} · namespace {}",
            self.config.display_address(),
            namespace_label(self.keys.namespace())
        )
    }

    /// The Redis server's own figures, as Sidekiq's dashboard shows them: `redis_version`,
    /// `uptime_in_seconds`, `connected_clients`, `used_memory_human`,
    /// `used_memory_peak_human`, `maxmemory_human`, `maxmemory_policy` (those `INFO` gives;
    /// a managed Redis may hide some).
    pub async fn redis_info(&self) -> Result<Vec<(String, String)>> {
        const SHOWN: [&str; 7] = [
            "redis_version",
            "uptime_in_seconds",
            "connected_clients",
            "used_memory_human",
            "used_memory_peak_human",
            "maxmemory_human",
            "maxmemory_policy",
        ];
        let text: String = self.query(&redis::cmd("INFO")).await?;
        let fields: HashMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.trim_end().split_once(':'))
            .collect();
        Ok(SHOWN
            .iter()
            .filter_map(|name| Some((name.to_string(), fields.get(name)?.to_string())))
            .collect())
    }

    /// The keys this API reads.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The list of the queue with these exact bytes as its name.
    fn raw_queue_key(&self, name: &[u8]) -> Vec<u8> {
        self.keys.raw_queue(name)
    }

    /// The sets of `kind`, each with the queue it belongs to: Sidekiq's one shared set
    /// (`None`), or in the cluster layout every known queue's own.
    async fn set_keys(&self, kind: SetKind) -> Result<Vec<(String, Option<String>)>> {
        Ok(self.sets(kind, &self.queues_with_sets().await?))
    }

    /// In the cluster layout, the known queues, sorted: each has sets of its own. Nothing
    /// to read (and empty) in Sidekiq's.
    async fn queues_with_sets(&self) -> Result<Vec<String>> {
        if !self.keys.is_cluster() {
            return Ok(Vec::new());
        }
        let mut queues: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.queues()))
            .await?;
        queues.sort();
        Ok(queues)
    }

    /// The sets of `kind` given [`Api::queues_with_sets`]'s answer.
    fn sets(&self, kind: SetKind, queues: &[String]) -> Vec<(String, Option<String>)> {
        if !self.keys.is_cluster() {
            return vec![(kind.key(&self.keys), None)];
        }
        queues
            .iter()
            .map(|queue| (kind.key_of(&self.keys, queue), Some(queue.clone())))
            .collect()
    }

    /// The set of `kind` that holds `job` (as read from it).
    fn set_key_of(&self, kind: SetKind, job: &JobRecord) -> String {
        kind.key_of(&self.keys, job.queue())
    }

    /// The list of the queue named `queue` (as [`Api::queues`] shows it: escaped).
    fn queue_key(&self, queue: &str) -> Vec<u8> {
        self.raw_queue_key(&unescape(queue))
    }

    /// The key `NAMESPACE:` + the bytes of `name` (shown escaped) + `suffix`.
    fn named_key(&self, name: &str, suffix: &str) -> Vec<u8> {
        [
            self.keys.prefix().as_bytes(),
            &unescape(name),
            suffix.as_bytes(),
        ]
        .concat()
    }

    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        cmd.query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.redis_error(e))
    }

    /// Sends `pipe` (`width` commands an entry, each entry's keys named in `names`) and
    /// reads each entry's replies on its own: an entry with a key of the wrong type, or
    /// replies of another shape, is `Err` with a message naming its key, so one corrupt
    /// entry does not fail a whole listing.
    pub(crate) async fn query_rows<T: redis::FromRedisValue>(
        &self,
        pipe: &mut redis::Pipeline,
        width: usize,
        names: &[String],
    ) -> Result<Vec<std::result::Result<T, String>>> {
        if pipe.cmd_iter().next().is_none() {
            return Ok(Vec::new());
        }
        let replies: Vec<redis::Value> = pipe
            .ignore_errors()
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.redis_error(e))?;
        Ok(replies
            .chunks(width.max(1))
            .zip(names)
            .map(|(row, name)| {
                let unreadable = |e: &dyn std::fmt::Display| format!("unreadable: {name}: {e}");
                if let Some(redis::Value::ServerError(e)) = row
                    .iter()
                    .find(|v| matches!(v, redis::Value::ServerError(_)))
                {
                    return Err(unreadable(&format!(
                        "{} {}",
                        e.code(),
                        e.details().unwrap_or("")
                    )));
                }
                // One reply an entry is read as itself; several as a tuple.
                let value = match row {
                    [one] => one.clone(),
                    _ => redis::Value::Array(row.to_vec()),
                };
                T::from_redis_value(value).map_err(|e| unreadable(&e))
            })
            .collect())
    }

    pub(crate) async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        if pipe.cmd_iter().next().is_none() {
            // Nothing to ask (no queues, no processes): an empty reply, not a round trip.
            return T::from_redis_value(redis::Value::Array(Vec::new()))
                .map_err(|e| self.config.redis_error(e.into()));
        }
        pipe.query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.redis_error(e))
    }

    /// Totals, queue sizes and latencies, and the live processes' busy count.
    pub async fn stats(&self) -> Result<Stats> {
        let mut pipe = redis::pipe();
        pipe.get(self.keys.stat("processed"))
            .get(self.keys.stat("failed"))
            .get(self.keys.stat("discarded"));
        // The three sets' sizes in the same round trip (every queue's, in the cluster layout).
        let queues = self.queues_with_sets().await?;
        let kinds = [SetKind::Scheduled, SetKind::Retry, SetKind::Dead];
        let per_kind = self.sets(kinds[0], &queues).len();
        for kind in kinds {
            for (key, _) in self.sets(kind, &queues) {
                pipe.zcard(key);
            }
        }
        let replies: Vec<redis::Value> = self.query_pipe(&pipe).await?;
        let read = |value: &redis::Value| -> Result<Option<Vec<u8>>> {
            redis::from_redis_value_ref(value).map_err(|e| self.config.redis_error(e.into()))
        };
        // Counters may be missing (nil) or written by Ruby as text.
        let (processed, failed, discarded) =
            (read(&replies[0])?, read(&replies[1])?, read(&replies[2])?);
        let mut sizes = [0u64; 3];
        for (i, value) in replies[3..].iter().enumerate() {
            let size: u64 = redis::from_redis_value_ref(value)
                .map_err(|e| self.config.redis_error(e.into()))?;
            sizes[i / per_kind] += size;
        }
        let [scheduled, retries, dead] = sizes;
        let (processed, failed) = (counter(processed), counter(failed));
        let queues = self.queues().await?;
        let processes = self.processes().await?;
        Ok(Stats {
            processed,
            failed,
            discarded: counter(discarded),
            enqueued: queues.iter().map(|q| q.size).sum(),
            scheduled,
            retries,
            dead,
            processes: processes.len() as u64,
            busy: processes.iter().map(|p| p.busy).sum(),
            default_queue_latency: queues
                .iter()
                .find(|q| q.name == "default")
                .map_or(0.0, |q| q.latency),
            queues,
        })
    }

    /// Processed and failed per UTC day, newest first, for the `days` days up to `until`.
    pub async fn history(&self, days: u32, until: SystemTime) -> Result<Vec<DayStats>> {
        let dates: Vec<String> = (0..days.clamp(1, 5 * 366))
            .map(|back| {
                crate::server::stats::utc_date(until - Duration::from_secs(86_400 * back as u64))
            })
            .collect();
        let mut pipe = redis::pipe();
        for name in ["processed", "failed"] {
            let keys: Vec<String> = dates
                .iter()
                .map(|d| self.keys.stat_daily(name, d))
                .collect();
            pipe.cmd("MGET").arg(keys);
        }
        type Counts = Vec<Option<Vec<u8>>>;
        let (processed, failed): (Counts, Counts) = self.query_pipe(&pipe).await?;
        Ok(dates
            .into_iter()
            .zip(processed.into_iter().zip(failed))
            .map(|(date, (p, f))| DayStats {
                date,
                processed: counter(p),
                failed: counter(f),
            })
            .collect())
    }

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
                .sismember(self.keys.paused(), name);
        }
        let rows: Vec<(u64, Option<Vec<u8>>, bool)> = self.query_pipe(&pipe).await?;
        Ok(names
            .into_iter()
            .zip(rows)
            .map(|(name, (size, oldest, paused))| QueueSummary {
                latency: oldest.map_or(0.0, |raw| JobRecord::new(raw, None, None).latency()),
                name: escape(&name).into_owned(),
                size,
                paused,
            })
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
    async fn change_paused(&self, command: &str, queue: &str) -> Result<bool> {
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

    /// Jobs waiting in a queue.
    pub async fn queue_size(&self, queue: &str) -> Result<u64> {
        self.query(redis::cmd("LLEN").arg(self.queue_key(queue)))
            .await
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
        let removed: u64 = self
            .query(
                redis::cmd("LREM")
                    .arg(self.queue_key(job.queue()))
                    .arg(1)
                    .arg(job.raw_bytes()),
            )
            .await?;
        if removed == 1 {
            self.farewell([job.raw_bytes()]).await?;
        }
        Ok(removed == 1)
    }

    /// Deletes a queue and every job in it; returns how many jobs it held. Its batch jobs
    /// die for their batches and its unique jobs' locks go.
    pub async fn clear_queue(&self, queue: &str) -> Result<u64> {
        let key = self.queue_key(queue);
        let aside = self.set_aside(&key).await?;
        let _: () = self
            .query(
                redis::cmd("SREM")
                    .arg(self.keys.queues())
                    .arg(&*unescape(queue)),
            )
            .await?;
        match aside {
            Some(aside) => self.part_with(&aside, "LRANGE").await,
            None => Ok(0),
        }
    }

    /// Renames `key` to a key of its own (in the same slot), so what is pushed meanwhile is
    /// not cleared with it; `None` if there was no such key. The copy expires in a day, in
    /// case the clearing is interrupted.
    async fn set_aside(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
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
    async fn part_with(&self, aside: &[u8], read: &str) -> Result<u64> {
        const PAGE: i64 = 1_000;
        let mut start = 0;
        loop {
            let page: Vec<Vec<u8>> = self
                .query(redis::cmd(read).arg(aside).arg(start).arg(start + PAGE - 1))
                .await?;
            self.farewell(page.iter().map(Vec::as_slice)).await?;
            start += page.len() as i64;
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        let _: () = self.query(redis::cmd("DEL").arg(aside)).await?;
        Ok(start as u64)
    }

    /// Writes the [`farewell`](crate::server::departure::farewell) of jobs that left for good.
    async fn farewell<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<()> {
        // Batches are counted where they can be: not in the cluster layout.
        let batches = !self.keys.is_cluster();
        let pipe = crate::server::departure::farewells(
            &self.keys,
            payloads,
            crate::clock::now_secs(),
            batches,
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
    async fn zscan(
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
        let pattern = format!("*{}*", crate::server::recovery::glob_escape(text));
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
        let pattern = format!("*{}*", crate::server::recovery::glob_escape(jid));
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
        match split_key(key) {
            Some((score, jid)) => self.set_find_at(kind, score, jid).await,
            None => self.set_find(kind, key).await,
        }
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

    async fn move_to_queue(&self, kind: SetKind, job: &JobRecord, uncount: bool) -> Result<bool> {
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
        let removed: u64 = self
            .query(
                redis::cmd("ZREM")
                    .arg(self.set_key_of(kind, job))
                    .arg(job.raw_bytes()),
            )
            .await?;
        if removed == 1 && kind != SetKind::Dead {
            self.farewell([job.raw_bytes()]).await?;
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
            self.farewell([job.raw_bytes()]).await?;
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

    async fn for_all<F, Fut>(&self, kind: SetKind, action: F) -> Result<u64>
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

    async fn signal(&self, identity: &str, signal: &str) -> Result<()> {
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
        for queue in self.queues().await? {
            if let Some(job) = self.find_in_queue(&queue.name, jid).await? {
                return Ok(Some(Whereabouts::Enqueued(job)));
            }
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

    /// Per-class run metrics, busiest class first.
    pub async fn class_metrics(&self) -> Result<Vec<ClassMetrics>> {
        let classes: Vec<Vec<u8>> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.key("metrics:classes")))
            .await?;
        let mut pipe = redis::pipe();
        for class in &classes {
            pipe.hgetall([self.keys.class_metrics("").as_bytes(), class].concat());
        }
        let hashes: Vec<HashMap<Vec<u8>, Vec<u8>>> = self.query_pipe(&pipe).await?;
        let mut metrics: Vec<ClassMetrics> = classes
            .into_iter()
            .zip(hashes.into_iter().map(text_map))
            .map(|(class, fields)| {
                let int = |k: &str| {
                    fields
                        .get(k)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                ClassMetrics {
                    count: int("count"),
                    failed: int("failed"),
                    secs: fields
                        .get("secs")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0.0),
                    buckets: (0..=crate::server::stats::DURATION_BUCKETS.len())
                        .map(|i| int(&format!("b{i}")))
                        .collect(),
                    class: escape(&class).into_owned(),
                }
            })
            .collect();
        metrics.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.class.cmp(&b.class)));
        Ok(metrics)
    }

    /// Runs, failures and seconds per class over time, from the per-minute metrics every
    /// server writes in Sidekiq 8's format (what Sidekiq 7/8's Metrics tab reads): one point a
    /// minute for ranges up to 8 hours (the minutes' lifetime), one per ten minutes beyond (up
    /// to 3 days). Points run oldest first, ending at `until`'s minute.
    pub async fn class_series(&self, range: Duration, until: SystemTime) -> Result<ClassSeries> {
        const MINUTES_KEPT: u64 = 8 * 60;
        let minutes = (range.as_secs() / 60).clamp(1, 3 * 24 * 60);
        let step = if minutes <= MINUTES_KEPT { 1 } else { 10 };
        let end = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            / 60;
        let end = end - end % step;
        let points: Vec<u64> = (0..minutes / step).rev().map(|i| end - i * step).collect();
        let mut pipe = redis::pipe();
        for minute in &points {
            let bucket = crate::server::stats::sidekiq_8_bucket(minute * 60, step > 1);
            pipe.hgetall(self.keys.key(&bucket));
        }
        let hashes: Vec<HashMap<Vec<u8>, Vec<u8>>> = self.query_pipe(&pipe).await?;
        let mut classes: std::collections::BTreeMap<String, ClassPoints> = Default::default();
        for (i, hash) in hashes.into_iter().enumerate() {
            for (field, value) in text_map(hash) {
                let Some((class, kind)) = field.rsplit_once('|') else {
                    continue;
                };
                let value: u64 = value.parse().unwrap_or(0);
                let series = classes
                    .entry(class.to_string())
                    .or_insert_with(|| ClassPoints {
                        class: class.to_string(),
                        runs: vec![0; points.len()],
                        failed: vec![0; points.len()],
                        ms: vec![0; points.len()],
                    });
                match kind {
                    "p" => series.runs[i] = value,
                    "f" => series.failed[i] = value,
                    "ms" => series.ms[i] = value,
                    _ => {}
                }
            }
        }
        let mut classes: Vec<ClassPoints> = classes.into_values().collect();
        classes.sort_by_cached_key(|c| std::cmp::Reverse(c.totals().0));
        Ok(ClassSeries {
            starts: points.iter().map(|minute| minute * 60).collect(),
            step_secs: step * 60,
            classes,
        })
    }

    /// A client pushing to the same Redis and namespace.
    pub fn client(&self) -> crate::Client {
        crate::Client::from_connection(
            self.conn.clone(),
            self.config.clone(),
            self.keys.namespace(),
        )
    }

    /// A clone of the connection, for commands of your own.
    pub fn connection(&self) -> Connection {
        self.conn.clone()
    }
}

// Formatting for people: the dashboard and the admin commands (`cli` implies `web`).

/// The first second of the year 10000: RFC 3339 (and humantime) stop before it.
#[cfg(feature = "web")]
pub(crate) const YEAR_10000: f64 = 253_402_300_800.0;

/// A Unix time as `2026-11-27 23:40:01`, UTC; a number out of that range (say, milliseconds
/// written where seconds belong) is shown as it is.
#[cfg(feature = "web")]
pub(crate) fn utc_text(secs: f64) -> String {
    if !secs.is_finite() || secs <= 0.0 {
        return String::new();
    }
    if secs >= YEAR_10000 {
        return secs.to_string();
    }
    crate::clock::utc_iso8601(secs)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// Seconds as `42s`, `3m 5s`, `2h 10m`, `4d 3h`.
#[cfg(feature = "web")]
pub(crate) fn span_text(secs: f64) -> String {
    let s = secs.abs().round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m {}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// A counter as stored; anything that is not a whole number reads as 0.
fn counter(value: Option<Vec<u8>>) -> u64 {
    value
        .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// A hash read as bytes, as text (bytes that are not UTF-8 shown escaped).
fn text_map(hash: HashMap<Vec<u8>, Vec<u8>>) -> HashMap<String, String> {
    hash.into_iter()
        .map(|(k, v)| (lossless(&k).into_owned(), lossless(&v).into_owned()))
        .collect()
}

/// A score as Redis reads it back exactly (`+inf` / `-inf` for the infinite ones).
fn score_text(score: f64) -> String {
    if score.is_infinite() {
        if score > 0.0 { "+inf" } else { "-inf" }.to_string()
    } else {
        payload::timestamp_text(score)
    }
}

/// Splits Sidekiq's `SCORE-JID` key at the first `-` after which what comes before is a
/// number, so negative (`-5.0-JID`) and infinite (`inf-JID`) scores work.
fn split_key(key: &str) -> Option<(f64, &str)> {
    key.match_indices('-').find_map(|(i, _)| {
        let score = key[..i].parse::<f64>().ok().filter(|s| !s.is_nan())?;
        Some((score, &key[i + 1..]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_negative_and_infinite_scores_split() {
        assert_eq!(split_key("12.5-abc"), Some((12.5, "abc")));
        assert_eq!(split_key("-5.0-abc"), Some((-5.0, "abc")));
        assert_eq!(split_key("inf-a-b"), Some((f64::INFINITY, "a-b")));
        assert_eq!(split_key("-inf-x"), Some((f64::NEG_INFINITY, "x")));
        assert_eq!(split_key("abc"), None);
        assert_eq!(score_text(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn a_record_reads_sidekiq_fields_and_survives_garbage() {
        let job = JobRecord::new(
            br#"{"class":"X","wrapped":"Y","args":[1],"jid":"j","retry_count":2,"error_message":"boom","failed_at":1700000000000}"#.to_vec(),
            Some(1.5),
            None,
        );
        assert_eq!(job.display_class(), "Y");
        assert_eq!(job.retry_count(), Some(2));
        assert_eq!(job.failed_at(), Some(1_700_000_000.0));
        assert_eq!(job.queue(), "default");
        let bad = JobRecord::new(b"not json \xff".to_vec(), None, Some("low"));
        assert_eq!(bad.raw(), "not json \\xff");
        assert!(!bad.is_utf8());
        assert_eq!((bad.jid(), bad.class(), bad.queue()), ("", "", "low"));
        assert!(bad.args().is_null());
    }
}
