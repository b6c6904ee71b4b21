//! What makes two jobs the same, and the lock that keeps the second out: a unique job's
//! key (its class, queue and arguments as canonical JSON, SHA-1'd), its lock's name, when the
//! lock goes ([`UniqueUntil`]), and the Lua step that takes the lock and pushes the job at
//! once. The client pushes through it; the server's `UniqueUnlock` (in `extensions`) and
//! every path a job leaves by let the lock go.

use serde_json::Value;

use crate::store::keys::Keys;
use crate::store::scripts::UNIQUE_PUSH;

/// When a unique job's lock is let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UniqueUntil {
    /// When the job has run to its end: done, discarded or skipped (the default). A failed
    /// job keeps it while it waits for its retry; one that dies (or is killed, deleted or
    /// cleared by hand) lets it go.
    #[default]
    Success,
    /// When the job starts: a second copy may be pushed while the first runs.
    Start,
    /// Only when its TTL (`unique_for`) runs out.
    Expiry,
}

impl UniqueUntil {
    /// The payload's `unique_until` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UniqueUntil::Success => "success",
            UniqueUntil::Start => "start",
            UniqueUntil::Expiry => "expiry",
        }
    }

    #[cfg(feature = "server")]
    pub(crate) fn parse(text: Option<&str>) -> UniqueUntil {
        match text {
            Some("start") => UniqueUntil::Start,
            Some("expiry") => UniqueUntil::Expiry,
            _ => UniqueUntil::Success,
        }
    }
}

/// `unique_key` for a job: SHA-1 (hex) of its class, queue and `identity` (its arguments as
/// canonical JSON, or what a key function gave).
pub(crate) fn unique_key(class: &str, queue: &str, identity: &str) -> String {
    let mut hash = sha1_smol::Sha1::new();
    for part in [class, "\0", queue, "\0", identity] {
        hash.update(part.as_bytes());
    }
    hash.digest().to_string()
}

/// JSON text with every object's keys sorted, so `{"a":1,"b":2}` and `{"b":2,"a":1}` name
/// the same job.
pub(crate) fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The lock of `unique_key`.
pub(crate) fn lock_key(keys: &Keys, unique_key: &str) -> String {
    keys.key(&format!("unique:{unique_key}"))
}

/// The script that takes a unique job's lock and writes it: the client's pipelines load it
/// (`SCRIPT LOAD`) before the `EVALSHA`s of their unique jobs.
pub(crate) const PUSH_SCRIPT: &str = UNIQUE_PUSH;

/// The SHA-1 of [`PUSH_SCRIPT`], as `EVALSHA` names it.
pub(crate) fn push_script_hash() -> &'static str {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(PUSH_SCRIPT));
    SCRIPT.get_hash()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_job_has_the_same_key_whatever_its_key_order() {
        let a = canonical_json(&serde_json::json!([1, {"b": 2, "a": {"d": 1, "c": 2}}]));
        let b = canonical_json(&serde_json::json!([1, {"a": {"c": 2, "d": 1}, "b": 2}]));
        assert_eq!(a, b);
        assert_eq!(
            unique_key("X", "default", &a),
            unique_key("X", "default", &b)
        );
        assert_ne!(unique_key("X", "default", &a), unique_key("X", "other", &a));
        assert_ne!(
            unique_key("X", "default", &a),
            unique_key("Y", "default", &a)
        );
        assert_eq!(unique_key("X", "q", "[]").len(), 40);
    }
}
