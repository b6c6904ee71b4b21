//! Rails' ActiveJob on Sidekiq's wire, both ways.
//!
//! A Rails app's `MyJob.perform_later(42, "x")` pushes a Sidekiq job whose class is a
//! wrapper (`ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper`, or
//! `Sidekiq::ActiveJob::Wrapper` from Sidekiq 8), whose `wrapped` is `"MyJob"`, and whose one
//! argument is ActiveJob's own record of the job:
//!
//! ```json
//! {"job_class":"MyJob","job_id":"7b1c…","provider_job_id":null,"queue_name":"default",
//!  "priority":null,"arguments":[42,"x"],"executions":0,"exception_executions":{},
//!  "locale":"en","timezone":"UTC","enqueued_at":"2026-12-07T03:55:00Z"}
//! ```
//!
//! **Running them.** A Psychiq server runs such a job with the worker registered under the
//! ActiveJob class name: a worker whose [`class_name`](crate::Worker::class_name) is
//! `"MyJob"` (or `registry.register_as("MyJob", …)`, or a TOML command worker of class
//! `MyJob`) serves both `MyJob.perform_later` and a plain Sidekiq job of class `MyJob`. It
//! receives the arguments as the job was given them: Rails' markers (`_aj_symbol_keys`,
//! `_aj_ruby2_keywords`, `_aj_hash_with_indifferent_access`) dropped, `{"_aj_serialized":
//! …, "value": V}` read as `V` (symbols as strings, times and dates as their ISO 8601
//! text, durations as seconds), a GlobalID as its `gid://…` string and keyword arguments
//! as a trailing object. [`crate::job::context::JobContext::active_job`] gives the rest
//! (`job_id`, `executions`, `locale`, …). A failed job keeps its payload as written, so
//! Sidekiq's dashboard shows `MyJob(42, "x")` and its "Retry now" brings it back.
//!
//! **Enqueuing them.** [`crate::Job::active_job`] (and `psychiq enqueue --active-job
//! MyJob '[42, "x"]'`) writes Rails 6.1's envelope with `JobWrapper`, the name every Sidekiq
//! from 6.4 to 8.0 runs, so a Ruby server calls `MyJob#perform(42, "x")`.
//!
//! ```
//! use psychiq::active_job;
//! use serde_json::json;
//!
//! let received = active_job::decode_arguments(json!([
//!     42,
//!     {"_aj_serialized": "ActiveJob::Serializers::SymbolSerializer", "value": "fast"},
//!     {"_aj_globalid": "gid://shop/User/7"},
//!     {"mode": "bulk", "_aj_ruby2_keywords": ["mode"]},
//! ]));
//! assert_eq!(received, json!([42, "fast", "gid://shop/User/7", {"mode": "bulk"}]));
//!
//! // Going the other way: what Rails writes for a string-keyed hash and for keywords.
//! let sent = active_job::encode_arguments(json!([{"sku": "A1"}, active_job::keywords(json!({"mode": "bulk"}))?]))?;
//! assert_eq!(sent, json!([{"sku": "A1", "_aj_symbol_keys": []}, {"mode": "bulk", "_aj_ruby2_keywords": ["mode"]}]));
//! # Ok::<(), psychiq::Error>(())
//! ```

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::job::payload::JobMap;

/// The wrapper class Rails (5 to 8) writes with Sidekiq 6 and 7, and that Psychiq writes:
/// Sidekiq 8 still runs it.
pub const JOB_WRAPPER: &str = "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper";

/// The wrapper class Sidekiq 8's own ActiveJob adapter writes.
pub const SIDEKIQ_WRAPPER: &str = "Sidekiq::ActiveJob::Wrapper";

/// Whether a payload's `class` is one of ActiveJob's wrappers.
pub fn is_wrapper(class: &str) -> bool {
    class == JOB_WRAPPER || class == SIDEKIQ_WRAPPER
}

