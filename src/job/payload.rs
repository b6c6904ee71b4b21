//! The job payload: Sidekiq's JSON object, how it is written and how it is read.
//!
//! Written: compact JSON, keys in Sidekiq's order, timestamps as float seconds that always
//! carry a fraction (`1700000000.0`), which Sidekiq 6, 7 and 8 all read as seconds.
//! Read: a timestamp may be a float (seconds) or an integer (milliseconds, as Sidekiq 8
//! writes). A payload is kept as the exact string read from Redis; when it must be
//! rewritten (retry, death) it is parsed into an order-preserving map so unknown keys
//! survive.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A parsed payload that can be rewritten without losing keys it does not know.
pub type JobMap = Map<String, Value>;

/// Integers below this are seconds, at or above it milliseconds: 10^11 seconds is the year
/// 5138, 10^11 milliseconds March 1973.
const MILLIS_FROM: i64 = 100_000_000_000;

/// Reads a payload timestamp by its magnitude: a float is seconds (Sidekiq up to 7), an
/// integer below 10^11 seconds (the original Lisp Psychiq writes whole seconds), a larger
/// one milliseconds (Sidekiq 8).
pub fn timestamp_secs(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) if n.is_f64() => n.as_f64(),
        Value::Number(n) => n.as_i64().map(|whole| {
            if whole.abs() < MILLIS_FROM {
                whole as f64
            } else {
                whole as f64 / 1000.0
            }
        }),
        _ => None,
    }
}

/// A timestamp as JSON: always a float, so it is written with a fraction (`1700000000.0`).
pub fn timestamp_value(secs: f64) -> Value {
    serde_json::Number::from_f64(secs).map_or(Value::Null, Value::Number)
}

/// A timestamp as the text Redis and Lua scripts receive, with a fraction.
pub(crate) fn timestamp_text(secs: f64) -> String {
    format!("{secs:?}")
}

/// A new job id: 24 lowercase hex characters, like Sidekiq's `SecureRandom.hex(12)`.
pub fn new_jid() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 12] = rand::random();
    let mut jid = String::with_capacity(24);
    for b in bytes {
        jid.push(HEX[(b >> 4) as usize] as char);
        jid.push(HEX[(b & 0xf) as usize] as char);
    }
    jid
}

/// A payload parsed to be changed (a retry, a death, a recovery, "Retry Now"): the fields as
/// an order-preserving map to edit, and the exact text each had, so that every field left
/// unchanged is written back byte for byte. Integers past 64 bits (which a map holds only as
/// floats) and numbers spelled `1e3` or `2.50` survive as they were written.
///
/// ```ignore
/// let mut job = Rewrite::parse(r#"{"args":[123456789012345678901234],"retry_count":1}"#)?;
/// job.insert("retry_count".into(), 2.into());
/// assert_eq!(job.to_json(), r#"{"args":[123456789012345678901234],"retry_count":2}"#);
/// ```
#[derive(Debug)]
pub(crate) struct Rewrite {
    job: JobMap,
    original: JobMap,
    text: std::collections::HashMap<String, Box<RawValue>>,
}

impl Rewrite {
    /// Parses a payload that must be a JSON object.
    pub fn parse(payload: &str) -> serde_json::Result<Rewrite> {
        let job: JobMap = serde_json::from_str(payload)?;
        let text = serde_json::from_str(payload)?;
        Ok(Rewrite {
            original: job.clone(),
            job,
            text,
        })
    }

    /// The payload as JSON: changed fields written anew, the others as they were.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (key, value)) in self.job.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(key).expect("a string serialises"));
            out.push(':');
            match self.text.get(key) {
                Some(raw) if self.original.get(key) == Some(value) => out.push_str(raw.get()),
                _ => out.push_str(&serde_json::to_string(value).expect("a JSON value serialises")),
            }
        }
        out.push('}');
        out
    }
}

impl std::ops::Deref for Rewrite {
    type Target = JobMap;
    fn deref(&self) -> &JobMap {
        &self.job
    }
}

impl std::ops::DerefMut for Rewrite {
    fn deref_mut(&mut self) -> &mut JobMap {
        &mut self.job
    }
}

/// The payload of a job being snoozed: `snoozed` (how many times) one higher and
/// `snoozed_at` (when the first of this run of snoozes was) set, so a rate limit can back
/// off and give up. `None` for a payload that is not a JSON object in UTF-8 (it is
/// snoozed as it is).
pub(crate) fn mark_snoozed(raw: &[u8], now: f64) -> Option<String> {
    let mut job = Rewrite::parse(std::str::from_utf8(raw).ok()?).ok()?;
    let count = job.get("snoozed").and_then(Value::as_u64).unwrap_or(0) + 1;
    job.insert("snoozed".into(), Value::from(count));
    if !job.contains_key("snoozed_at") {
        job.insert("snoozed_at".into(), timestamp_value(now));
    }
    Some(job.to_json())
}

/// The payload with `enqueued_at` set to `now`, as a push back to its queue writes it.
pub(crate) fn mark_enqueued(raw: &[u8], now: f64) -> Option<String> {
    let mut job = Rewrite::parse(std::str::from_utf8(raw).ok()?).ok()?;
    job.insert("enqueued_at".into(), timestamp_value(now));
    Some(job.to_json())
}

/// The fields the server needs to run a job, borrowed from the raw payload (parsed once).
#[derive(Debug, Deserialize)]
pub(crate) struct JobHead<'a> {
    #[serde(borrow)]
    pub class: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub args: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub jid: Option<std::borrow::Cow<'a, str>>,
}

