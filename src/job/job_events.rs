//! The stream of job events: one Redis Stream (`events`), capped, that any process can
//! read, in any language.
//!
//! Off unless asked for: a server started with `--events` (or
//! [`crate::ServerConfig::events`]) writes `started`, `progress`, `succeeded`, `failed`,
//! `retrying`, `dead`, `discarded` and `cancelled`; a client with
//! [`crate::Client::emit_events`] writes `enqueued` and `scheduled`. Each entry's fields are
//! `event`, `jid`, `class`, `queue` and `at` (epoch seconds), and, where they apply,
//! `error`, `retry_count`, `next_at`, `duration`, `done`, `total`, `message`, `process`.
//! The stream is trimmed to about the cap (`XADD … MAXLEN ~`); cancelling from the API or
//! the dashboard appends only to a stream that exists (`NOMKSTREAM`).
//!
//! Read it with [`crate::Client::events`], `psychiq events --follow`, or
//! `XREAD BLOCK 5000 STREAMS events $`.
//!
//! ```
//! use psychiq::job_events::EventKind;
//! assert_eq!("succeeded".parse::<EventKind>(), Ok(EventKind::Succeeded));
//! assert_eq!(EventKind::Dead.name(), "dead");
//! ```

use std::collections::HashMap;

use serde::Serialize;

use crate::store::keys::Keys;

/// How many entries the stream keeps by default (about: trimming is by whole nodes).
pub const DEFAULT_CAP: usize = 10_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Pushed to its queue.
    Enqueued,
    /// Pushed to the schedule.
    Scheduled,
    /// A run started.
    Started,
    /// The job reported its progress.
    Progress,
    /// A run ended well.
    Succeeded,
    /// A run failed and will run again (`retrying` follows with when).
    Failed,
    /// Put in the retry set.
    Retrying,
    /// Put in the dead set.
    Dead,
    /// Dropped on purpose.
    Discarded,
    /// Cancelled.
    Cancelled,
}

impl EventKind {
    /// Its name in the stream.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Enqueued => "enqueued",
            EventKind::Scheduled => "scheduled",
            EventKind::Started => "started",
            EventKind::Progress => "progress",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Retrying => "retrying",
            EventKind::Dead => "dead",
            EventKind::Discarded => "discarded",
            EventKind::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(name: &str) -> Result<EventKind, String> {
        Ok(match name {
            "enqueued" => EventKind::Enqueued,
            "scheduled" => EventKind::Scheduled,
            "started" => EventKind::Started,
            "progress" => EventKind::Progress,
            "succeeded" => EventKind::Succeeded,
            "failed" => EventKind::Failed,
            "retrying" => EventKind::Retrying,
            "dead" => EventKind::Dead,
            "discarded" => EventKind::Discarded,
            "cancelled" => EventKind::Cancelled,
            other => return Err(format!("unknown event {other:?}")),
        })
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Event {
    /// The stream entry's id (`1733550000000-0`); empty before it is written.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// To which job.
    pub jid: String,
    /// Its class.
    pub class: String,
    /// Its queue.
    pub queue: String,
    /// When (epoch seconds).
    pub at: f64,
    /// The rest: `error`, `retry_count`, `next_at`, `duration`, `done`, `total`, `message`,
    /// `process`, where they apply.
    pub detail: Vec<(String, String)>,
}

impl Event {
    /// An event of `kind` for a job, now, with no detail.
    pub(crate) fn new(kind: EventKind, jid: &str, class: &str, queue: &str, at: f64) -> Event {
        Event {
            id: String::new(),
            kind,
            jid: jid.to_string(),
            class: class.to_string(),
            queue: queue.to_string(),
            at,
            detail: Vec::new(),
        }
    }

    /// Adds a detail field.
    pub(crate) fn with(mut self, name: &str, value: impl ToString) -> Event {
        self.detail.push((name.to_string(), value.to_string()));
        self
    }

    /// A detail field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.detail
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads a stream entry; `None` if it is not one of ours.
    pub(crate) fn from_entry(id: String, fields: HashMap<String, String>) -> Option<Event> {
        let mut fields = fields;
        let kind = fields.remove("event")?.parse().ok()?;
        let mut take = |name: &str| fields.remove(name).unwrap_or_default();
        let (jid, class, queue) = (take("jid"), take("class"), take("queue"));
        let at = take("at").parse().unwrap_or(0.0);
        let mut detail: Vec<(String, String)> = fields.into_iter().collect();
        detail.sort();
        Some(Event {
            id,
            kind,
            jid,
            class,
            queue,
            at,
            detail,
        })
    }
}

/// Adds `XADD` of `event` to `pipe`: trimmed to about `cap`; with `create` false, only to a
/// stream that exists.
pub(crate) fn append(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    event: &Event,
    cap: usize,
    create: bool,
) {
    let mut xadd = redis::cmd("XADD");
    xadd.arg(keys.events());
    if !create {
        xadd.arg("NOMKSTREAM");
    }
    xadd.arg("MAXLEN")
        .arg("~")
        .arg(cap)
        .arg("*")
        .arg("event")
        .arg(event.kind.name())
        .arg("jid")
        .arg(&event.jid)
        .arg("class")
        .arg(&event.class)
        .arg("queue")
        .arg(&event.queue)
        .arg("at")
        .arg(event.at);
    for (name, value) in &event.detail {
        xadd.arg(name).arg(value);
    }
    pipe.add_command(xadd).ignore();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back() {
        let fields: HashMap<String, String> = [
            ("event", "retrying"),
            ("jid", "j1"),
            ("class", "C"),
            ("queue", "q"),
            ("at", "12.5"),
            ("retry_count", "0"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let event = Event::from_entry("1-0".into(), fields).unwrap();
        assert_eq!(event.kind, EventKind::Retrying);
        assert_eq!((event.jid.as_str(), event.at), ("j1", 12.5));
        assert_eq!(event.get("retry_count"), Some("0"));
        assert!(Event::from_entry("2-0".into(), HashMap::new()).is_none());
    }
}
