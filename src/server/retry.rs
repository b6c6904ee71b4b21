//! What happens to a job that failed: Sidekiq's retry rules, the dead set and its trims.
//!
//! The rules, as in Sidekiq's `job_retry.rb`:
//! - `error_message`, `error_class` are set; the first failure sets `failed_at` and
//!   `retry_count = 0`, later ones set `retried_at` and add one to `retry_count`;
//! - the job returns to `retry_queue` if set, else to the queue it came from;
//! - `retry: false` drops the job (it is still counted as failed); `retry: N` allows N
//!   retries (`0` or a negative number goes straight to the dead set); `true` allows 25;
//! - `retry_for: S` (Sidekiq 7.1) allows no retry once S seconds have passed since the
//!   first failure (`0`: none);
//! - the delay is `count^4 + 15 + rand(10 * (count + 1))` seconds (Sidekiq 8's jitter), or
//!   exactly the worker's `retry_in` (Sidekiq adds its jitter there too; a delay a worker
//!   names is kept as named);
//! - an exhausted job calls the worker's `retries_exhausted`, then goes to the dead set
//!   (unless `dead: false`: then it gets `discarded_at` and goes nowhere), which is trimmed
//!   to 180 days and fewer than 10,000 entries;
//! - the death handlers hear of every job that will not run again: dead, `retry: false`,
//!   or exhausted with `dead: false`.

use std::io::{Read, Write};

use base64::Engine;
use serde_json::Value;

use crate::job::failure::JobError;
use crate::job::payload::{self, JobMap, Retry, Rewrite};
use crate::job::worker::{Backtrace, RawWorker};
use crate::store::keys::Keys;

/// Jobs older than this leave the dead set (Sidekiq's `dead_timeout_in_seconds`, 180 days).
pub const DEAD_TIMEOUT_SECS: f64 = 180.0 * 24.0 * 60.0 * 60.0;
/// The dead set keeps fewer than this many jobs (Sidekiq's `dead_max_jobs`).
pub const DEAD_MAX_JOBS: isize = 10_000;
/// Longest `error_message` kept, as Sidekiq cuts it.
const MAX_MESSAGE_CHARS: usize = 10_000;

/// Where a failed job goes next.
#[derive(Debug, PartialEq)]
pub(crate) enum Disposition {
    /// Into the retry set, to run again at `at` (epoch seconds) in `queue`.
    Retry {
        at: f64,
        payload: String,
        queue: String,
    },
    /// Into the dead set of `queue` (the queue its payload names).
    Dead { payload: String, queue: String },
    /// Nowhere: `retry: false`, or exhausted with `dead: false`.
    Drop,
}

/// Sidekiq's default delay before retry number `count + 1`, without jitter.
pub fn base_delay_secs(count: u32) -> u64 {
    (count as u64).pow(4) + 15
}

/// Sidekiq 8's jitter: `rand(10 * (count + 1))` (6 and 7 took `rand(10) * (count + 1)`:
/// the same range in steps of `count + 1`).
fn jitter_secs(count: u32) -> u64 {
    rand::random_range(0..10 * (count as u64 + 1))
}

/// Writes the failure into `job` and decides where it goes.
///
/// `handler` is the job's worker if this process knows its class; its options apply where
/// the payload is silent, and its hooks are called. `exhaust_now` skips the retries
/// (arguments that can never fit the worker).
pub(crate) fn plan_failure(
    job: &mut Rewrite,
    queue: &str,
    error: &JobError,
    handler: Option<&dyn RawWorker>,
    exhaust_now: bool,
    now: f64,
) -> Disposition {
    let default_options = crate::job::worker::WorkerOptions::default();
    let options = handler.map_or(&default_options, |h| h.options());
    let retry = Retry::from_value(job.get("retry")).unwrap_or(options.retry);
    let Some(max_retries) = retry.max_retries() else {
        return Disposition::Drop;
    };

    // It ran to an ordinary failure, so it is not what took earlier processes down, and a
    // later snooze starts a new count.
    job.shift_remove("recovery_count");
    job.shift_remove("snoozed");
    job.shift_remove("snoozed_at");
    let retry_queue = job
        .get("retry_queue")
        .and_then(Value::as_str)
        .map_or_else(|| queue.to_string(), str::to_string);
    job.insert("queue".into(), Value::from(retry_queue.as_str()));
    job.insert(
        "error_message".into(),
        Value::from(truncate(error.message())),
    );
    job.insert("error_class".into(), Value::from(error.class()));
    // Ruby's "Retry Now" leaves -1 after a first failure, so the next failure is 0 again.
    let count = match job.get("retry_count").and_then(Value::as_i64) {
        Some(previous) => {
            job.insert("retried_at".into(), payload::timestamp_value(now));
            (previous + 1).clamp(0, u32::MAX as i64) as u32
        }
        None => {
            job.insert("failed_at".into(), payload::timestamp_value(now));
            0
        }
    };
    job.insert("retry_count".into(), Value::from(count));
    if let Some(lines) = backtrace_lines(job.get("backtrace"), options.backtrace, error.backtrace())
    {
        job.insert(
            "error_backtrace".into(),
            Value::from(encode_backtrace(lines)),
        );
    }

    // Sidekiq 7.1's `retry_for`: no retry once that many seconds have passed since the
    // first failure (0: none at all).
    let retry_for_passed = job
        .get("retry_for")
        .and_then(Value::as_f64)
        .zip(job.get("failed_at").and_then(payload::timestamp_secs))
        .is_some_and(|(retry_for, failed_at)| failed_at + retry_for <= now);
    if exhaust_now || count >= max_retries || retry_for_passed {
        if let Some(handler) = handler {
            handler.retries_exhausted(job, error);
        }
        let dead = job
            .get("dead")
            .and_then(Value::as_bool)
            .unwrap_or(options.dead);
        if !dead {
            // As Sidekiq marks it for the death handlers, the only ones to see it.
            job.insert("discarded_at".into(), payload::timestamp_value(now));
            return Disposition::Drop;
        }
        return Disposition::Dead {
            payload: job.to_json(),
            queue: retry_queue,
        };
    }

    // The worker's own delay is kept exactly; Sidekiq's formula gets its jitter.
    let delay = match handler
        .and_then(|h| h.retry_in(count, error))
        .filter(|d| !d.is_zero())
    {
        Some(delay) => delay.as_secs_f64(),
        None => (base_delay_secs(count) + jitter_secs(count)) as f64,
    };
    let at = now + delay;
    Disposition::Retry {
        at,
        payload: job.to_json(),
        queue: retry_queue,
    }
}

