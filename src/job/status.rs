//! What happened to a job, by jid: its state, times, progress, error and result.
//!
//! A job is *tracked* when it asks (the worker option [`crate::WorkerOptions::track`], the
//! push option [`crate::Job::track`], or a server's `--track-all`). Its payload then
//! carries `"track": SECONDS` (the retention; Sidekiq ignores the field), and every step of
//! its life writes one Redis hash, `status:JID`, kept for that long after its last change:
//!
//! | field | written when | value |
//! |---|---|---|
//! | `state` | every step | `enqueued`, `scheduled`, `running`, `retrying`, `dead`, `succeeded`, `discarded`, `cancelled` |
//! | `class`, `queue` | pushed, started | as in the payload |
//! | `enqueued_at`, `at` | pushed | epoch seconds (float); `at` for a scheduled job |
//! | `started_at`, `process` | started | epoch seconds; the identity of the process running it |
//! | `done`, `total`, `message` | progress | what [`crate::context::progress`] said last |
//! | `retry_count`, `next_at`, `error` | failed | Sidekiq's retry count; when it runs again; `Class: message` |
//! | `finished_at`, `duration` | a final state | epoch seconds; seconds it ran |
//! | `result` | succeeded | the worker's output as JSON |
//!
//! A final state (`succeeded`, `dead`, `discarded`, `cancelled`) is also pushed to the list
//! `status:JID:done`, so a caller in any language can wait for it without polling:
//! `BLMOVE status:JID:done status:JID:done RIGHT LEFT 30` (which leaves the element for
//! other waiters), then `HGETALL status:JID`. A job that does not ask writes nothing.
//!
//! ```
//! use psychiq::status::State;
//! assert!(State::Succeeded.is_final());
//! assert!(!State::Retrying.is_final());
//! assert_eq!("dead".parse::<State>(), Ok(State::Dead));
//! ```

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::store::keys::Keys;

/// How long a tracked job's status is kept after its last change, unless it says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(86_400);

/// The payload field that asks for tracking; its value is the retention in seconds.
pub(crate) const TRACK_FIELD: &str = "track";

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// In its queue.
    Enqueued,
    /// Waiting in the schedule for its time.
    Scheduled,
    /// Running in a process.
    Running,
    /// Failed; in the retry set for its next attempt.
    Retrying,
    /// Failed for the last time; in the dead set.
    Dead,
    /// Ran to its end.
    Succeeded,
    /// Dropped unrun or after failing, on purpose (expired, `dead: false`, a middleware).
    Discarded,
    /// Cancelled before or while it ran.
    Cancelled,
}

impl State {
    /// Its name as stored (`succeeded`).
    pub fn name(self) -> &'static str {
        match self {
            State::Enqueued => "enqueued",
            State::Scheduled => "scheduled",
            State::Running => "running",
            State::Retrying => "retrying",
            State::Dead => "dead",
            State::Succeeded => "succeeded",
            State::Discarded => "discarded",
            State::Cancelled => "cancelled",
        }
    }

    /// Whether the job will not run again by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Dead | State::Succeeded | State::Discarded | State::Cancelled
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for State {
    type Err = String;
    fn from_str(name: &str) -> Result<State, String> {
        Ok(match name {
            "enqueued" => State::Enqueued,
            "scheduled" => State::Scheduled,
            "running" => State::Running,
            "retrying" => State::Retrying,
            "dead" => State::Dead,
            "succeeded" => State::Succeeded,
            "discarded" => State::Discarded,
            "cancelled" => State::Cancelled,
            other => return Err(format!("unknown job state {other:?}")),
        })
    }
}

/// How far a running job says it is ([`crate::context::progress`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all (0 if unknown).
    pub total: u64,
    /// What it is doing.
    pub message: String,
}

impl Progress {
    /// Done as a percentage of the total, when the total is known.
    pub fn percent(&self) -> Option<f64> {
        (self.total > 0).then(|| self.done as f64 * 100.0 / self.total as f64)
    }
}

