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
//! Shaped as Sidekiq's `api.rb`: [`Api::queue`], [`Api::scheduled`], [`Api::retries`] and
//! [`Api::dead`] give a value per structure with its verbs, and each job found carries the
//! verbs that act on it ([`QueueJob`], [`SetJob`]); [`Api::stats`], [`Api::processes`] and
//! [`Api::running`] read the rest. The flat methods they stand on (`set_page(kind, ..)`,
//! `retry_now(kind, &job)`) stay for code that holds a [`SetKind`].
//!
//! ```no_run
//! # async fn demo() -> psychiq::Result<()> {
//! let api = psychiq::Config::default().api().await?;
//! let stats = api.stats().await?;
//! println!("{} processed, {} failed, {} waiting", stats.processed, stats.failed, stats.enqueued);
//! for job in api.retries().page(0, 25).await? {
//!     println!("{} {} {:?}", job.jid(), job.display_class(), job.error_message());
//!     job.retry_now().await?; // back to its queue, at once
//! }
//! api.queue("default").clear().await?;
//! # Ok(()) }
//! ```

mod batches;
mod groups;
mod handles;
mod iterations;
mod limits;
#[cfg(feature = "periodic")]
mod periodic;
mod processes;
mod queues;
mod record;
mod sets;
mod stats;
mod status;
mod unique;
mod workflows;

pub use groups::{GroupRate, GroupSummary};
pub use handles::{JobSet, Queue, QueueJob, SetJob};
pub use processes::{ProcessInfo, RunningWork, Whereabouts};
pub use queues::QueueSummary;
pub use record::{JobRecord, SetKind};
pub use stats::{ClassMetrics, ClassPoints, ClassSeries, DayStats, Stats};
pub use status::{Cancellation, Progresses};
pub use workflows::{WorkflowStatus, WorkflowStep};

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
use crate::store::config::RedisConfig;
use crate::store::connection::Connection;
use crate::store::keys::Keys;
use crate::store::scripts::KILL;
use crate::store::scripts::MOVE_TO_QUEUE;

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