/// A payload that is not a JSON object, wrapped so the dead set shows why, with the
/// original kept: as its only argument, and, when it is not UTF-8 (a JSON string cannot hold
/// such bytes), shown escaped there and kept exactly, base64-encoded, in `raw_base64`.
pub(crate) fn wrap_unreadable(raw: &[u8], queue: &str, reason: &str, now: f64) -> String {
    let mut job = JobMap::new();
    job.insert("retry".into(), Value::Bool(false));
    job.insert("queue".into(), Value::from(queue));
    job.insert("class".into(), Value::from("Psychiq::InvalidPayload"));
    job.insert(
        "args".into(),
        Value::Array(vec![Value::from(crate::job::text::lossless(raw))]),
    );
    if std::str::from_utf8(raw).is_err() {
        job.insert(
            "raw_base64".into(),
            Value::from(base64::engine::general_purpose::STANDARD.encode(raw)),
        );
    }
    job.insert("jid".into(), Value::from(payload::new_jid()));
    job.insert("error_message".into(), Value::from(truncate(reason)));
    job.insert("error_class".into(), Value::from("Psychiq::InvalidPayload"));
    job.insert("failed_at".into(), payload::timestamp_value(now));
    job.insert("retry_count".into(), Value::from(0));
    to_json(&job)
}

/// Adds a job of `queue` to the dead set and trims it, in one transaction.
pub(crate) fn add_to_dead(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    queue: &str,
    payload: &str,
    now: f64,
) {
    let dead = keys.dead_of(queue);
    pipe.zadd(&dead, payload, now).ignore();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(&dead)
        .arg("-inf")
        .arg(format!("({}", now - DEAD_TIMEOUT_SECS))
        .ignore();
    pipe.zremrangebyrank(&dead, 0, -DEAD_MAX_JOBS).ignore();
}

/// Adds the Redis commands that carry out `disposition` to `pipe`.
pub(crate) fn commands(
    disposition: &Disposition,
    keys: &Keys,
    now: f64,
    pipe: &mut redis::Pipeline,
) {
    match disposition {
        Disposition::Retry { at, payload, queue } => {
            pipe.zadd(keys.retry_of(queue), payload, *at).ignore();
        }
        Disposition::Dead { payload, queue } => add_to_dead(pipe, keys, queue, payload, now),
        Disposition::Drop => {}
    }
}

/// The sorted set and member [`commands`] write for `disposition` (`None` for a drop).
pub(crate) fn written_as<'a>(
    disposition: &'a Disposition,
    keys: &Keys,
) -> Option<(String, &'a str)> {
    match disposition {
        Disposition::Retry { payload, queue, .. } => Some((keys.retry_of(queue), payload)),
        Disposition::Dead { payload, queue } => Some((keys.dead_of(queue), payload)),
        Disposition::Drop => None,
    }
}

fn to_json(job: &JobMap) -> String {
    serde_json::to_string(job).expect("a JSON map always serialises")
}

/// `message` cut to the 10,000 characters an `error_message` keeps (logs cut it too).
pub(crate) fn truncate(message: &str) -> &str {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => &message[..cut],
        None => message,
    }
}