/// Everything known about one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct JobStatus {
    /// The job's id.
    pub jid: String,
    /// Where it is.
    pub state: State,
    /// Whether it asked to be tracked (else what is known was found by looking in the
    /// queues and sets, and nothing is known once it has left them).
    pub tracked: bool,
    /// Its worker's class.
    pub class: Option<String>,
    /// Its queue.
    pub queue: Option<String>,
    /// When it was pushed (epoch seconds).
    pub enqueued_at: Option<f64>,
    /// When it is due, for a scheduled job; when it runs again, for a retrying one.
    pub next_at: Option<f64>,
    /// When its latest run started.
    pub started_at: Option<f64>,
    /// The process running it (or that last ran it).
    pub process: Option<String>,
    /// What it said last about its progress.
    pub progress: Option<Progress>,
    /// Sidekiq's retry count (failed attempts minus one), once it has failed.
    pub retry_count: Option<u64>,
    /// Its last error, `Class: message`.
    pub error: Option<String>,
    /// When it reached its final state.
    pub finished_at: Option<f64>,
    /// How long its last run took, in seconds.
    pub duration: Option<f64>,
    /// Its output as JSON text, once it succeeded (`null` for a worker with no output).
    pub result: Option<String>,
    /// Its place in its queue (0 = next), when it is enqueued and was found there.
    pub position: Option<u64>,
}

impl JobStatus {
    /// A status with only a jid and a state; the rest unknown.
    pub(crate) fn bare(jid: &str, state: State, tracked: bool) -> JobStatus {
        JobStatus {
            jid: jid.to_string(),
            state,
            tracked,
            class: None,
            queue: None,
            enqueued_at: None,
            next_at: None,
            started_at: None,
            process: None,
            progress: None,
            retry_count: None,
            error: None,
            finished_at: None,
            duration: None,
            result: None,
            position: None,
        }
    }

    /// What is known of its times, place, process and last error, as (label, text) rows
    /// for people, times written by `time`; what is unknown is left out. The CLI and the
    /// dashboard show these.
    #[cfg(feature = "api")]
    pub(crate) fn details(&self, time: fn(f64) -> String) -> Vec<(&'static str, String)> {
        [
            ("enqueued", self.enqueued_at.map(time)),
            (
                "position",
                self.position.map(|p| format!("{p} (0 runs next)")),
            ),
            ("next run", self.next_at.map(time)),
            ("started", self.started_at.map(time)),
            ("process", self.process.clone()),
            ("retry count", self.retry_count.map(|c| c.to_string())),
            ("error", self.error.clone()),
            ("finished", self.finished_at.map(time)),
            ("duration", self.duration.map(|d| format!("{d:.3} s"))),
        ]
        .into_iter()
        .filter_map(|(label, text)| Some((label, text?)))
        .collect()
    }

    /// Reads a `status:JID` hash; `None` if it has no state (absent, or progress only).
    pub(crate) fn from_hash(jid: &str, hash: &HashMap<String, String>) -> Option<JobStatus> {
        let state = hash.get("state")?.parse().ok()?;
        let text = |name: &str| hash.get(name).filter(|v| !v.is_empty()).cloned();
        let number = |name: &str| hash.get(name).and_then(|v| v.parse::<f64>().ok());
        let mut status = JobStatus::bare(jid, state, true);
        status.class = text("class");
        status.queue = text("queue");
        status.enqueued_at = number("enqueued_at");
        status.next_at = number("next_at").or_else(|| number("at"));
        status.started_at = number("started_at");
        status.process = text("process");
        status.progress = progress_in(hash);
        status.retry_count = hash.get("retry_count").and_then(|v| v.parse().ok());
        status.error = text("error");
        status.finished_at = number("finished_at");
        status.duration = number("duration");
        status.result = text("result");
        Some(status)
    }
}