/// The keys ActiveJob reserves in a serialized hash (Rails refuses a hash that has them).
const RESERVED: [&str; 5] = [
    "_aj_globalid",
    "_aj_symbol_keys",
    "_aj_ruby2_keywords",
    "_aj_hash_with_indifferent_access",
    "_aj_serialized",
];

/// The ActiveJob record inside a wrapped job: its class, its fields and its arguments as
/// the job receives them.
///
/// ```
/// let job = psychiq::active_job::ActiveJob::from_args(
///     r#"[{"job_class":"MyJob","job_id":"4f1d","arguments":[{"_aj_globalid":"gid://a/User/1"}],"executions":2}]"#,
/// )?;
/// assert_eq!(job.job_class(), "MyJob");
/// assert_eq!(job.job_id(), Some("4f1d"));
/// assert_eq!(job.executions(), Some(2));
/// assert_eq!(job.arguments(), r#"["gid://a/User/1"]"#);
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone)]
pub struct ActiveJob {
    /// The record without `arguments`; `job_class` is a string (checked when read).
    fields: JobMap,
    arguments: String,
}

impl ActiveJob {
    /// Reads the wrapper's `args` (`[{job_class, arguments, …}]`); the error says what is
    /// missing.
    pub fn from_args(args: &str) -> std::result::Result<ActiveJob, String> {
        let shape =
            "an ActiveJob wrapper's args must be [{\"job_class\": …, \"arguments\": […], …}]";
        let mut records: Vec<Value> =
            serde_json::from_str(args).map_err(|e| format!("{shape}: {e}"))?;
        let Some(Value::Object(mut fields)) = records.pop().filter(|_| records.is_empty()) else {
            return Err(format!("{shape}, got {args}"));
        };
        if !fields.get("job_class").is_some_and(Value::is_string) {
            return Err(format!("{shape}; job_class is missing or not a string"));
        }
        let arguments = match fields.remove("arguments") {
            Some(Value::Array(items)) => decode_arguments(Value::Array(items)),
            None | Some(Value::Null) => Value::Array(Vec::new()),
            Some(other) => return Err(format!("{shape}; arguments is {other}, not a list")),
        };
        Ok(ActiveJob {
            fields,
            arguments: arguments.to_string(),
        })
    }

    /// The ActiveJob class (`job_class`): the worker that runs it.
    pub fn job_class(&self) -> &str {
        self.fields
            .get("job_class")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// ActiveJob's own id (`job_id`, a UUID), not the Sidekiq jid.
    pub fn job_id(&self) -> Option<&str> {
        self.fields.get("job_id")?.as_str()
    }

    /// How many times ActiveJob has run it before (`executions`; Sidekiq's own retries do
    /// not change it, ActiveJob's `retry_on` does).
    pub fn executions(&self) -> Option<i64> {
        self.fields.get("executions")?.as_i64()
    }

    /// The queue ActiveJob was asked for (`queue_name`).
    pub fn queue_name(&self) -> Option<&str> {
        self.fields.get("queue_name")?.as_str()
    }

    /// Any other field of the record: `locale`, `timezone`, `priority`, `enqueued_at`,
    /// `exception_executions`, `provider_job_id`, … (`arguments` is [`ActiveJob::arguments`]).
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// The arguments as the job receives them, as a JSON array.
    pub fn arguments(&self) -> &str {
        &self.arguments
    }
}

/// ActiveJob's serialized arguments as the job receives them: markers dropped, serialized
/// objects as their `value`, GlobalIDs as their `gid://` string (see the module's docs).
pub fn decode_arguments(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(decode_arguments).collect()),
        Value::Object(mut map) => {
            if let (1, Some(Value::String(gid))) = (map.len(), map.get("_aj_globalid")) {
                return Value::String(gid.clone());
            }
            if let Some(Value::String(serializer)) = map.remove("_aj_serialized") {
                // Rails' own (Symbol, Time, Date, Duration, Module, …) are their `value`; an
                // app's own serializer, or one without a `value` (Range in Rails 7.1), keeps
                // its keys.
                if serializer.starts_with("ActiveJob::Serializers::")
                    && let Some(value) = map.remove("value")
                {
                    return decode_arguments(value);
                }
            }
            for marker in RESERVED {
                map.remove(marker);
            }
            Value::Object(
                map.into_iter()
                    .map(|(key, value)| (key, decode_arguments(value)))
                    .collect(),
            )
        }
        other => other,
    }
}

