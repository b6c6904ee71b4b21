//! Small workers that demos, tests and benchmarks rely on, by these class names:
//! `Noop`, `Echo`, `Fail`, `Sleep`, `Panic`, `Abort` (which kills its own process, for
//! crash tests), `Clock` (which records when it started, for latency measurements) and
//! `Ingest` (which reads an order, a JSON object of about 1 KB, into a struct: the load
//! test's realistic job) and `Walk` (an iterable job: `[steps, path, microseconds]` walks
//! `steps` steps, appending `["step", n]` to `path` at each and `["start"]`, `["resume"]`,
//! `["stop"]`, `["cancel"]`, `["complete"]` at its callbacks, sleeping the microseconds a
//! step). The `psychiq` binary serves them as the system `demo`
//! (`psychiq -s demo`). Apart, in [`limited`] (the system `demo-limits`), `Limited` and
//! `Metered`: no-ops within a concurrent limiter and a token bucket so large they never say
//! no, to measure what checking a rate limit costs (apart, so the demo system's other jobs
//! run without the rate-limit middleware). The ETL workflow's steps, `Etl::Fetch`,
//! `Etl::Parse`, `Etl::Merge` and `Etl::Notify`, are in the demo system too ([`etl`]).
//!
//! ```
//! let registry = psychiq::demo::registry();
//! assert_eq!(
//!     registry.class_names(),
//!     ["Abort", "Clock", "Echo", "Etl::Fetch", "Etl::Merge", "Etl::Notify", "Etl::Parse",
//!      "Fail", "Ingest", "Noop", "Panic", "Sleep", "Walk"]
//! );
//! ```

pub mod etl;

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
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

/// Does nothing, within a concurrent limiter (`bench-concurrent`) of a million places.
pub(crate) struct Limited;
impl Worker for Limited {
    type Args = Vec<Value>;
    fn options() -> crate::WorkerOptions {
        crate::WorkerOptions::default().rate_limit(crate::limits::Limiter::concurrent(
            "bench-concurrent",
            1_000_000,
        ))
    }
    async fn perform(&self, _: Vec<Value>) -> JobResult {
        Ok(())
    }
}

/// Does nothing, within a token bucket (`bench-bucket`) of a billion a second.
pub(crate) struct Metered;
impl Worker for Metered {
    type Args = Vec<Value>;
    fn options() -> crate::WorkerOptions {
        crate::WorkerOptions::default().rate_limit(crate::limits::Limiter::bucket(
            "bench-bucket",
            1_000_000_000,
            Duration::from_secs(1),
        ))
    }
    async fn perform(&self, _: Vec<Value>) -> JobResult {
        Ok(())
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

/// `[milliseconds, path?]`: sleeps, then, if given a path, appends its args and when it
/// started and finished (epoch seconds) to it: `[ms, path, started_at, finished_at]`.
pub(crate) struct Sleep;
impl Worker for Sleep {
    type Args = Vec<Value>;
    async fn perform(&self, mut args: Vec<Value>) -> JobResult {
        let ms = args.first().and_then(Value::as_u64).ok_or_else(|| {
            JobError::new("ArgumentError", "Sleep takes [milliseconds, optional path]")
        })?;
        let started = crate::clock::now_secs();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if args.len() < 2 {
            return Ok(());
        }
        args.truncate(2);
        args.push(Value::from(started));
        args.push(Value::from(crate::clock::now_secs()));
        append_line(args.get(1), &args)
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
        let mut line = vec![Value::from(crate::clock::now_secs())];
        line.extend(args.iter().cloned());
        append_line(args.first(), &line)
    }
}

/// An order as the load test's realistic job carries it: about 1 KB of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The order number.
    pub id: u64,
    /// Who placed it.
    pub customer: Customer,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
    /// Currency code, e.g. "EUR".
    pub currency: String,
    /// Free text.
    pub note: String,
}

/// The customer of an [`Order`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Customer number.
    pub id: u64,
    /// Name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

/// One line of an [`Order`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Stock keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents.
    pub unit_cents: u64,
}

impl Order {
    /// A sample order of about 1 KB, numbered `id`.
    ///
    /// ```
    /// let order = psychiq::demo::Order::sample(7);
    /// let size = serde_json::to_string(&order).unwrap().len();
    /// assert!((900..1200).contains(&size), "{size} bytes");
    /// ```
    pub fn sample(id: u64) -> Order {
        Order {
            id,
            customer: Customer {
                id: 1_000 + id % 97,
                name: "Ada Lovelace-Byron".into(),
                email: "ada@example.com".into(),
            },
            lines: (0..15)
                .map(|i| OrderLine {
                    sku: format!("SKU-{:06}-{i:02}", id % 100_000),
                    quantity: 1 + i,
                    unit_cents: 199 + 100 * u64::from(i),
                })
                .collect(),
            currency: "EUR".into(),
            note: "Leave at the door; ring twice. Gift wrap the books, not the tea.".into(),
        }
    }

    /// What the order comes to, in cents.
    pub fn total_cents(&self) -> u64 {
        self.lines
            .iter()
            .map(|l| u64::from(l.quantity) * l.unit_cents)
            .sum()
    }
}

/// `[order]`: reads an [`Order`] into its struct and adds it up.
pub(crate) struct Ingest;
impl Worker for Ingest {
    type Args = (Order,);
    async fn perform(&self, (order,): (Order,)) -> JobResult {
        if order.total_cents() == 0 {
            return Err(JobError::new(
                "ArgumentError",
                "an order with nothing in it",
            ));
        }
        Ok(())
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
        .register(Clock)
        .register(Ingest)
        .register(etl::Fetch)
        .register(etl::Parse)
        .register(etl::Merge)
        .register(etl::Notify);
    registry.register_iterable(Walk);
    registry
}

/// `[steps, path, microseconds]`: an iterable job (see the module docs).
pub(crate) struct Walk;
impl Walk {
    fn note(path: &str, what: &[Value]) {
        let _ = append_line(
            Some(&Value::from(path)),
            &[&[Value::from(path)][..], what].concat(),
        );
    }
}
impl crate::iteration::IterableWorker for Walk {
    type Args = (u64, String, u64);
    type Cursor = u64;
    async fn step(
        &self,
        (steps, path, micros): &(u64, String, u64),
        cursor: Option<u64>,
    ) -> Result<Option<u64>, JobError> {
        let n = cursor.unwrap_or(0);
        Walk::note(path, &[Value::from("step"), Value::from(n)]);
        if *micros > 0 {
            tokio::time::sleep(Duration::from_micros(*micros)).await;
        }
        Ok((n + 1 < *steps).then_some(n + 1))
    }
    async fn on_start(&self, (_, path, _): &(u64, String, u64)) {
        Walk::note(path, &[Value::from("start")]);
    }
    async fn on_resume(&self, (_, path, _): &(u64, String, u64)) {
        Walk::note(path, &[Value::from("resume")]);
    }
    async fn on_stop(&self, (_, path, _): &(u64, String, u64)) {
        Walk::note(path, &[Value::from("stop")]);
    }
    async fn on_cancel(&self, (_, path, _): &(u64, String, u64)) {
        Walk::note(path, &[Value::from("cancel")]);
    }
    async fn on_complete(&self, (_, path, _): &(u64, String, u64)) {
        Walk::note(path, &[Value::from("complete")]);
    }
}

/// A registry with `Limited` and `Metered`, the rate-limited no-ops.
pub fn limited() -> Registry {
    let mut registry = Registry::new();
    registry.register(Limited).register(Metered);
    registry
}