/// Whether payload `raw` is job `jid`'s: a byte search first, then its head read.
pub(crate) fn names_jid(raw: &[u8], jid: &str) -> bool {
    let needle = jid.as_bytes();
    if needle.is_empty() || !raw.windows(needle.len()).any(|w| w == needle) {
        return false;
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|text| serde_json::from_str::<JobHead<'_>>(text).ok())
        .is_some_and(|head| head.jid.as_deref() == Some(jid))
}

/// The payload's `retry_count`, found without parsing the whole payload (for the job's
/// tracing span); `None` when absent or not a plain integer.
pub(crate) fn retry_count_hint(text: &str) -> Option<i64> {
    let at = text.find("\"retry_count\":")? + "\"retry_count\":".len();
    let rest = text[at..].trim_start();
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

/// How often a failed job is retried, as the payload's `retry` field says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// `true`: up to the default maximum (25 retries).
    Default,
    /// An integer: at most this many retries; `0` sends a failed job straight to the dead set.
    Max(u32),
    /// `false`: a failed job is counted and dropped (no retry set, no dead set).
    Off,
}

impl Retry {
    /// The default number of retries, as in Sidekiq and the original.
    pub const DEFAULT_MAX: u32 = 25;

    /// The payload value: `true`, an integer or `false`.
    pub fn to_value(self) -> Value {
        match self {
            Retry::Default => Value::Bool(true),
            Retry::Max(n) => Value::from(n),
            Retry::Off => Value::Bool(false),
        }
    }

    /// Reads a payload's `retry` value; `None` when absent, `null` or not understood. A
    /// negative number allows no retry, as in Sidekiq (the job dies at its first failure).
    pub fn from_value(value: Option<&Value>) -> Option<Retry> {
        match value? {
            Value::Bool(true) => Some(Retry::Default),
            Value::Bool(false) => Some(Retry::Off),
            Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => Some(Retry::Max(0)),
            Value::Number(n) => n
                .as_u64()
                .map(|n| Retry::Max(n.min(u32::MAX as u64) as u32)),
            _ => None,
        }
    }

    /// The most retries allowed, or `None` when retries are off.
    pub fn max_retries(self) -> Option<u32> {
        match self {
            Retry::Default => Some(Self::DEFAULT_MAX),
            Retry::Max(n) => Some(n),
            Retry::Off => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_keep_unchanged_fields_byte_for_byte() {
        let raw =
            r#"{"args":[123456789012345678901234567890,1e3,"\u00e9"],"retry_count":1,"x":2.50}"#;
        let mut job = Rewrite::parse(raw).unwrap();
        assert_eq!(job.to_json(), raw);
        job.insert("retry_count".into(), Value::from(2));
        job.shift_remove("x");
        job.insert("error_message".into(), Value::from("boom"));
        assert_eq!(
            job.to_json(),
            r#"{"args":[123456789012345678901234567890,1e3,"\u00e9"],"retry_count":2,"error_message":"boom"}"#
        );
    }

    #[test]
    fn retry_counts_are_found_cheaply() {
        assert_eq!(retry_count_hint(r#"{"retry_count":12,"x":1}"#), Some(12));
        assert_eq!(retry_count_hint(r#"{"retry_count": -1}"#), Some(-1));
        assert_eq!(retry_count_hint(r#"{"retry_count":null}"#), None);
        assert_eq!(retry_count_hint(r#"{"args":[]}"#), None);
    }

    #[test]
    fn timestamps_are_written_with_a_fraction() {
        let json = serde_json::to_string(&timestamp_value(1_700_000_000.0)).unwrap();
        assert_eq!(json, "1700000000.0");
        assert_eq!(timestamp_text(1_700_000_000.0), "1700000000.0");
        assert_eq!(
            timestamp_text(1_795_714_845.369_764_8),
            "1795714845.3697648"
        );
    }

    #[test]
    fn retry_values_follow_sidekiq() {
        assert_eq!(
            Retry::from_value(Some(&Value::Bool(true))),
            Some(Retry::Default)
        );
        assert_eq!(
            Retry::from_value(Some(&Value::from(0))),
            Some(Retry::Max(0))
        );
        assert_eq!(Retry::from_value(Some(&Value::Null)), None);
        assert_eq!(Retry::from_value(None), None);
        assert_eq!(Retry::Max(3).to_value(), Value::from(3));
        assert_eq!(Retry::Default.max_retries(), Some(25));
        assert_eq!(Retry::Off.max_retries(), None);
    }
}

#[cfg(test)]
mod examples {
    // Usage examples of internal helpers (doc examples before these became crate-private).
    #[test]
    fn timestamp_secs_example() {
        use crate::job::payload::timestamp_secs;
        use serde_json::json;
        assert_eq!(timestamp_secs(&json!(1700000000.5)), Some(1700000000.5));
        assert_eq!(timestamp_secs(&json!(1700000000500u64)), Some(1700000000.5));
        // Whole seconds, as the original Lisp Psychiq writes them.
        assert_eq!(timestamp_secs(&json!(1796599381)), Some(1796599381.0));
        assert_eq!(timestamp_secs(&json!("soon")), None);
    }
    #[test]
    fn iso8601_is_rubys_utc_form() {
        assert_eq!(crate::clock::utc_iso8601(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(
            crate::clock::utc_iso8601(1_796_599_381.7),
            "2026-12-06T23:23:01Z"
        );
        assert_eq!(
            crate::clock::utc_iso8601(951_782_400.0),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn new_jid_example() {
        let jid = crate::job::payload::new_jid();
        assert_eq!(jid.len(), 24);
        assert!(
            jid.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
}