/// The progress fields of a `status:JID` hash, if any.
pub(crate) fn progress_in(hash: &HashMap<String, String>) -> Option<Progress> {
    let done = hash.get("done")?.parse().ok()?;
    Some(Progress {
        done,
        total: hash.get("total").and_then(|v| v.parse().ok()).unwrap_or(0),
        message: hash.get("message").cloned().unwrap_or_default(),
    })
}

/// The retention a payload asks for (`"track": SECONDS`, or `true` for a day); `None` if
/// it does not ask. A substring search first, so an untracked job costs one scan.
pub(crate) fn retention_in(payload: &str) -> Option<u64> {
    if !payload.contains("\"track\"") {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(payload).ok()?;
    retention_of(map.get(TRACK_FIELD)?)
}

/// The retention a `track` value means.
pub(crate) fn retention_of(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Bool(true) => Some(DEFAULT_RETENTION.as_secs()),
        serde_json::Value::Number(n) => n.as_u64().filter(|&s| s > 0),
        _ => None,
    }
}

/// How a tracked job's run ended, as its status records it.
#[derive(Debug, Clone)]
pub(crate) enum End<'a> {
    /// Ran to its end, for `duration` seconds, with `result` (JSON).
    Succeeded { duration: f64, result: &'a str },
    /// Failed; runs again at `next_at`.
    Retrying {
        retry_count: u64,
        next_at: f64,
        error: &'a str,
    },
    /// Failed for the last time.
    Dead { error: &'a str },
    /// Dropped on purpose.
    Discarded { reason: &'a str },
    /// Cancelled.
    Cancelled,
}

impl End<'_> {
    fn state(&self) -> State {
        match self {
            End::Succeeded { .. } => State::Succeeded,
            End::Retrying { .. } => State::Retrying,
            End::Dead { .. } => State::Dead,
            End::Discarded { .. } => State::Discarded,
            End::Cancelled => State::Cancelled,
        }
    }
}

/// Adds to `pipe` the status of a job just pushed (enqueued, or scheduled for `at`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pushed(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    jid: &str,
    class: &str,
    queue: &str,
    at: Option<f64>,
    now: f64,
    retention: u64,
) {
    let key = keys.status(jid);
    let mut hset = redis::cmd("HSET");
    hset.arg(&key)
        .arg("class")
        .arg(class)
        .arg("queue")
        .arg(queue)
        .arg("enqueued_at")
        .arg(now);
    match at {
        Some(at) => hset
            .arg("state")
            .arg(State::Scheduled.name())
            .arg("at")
            .arg(at),
        None => hset.arg("state").arg(State::Enqueued.name()),
    };
    pipe.add_command(hset).ignore();
    pipe.expire(&key, retention as i64).ignore();
}

/// Adds to `pipe` the status of a job starting in `process`: running. A rerun (a retry, a
/// recovery, a dead job retried by hand) also loses the end of its earlier run, and its
/// final state for waiters. One command for the first run of a job tracked since its push:
/// its key's TTL, set then, is renewed when it ends; otherwise (`ttl`) it is set now.
#[allow(clippy::too_many_arguments)]
pub(crate) fn started(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    (jid, class, queue): (&str, &str, &str),
    process: &str,
    now: f64,
    rerun: bool,
    ttl: Option<u64>,
) {
    let key = keys.status(jid);
    pipe.cmd("HSET")
        .arg(&key)
        .arg("state")
        .arg(State::Running.name())
        .arg("class")
        .arg(class)
        .arg("queue")
        .arg(queue)
        .arg("process")
        .arg(process)
        .arg("started_at")
        .arg(now)
        .ignore();
    if rerun {
        pipe.hdel(&key, &["next_at", "finished_at", "duration", "result"])
            .ignore();
        pipe.del(keys.status_done(jid)).ignore();
    }
    if let Some(ttl) = ttl {
        pipe.expire(&key, ttl as i64).ignore();
    }
}