/// Arguments as ActiveJob serializes them: each string-keyed object gets Rails'
/// `"_aj_symbol_keys": []`. An object that already carries an `_aj_` key is Rails' own
/// form, made with [`keywords`], [`global_id`] or [`symbol`], and is written as it is.
/// JSON has nothing else Rails would serialize differently.
pub fn encode_arguments(args: Value) -> Result<Value> {
    match args {
        Value::Array(items) => items
            .into_iter()
            .map(encode_arguments)
            .collect::<Result<Vec<_>>>()
            .map(Value::Array),
        Value::Object(map) if map.keys().any(|key| RESERVED.contains(&key.as_str())) => {
            Ok(Value::Object(map))
        }
        Value::Object(map) => {
            let mut out = map
                .into_iter()
                .map(|(key, value)| Ok((key, encode_arguments(value)?)))
                .collect::<Result<Map<String, Value>>>()?;
            out.insert("_aj_symbol_keys".into(), Value::Array(Vec::new()));
            Ok(Value::Object(out))
        }
        other => Ok(other),
    }
}

/// Keyword arguments for a Ruby `perform(…, mode:, force:)`: pass
/// `keywords(json!({"mode": "bulk"}))` last. The keys become symbols in Ruby.
pub fn keywords(object: Value) -> Result<Value> {
    let Value::Object(map) = object else {
        return Err(Error::Payload(format!(
            "keyword arguments must be a JSON object, got {object}"
        )));
    };
    let names: Vec<Value> = map.keys().map(|key| Value::String(key.clone())).collect();
    let Value::Object(mut out) = encode_arguments(Value::Object(map))? else {
        unreachable!("an object encodes to an object")
    };
    out.remove("_aj_symbol_keys");
    out.insert("_aj_ruby2_keywords".into(), Value::Array(names));
    Ok(Value::Object(out))
}

/// A GlobalID argument (`gid://app/User/7`): Rails finds the record before `perform`.
pub fn global_id(gid: impl Into<String>) -> Value {
    let mut map = Map::new();
    map.insert("_aj_globalid".into(), Value::String(gid.into()));
    Value::Object(map)
}

/// A Ruby Symbol argument (`:fast`).
pub fn symbol(name: impl Into<String>) -> Value {
    let mut map = Map::new();
    map.insert(
        "_aj_serialized".into(),
        Value::String("ActiveJob::Serializers::SymbolSerializer".into()),
    );
    map.insert("value".into(), Value::String(name.into()));
    Value::Object(map)
}

/// What a [`crate::Job`] built for an ActiveJob class keeps besides its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Wrapped {
    pub(crate) job_class: String,
    pub(crate) job_id: String,
}

impl Wrapped {
    /// A record for a new job of `job_class`, with a new `job_id`.
    pub(crate) fn new(job_class: String) -> Wrapped {
        Wrapped {
            job_class,
            job_id: new_job_id(),
        }
    }

