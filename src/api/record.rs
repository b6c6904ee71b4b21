//! One job as the API reads it from a queue or a set ([`JobRecord`]), and which set it is in ([`SetKind`]).

use super::*;

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
    pub(super) raw: Vec<u8>,
    /// `raw` escaped, when it is not UTF-8 (when it is, `raw` is its own text).
    pub(super) escaped: Option<String>,
    pub(super) item: Option<JobMap>,
    pub(super) score: Option<f64>,
    pub(super) queue: String,
}

impl JobRecord {
    pub(super) fn new(raw: Vec<u8>, score: Option<f64>, queue: Option<&str>) -> JobRecord {
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
    /// Sealed arguments (see [`crate::encryption`]) show as `[encrypted]`.
    pub fn display_args(&self) -> String {
        if self.is_encrypted() {
            return crate::encryption::SHOWN.to_string();
        }
        let args = self.field_json("args").unwrap_or("null");
        let active_job = crate::job::active_job::is_wrapper(self.class())
            .then(|| crate::job::active_job::ActiveJob::from_args(args).ok())
            .flatten();
        match active_job {
            Some(active_job) => active_job.arguments().to_string(),
            None => args.to_string(),
        }
    }

    /// Whether its arguments are sealed (see [`crate::encryption`]).
    pub fn is_encrypted(&self) -> bool {
        self.item
            .as_ref()
            .is_some_and(|i| i.contains_key(crate::encryption::ENCRYPTED_FIELD))
    }

    /// The score in its sorted set (when it runs, or when it failed or died).
    pub fn score(&self) -> Option<f64> {
        self.score
    }

    /// The queue it is in or will go to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    pub(super) fn str_field(&self, key: &str) -> Option<&str> {
        self.item.as_ref()?.get(key)?.as_str()
    }

    pub(super) fn time_field(&self, key: &str) -> Option<f64> {
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