/// The lines to store: the payload's `backtrace` (true or N) wins over the worker option.
fn backtrace_lines<'a>(
    payload_option: Option<&Value>,
    worker_option: Backtrace,
    lines: &'a [String],
) -> Option<&'a [String]> {
    let limit = match payload_option {
        Some(Value::Bool(true)) => usize::MAX,
        Some(Value::Number(n)) => n.as_u64().map_or(0, |n| n as usize),
        Some(_) => 0,
        None => match worker_option {
            Backtrace::Off => 0,
            Backtrace::All => usize::MAX,
            Backtrace::Lines(n) => n,
        },
    };
    (limit > 0).then(|| &lines[..lines.len().min(limit)])
}

/// Encodes backtrace lines as Sidekiq does: base64 of zlib of a JSON array.
pub fn encode_backtrace(lines: &[String]) -> String {
    let json = serde_json::to_vec(lines).expect("strings always serialise");
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&json).expect("writing to memory");
    let compressed = encoder.finish().expect("writing to memory");
    base64::engine::general_purpose::STANDARD.encode(compressed)
}

/// Decodes an `error_backtrace`, strict or MIME base64 (Sidekiq 6.4 writes the latter).
pub fn decode_backtrace(encoded: &str) -> Option<Vec<String>> {
    let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()?;
    // Bounded: a crafted payload must not inflate to gigabytes on a dashboard page view.
    const MAX_BACKTRACE_BYTES: u64 = 1 << 20;
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(compressed.as_slice())
        .take(MAX_BACKTRACE_BYTES)
        .read_to_end(&mut json)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(json: &str) -> Rewrite {
        Rewrite::parse(json).unwrap()
    }

    #[test]
    fn first_failure_schedules_a_retry_within_sidekiqs_window() {
        let mut j = job(r#"{"retry":true,"queue":"default","class":"X","args":[],"jid":"a"}"#);
        let now = 1_000.0;
        let Disposition::Retry { at, .. } =
            plan_failure(&mut j, "low", &JobError::msg("boom"), None, false, now)
        else {
            panic!("expected a retry")
        };
        assert!((now + 15.0..=now + 24.0).contains(&at), "{at}");
        assert_eq!(j["queue"], "low");
        assert_eq!(j["retry_count"], 0);
        assert_eq!(j["failed_at"], 1_000.0);
    }

    #[test]
    fn retry_zero_goes_straight_to_dead_and_false_drops() {
        let mut j = job(r#"{"retry":0,"class":"X","args":[]}"#);
        assert!(matches!(
            plan_failure(&mut j, "q", &JobError::msg("x"), None, false, 1.0),
            Disposition::Dead { .. }
        ));
        let mut j = job(r#"{"retry":false,"class":"X","args":[]}"#);
        assert_eq!(
            plan_failure(&mut j, "q", &JobError::msg("x"), None, false, 1.0),
            Disposition::Drop
        );
    }

    #[test]
    fn a_negative_retry_and_an_elapsed_retry_for_go_to_dead_as_in_sidekiq() {
        let dies = |json: &str, now: f64| {
            let mut j = job(json);
            matches!(
                plan_failure(&mut j, "q", &JobError::msg("x"), None, false, now),
                Disposition::Dead { .. }
            )
        };
        assert!(dies(r#"{"retry":-1,"class":"X","args":[]}"#, 1.0));
        assert!(dies(
            r#"{"retry":true,"retry_for":0,"class":"X","args":[]}"#,
            1.0
        ));
        // An hour to retry in, first failed 10 minutes ago (Sidekiq 8's milliseconds).
        let later = r#"{"retry":true,"retry_for":3600,"retry_count":0,"failed_at":1000000000000,"class":"X","args":[]}"#;
        assert!(!dies(later, 1_000_000_600.0));
        assert!(dies(later, 1_000_003_601.0));
    }

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(
            truncate(&"é".repeat(20_000)).chars().count(),
            MAX_MESSAGE_CHARS
        );
    }

    #[test]
    fn mime_base64_backtraces_decode() {
        let lines: Vec<String> = (0..50)
            .map(|i| format!("app/jobs/x.rb:{i}:in `perform'"))
            .collect();
        let strict = encode_backtrace(&lines);
        let mime: String = strict
            .as_bytes()
            .chunks(60)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert_eq!(decode_backtrace(&mime), Some(lines));
    }
}

#[cfg(test)]
mod examples {
    // Usage examples of internal helpers (doc examples before these became crate-private).
    #[test]
    fn base_delay_secs_example() {
        assert_eq!(crate::server::retry::base_delay_secs(0), 15);
        assert_eq!(crate::server::retry::base_delay_secs(5), 640);
    }
    #[test]
    fn decode_backtrace_example() {
        use crate::server::retry::{decode_backtrace, encode_backtrace};
        let lines = vec!["src/jobs.rs:10".to_string()];
        assert_eq!(decode_backtrace(&encode_backtrace(&lines)), Some(lines));
    }
}