/// Adds to `pipe` that a tracked job waits again: in its queue (`at` = `None`: recovered
/// from a dead process, or requeued) or in the schedule until `at` (snoozed).
pub(crate) fn waiting(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    jid: &str,
    at: Option<f64>,
    retention: u64,
) {
    let key = keys.status(jid);
    match at {
        Some(at) => pipe
            .hset(&key, "state", State::Scheduled.name())
            .ignore()
            .hset(&key, "next_at", at)
            .ignore(),
        None => pipe.hset(&key, "state", State::Enqueued.name()).ignore(),
    };
    pipe.expire(&key, retention as i64).ignore();
    // An end written before a crash is not the end any more.
    pipe.del(keys.status_done(jid)).ignore();
}

/// Adds to `pipe` a job's progress (written for any job that reports it; its status hash
/// then holds only these fields unless the job is tracked).
pub(crate) fn progressed(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    jid: &str,
    progress: &Progress,
    retention: u64,
) {
    let key = keys.status(jid);
    pipe.hset_multiple(
        &key,
        &[
            ("done", progress.done.to_string()),
            ("total", progress.total.to_string()),
            ("message", progress.message.clone()),
        ],
    )
    .ignore();
    pipe.expire(&key, retention as i64).ignore();
}

/// Adds to `pipe` how a tracked job's run ended; a final state is also pushed to the list
/// waiters block on.
pub(crate) fn ended(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    jid: &str,
    end: &End<'_>,
    now: f64,
    retention: u64,
) {
    let key = keys.status(jid);
    let state = end.state();
    let mut hset = redis::cmd("HSET");
    hset.arg(&key).arg("state").arg(state.name());
    match end {
        End::Succeeded { duration, result } => {
            hset.arg("duration")
                .arg(*duration)
                .arg("result")
                .arg(*result);
        }
        End::Retrying {
            retry_count,
            next_at,
            error,
        } => {
            hset.arg("retry_count")
                .arg(*retry_count)
                .arg("next_at")
                .arg(*next_at)
                .arg("error")
                .arg(*error);
        }
        End::Dead { error } => {
            hset.arg("error").arg(*error);
        }
        End::Discarded { reason } => {
            hset.arg("error").arg(*reason);
        }
        End::Cancelled => {}
    }
    if state.is_final() {
        hset.arg("finished_at").arg(now);
    }
    pipe.add_command(hset).ignore();
    pipe.expire(&key, retention as i64).ignore();
    if state.is_final() {
        // Pushed, not replaced: a second end (a rerun after a crash) adds an element,
        // which wakes waiters all the same.
        let done = keys.status_done(jid);
        pipe.rpush(&done, state.name()).ignore();
        pipe.expire(&done, retention as i64).ignore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_track_field_gives_the_retention() {
        assert_eq!(retention_in(r#"{"class":"X","args":[]}"#), None);
        assert_eq!(retention_in(r#"{"class":"X","track":true}"#), Some(86_400));
        assert_eq!(retention_in(r#"{"class":"X","track":60}"#), Some(60));
        assert_eq!(retention_in(r#"{"class":"X","track":false}"#), None);
        assert_eq!(retention_in(r#"{"class":"X","args":["\"track\""]}"#), None);
    }

    #[test]
    fn a_hash_without_a_state_is_not_a_status() {
        let mut hash = HashMap::new();
        hash.insert("done".to_string(), "3".to_string());
        assert!(JobStatus::from_hash("j", &hash).is_none());
        assert_eq!(progress_in(&hash).map(|p| p.done), Some(3));
        hash.insert("state".to_string(), "retrying".to_string());
        hash.insert("retry_count".to_string(), "2".to_string());
        let status = JobStatus::from_hash("j", &hash).unwrap();
        assert_eq!(
            (status.state, status.retry_count),
            (State::Retrying, Some(2))
        );
    }
}