    /// The wrapper's `args` as Rails 6.1's adapter writes them: one record holding the
    /// (already encoded) `arguments`, written as they are.
    pub(crate) fn args(
        &self,
        queue: &str,
        arguments: &serde_json::value::RawValue,
        enqueued_at: f64,
    ) -> String {
        /// Rails 6.1's `ActiveJob::Base#serialize`, field for field.
        #[derive(serde::Serialize)]
        struct Record<'a> {
            job_class: &'a str,
            job_id: &'a str,
            provider_job_id: Option<()>,
            queue_name: &'a str,
            priority: Option<()>,
            arguments: &'a serde_json::value::RawValue,
            executions: u32,
            exception_executions: Map<String, Value>,
            locale: &'static str,
            timezone: &'static str,
            enqueued_at: String,
        }
        let record = Record {
            job_class: &self.job_class,
            job_id: &self.job_id,
            provider_job_id: None,
            queue_name: queue,
            priority: None,
            arguments,
            executions: 0,
            exception_executions: Map::new(),
            locale: "en",
            timezone: "UTC",
            enqueued_at: crate::clock::utc_iso8601(enqueued_at),
        };
        serde_json::to_string(&[record]).expect("a record of strings and JSON serialises")
    }
}

/// A new ActiveJob `job_id`: a random (version 4) UUID.
fn new_job_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_rails_serializer_reads_as_the_value_the_job_was_given() {
        let written = json!([
            1, 2.5, "s", null, true,
            {"_aj_serialized": "ActiveJob::Serializers::SymbolSerializer", "value": "sym"},
            {"a": 1, "_aj_symbol_keys": []},
            {"b": 2, "_aj_symbol_keys": ["b"]},
            {"c": 3, "_aj_hash_with_indifferent_access": true},
            {"_aj_serialized": "ActiveJob::Serializers::TimeWithZoneSerializer", "value": "2026-12-07T03:55:00.000000000Z"},
            {"_aj_serialized": "ActiveJob::Serializers::DurationSerializer", "value": 3600, "parts": [["hours", 1]]},
            {"_aj_serialized": "ActiveJob::Serializers::RangeSerializer", "begin": 1, "end": 5, "exclude_end": false},
            {"_aj_serialized": "MoneySerializer", "value": 100, "currency": "EUR"},
            {"_aj_globalid": "gid://app/User/1"},
            [{"deep": {"_aj_serialized": "ActiveJob::Serializers::DateSerializer", "value": "2026-12-07"}, "_aj_symbol_keys": ["deep"]}],
            {"kw": 1, "_aj_ruby2_keywords": ["kw"]},
        ]);
        assert_eq!(
            decode_arguments(written),
            json!([1, 2.5, "s", null, true, "sym", {"a": 1}, {"b": 2}, {"c": 3},
                "2026-12-07T03:55:00.000000000Z", 3600,
                {"begin": 1, "end": 5, "exclude_end": false},
                {"value": 100, "currency": "EUR"}, "gid://app/User/1",
                [{"deep": "2026-12-07"}], {"kw": 1}])
        );
    }

    #[test]
    fn a_wrapper_without_its_record_says_what_it_needs() {
        assert!(
            ActiveJob::from_args("[1]")
                .unwrap_err()
                .contains("job_class")
        );
        assert!(ActiveJob::from_args(r#"[{"arguments":[]}]"#).is_err());
        assert!(ActiveJob::from_args(r#"[{"job_class":"J","arguments":7}]"#).is_err());
        let job = ActiveJob::from_args(r#"[{"job_class":"J"}]"#).unwrap();
        assert_eq!(job.arguments(), "[]");
    }

    #[test]
    fn encoding_marks_hashes_and_keeps_rails_forms() {
        let encoded =
            encode_arguments(json!([1, {"a": {"b": 2}}, global_id("gid://x/Y/1"), symbol("s")]))
                .unwrap();
        assert_eq!(
            encoded,
            json!([1, {"a": {"b": 2, "_aj_symbol_keys": []}, "_aj_symbol_keys": []},
                {"_aj_globalid": "gid://x/Y/1"},
                {"_aj_serialized": "ActiveJob::Serializers::SymbolSerializer", "value": "s"}])
        );
        assert_eq!(
            decode_arguments(encoded),
            json!([1, {"a": {"b": 2}}, "gid://x/Y/1", "s"])
        );
        assert!(keywords(json!([1])).is_err());
    }

    #[test]
    fn job_ids_are_version_4_uuids() {
        let id = new_job_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]));
        assert_ne!(id, new_job_id());
    }
}
