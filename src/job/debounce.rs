//! Debounced jobs: a burst of pushes with one key becomes one job, run `delay` after the
//! last push (or `max_wait` after the first). The job waits in the schedule; its key names
//! it in a hash (`debounce:KEY`: its jid, its exact bytes, when the burst began), and each
//! push is one Lua step (`debounce_push.lua`) on Redis's clock that replaces the waiting
//! job's arguments, keeping its jid. Once the job is due and moved to its queue, the next
//! push starts a new one.

use std::time::Duration;

use crate::store::keys::Keys;
use crate::store::scripts::DEBOUNCE_PUSH;

/// The payload field naming a debounced job's key (Sidekiq ignores it).
pub(crate) const DEBOUNCE_FIELD: &str = "debounce";

/// A debounced job's settings (see [`crate::Job::debounce`]).
#[derive(Debug, Clone)]
pub(crate) struct Debounce {
    pub(crate) key: String,
    pub(crate) delay: Duration,
    pub(crate) max_wait: Option<Duration>,
}

/// The hash that names the job waiting for debounce key `key`.
pub(crate) fn debounce_key(keys: &Keys, key: &str) -> String {
    keys.key(&format!("debounce:{key}"))
}

/// The script a debounced push runs.
pub(crate) const PUSH_SCRIPT: &str = DEBOUNCE_PUSH;

/// The SHA-1 of [`PUSH_SCRIPT`], as `EVALSHA` names it.
pub(crate) fn push_script_hash() -> &'static str {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(PUSH_SCRIPT));
    SCRIPT.get_hash()
}
