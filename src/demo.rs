//! Small workers that demos, tests and benchmarks rely on, by these class names:
//! `Noop`, `Echo`, `Fail`, `Sleep`, `Panic`, `Abort` (which kills its own process, for
//! crash tests) and `Clock` (which records when it started, for latency measurements). The `psychiq` binary serves them as the
//! system `demo` (`psychiq -s demo`).
//!
//! ```
//! let registry = psychiq::demo::registry();
//! assert_eq!(registry.class_names(), ["Abort", "Clock", "Echo", "Fail", "Noop", "Panic", "Sleep"]);
//! ```

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::{JobError, JobResult, NoArgs, Registry, Worker};

/// Does nothing.
pub(crate) struct Noop;
impl Worker for Noop {
    type Args = NoArgs;
    async fn perform(&self, _: NoArgs) -> JobResult {
        Ok(())
    }
}

/// `[path, ...]`: appends its whole args array as one line of JSON to `path`.
pub(crate) struct Echo;
impl Worker for Echo {
    type Args = Vec<Value>;
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        append_line(args.first(), &args)
    }
}

/// `[message]`: fails with `message` (error class `RuntimeError`).
pub(crate) struct Fail;
impl Worker for Fail {
    type Args = Vec<Value>;
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        Err(JobError::msg(text(args.first())))
    }
}

/// `[milliseconds, path?]`: sleeps, then appends its args to `path` if given.
pub(crate) struct Sleep;
impl Worker for Sleep {
    type Args = Vec<Value>;
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        let ms = args.first().and_then(Value::as_u64).ok_or_else(|| {
            JobError::new("ArgumentError", "Sleep takes [milliseconds, optional path]")
        })?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        match args.get(1) {
            Some(path) => append_line(Some(path), &args),
            None => Ok(()),
        }
    }
}

/// `[message]`: panics with `message`.
pub(crate) struct Panic;
impl Worker for Panic {
    type Args = Vec<Value>;
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        panic!("{}", text(args.first()))
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Appends `args` as one line with a single write, so concurrent lines never interleave.
fn append_line(path: Option<&Value>, args: &[Value]) -> JobResult {
    let path = path
        .and_then(Value::as_str)
        .ok_or_else(|| JobError::new("ArgumentError", "the first argument must be a file path"))?;
    let mut line = serde_json::to_vec(args)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(&line)?;
    Ok(())
}

/// `[path, ...]`: appends `[started_at, ...args]` as one JSON line to `path`, where
/// `started_at` is when the job started, in epoch seconds: for latency measurements.
pub(crate) struct Clock;
impl Worker for Clock {
    type Args = Vec<Value>;
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        let mut line = vec![Value::from(crate::payload::now_secs())];
        line.extend(args.iter().cloned());
        append_line(args.first(), &line)
    }
}

/// Aborts its own process at once, like a segfault or the OOM killer would: for crash tests.
pub(crate) struct Abort;
impl Worker for Abort {
    type Args = Vec<Value>;
    async fn perform(&self, _: Vec<Value>) -> JobResult {
        std::process::abort()
    }
}

/// A registry with all the demo workers.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register(Noop)
        .register(Echo)
        .register(Fail)
        .register(Sleep)
        .register(Panic)
        .register(Abort)
        .register(Clock);
    registry
}
