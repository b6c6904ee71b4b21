//! The job being run: what a worker and the server middleware can read about it.
//!
//! Inside `perform` (and anything it awaits in the same task), [`current`] gives the running
//! job's [`JobContext`]: its jid, queue, class, retry count, when it was enqueued, and any
//! payload field, including ones Psychiq does not know (`tags`, `bid`, a `tenant_id` a
//! client middleware added). Simple workers need not look at it.
//!
//! ```
//! use psychiq::{JobResult, NoArgs, Worker};
//!
//! struct ChargeCard;
//!
//! impl Worker for ChargeCard {
//!     type Args = (u64,);
//!     async fn perform(&self, (order,): Self::Args) -> JobResult {
//!         let job = psychiq::context::current().expect("inside a job");
//!         // Key the side effect by the jid, so a second run is a no-op.
//!         println!("charging order {order} once, as {}", job.jid());
//!         Ok(())
//!     }
//! }
//! ```

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::job::active_job::ActiveJob;
use crate::job::payload::{self, JobMap};

tokio::task_local! {
    static CURRENT: Arc<JobContext>;
}

/// The running job's context, inside `perform` and what it awaits in the same task; `None`
/// elsewhere (a task the job spawned does not inherit it: pass it along).
pub fn current() -> Option<Arc<JobContext>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Runs `future` with `context` as the [`current`] job.
pub(crate) async fn scope<F: Future>(context: Arc<JobContext>, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// One job as it is run: the payload as stored and the fields a server reads from it.
#[derive(Debug)]
pub struct JobContext {
    raw: Arc<[u8]>,
    queue: Arc<str>,
    class: Box<str>,
    jid: Box<str>,
    /// Where `args` is in `raw`.
    args: Range<usize>,
    /// Every field, parsed when first asked for.
    fields: OnceLock<JobMap>,
    /// The ActiveJob record of a job a Rails app enqueued.
    active_job: Option<Box<ActiveJob>>,
}

impl JobContext {
    /// A context for the payload `raw` (UTF-8, already read for its class, jid and args).
    pub(crate) fn new(
        raw: Arc<[u8]>,
        queue: Arc<str>,
        class: &str,
        jid: &str,
        args: &str,
    ) -> JobContext {
        // `args` is a slice of `raw` (serde's RawValue borrows it).
        let start = (args.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
        let args = if start <= raw.len() && start + args.len() <= raw.len() {
            start..start + args.len()
        } else {
            0..0
        };
        JobContext {
            raw,
            queue,
            class: class.into(),
            jid: jid.into(),
            args,
            fields: OnceLock::new(),
            active_job: None,
        }
    }

    /// The context of a job a Rails app enqueued: its class and arguments are ActiveJob's.
    pub(crate) fn with_active_job(mut self, active_job: ActiveJob) -> JobContext {
        self.active_job = Some(Box::new(active_job));
        self
    }

    /// The `class` field: which worker runs it (for a job a Rails app enqueued, the
    /// ActiveJob class, not the wrapper).
    pub fn class(&self) -> &str {
        match &self.active_job {
            Some(active_job) => active_job.job_class(),
            None => &self.class,
        }
    }

    /// The job id (empty if the payload has none). Key side effects by it: a job can run
    /// twice (see the README's Guarantees).
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The queue it was fetched from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The `args` array as JSON text, exactly as stored; for a job a Rails app enqueued,
    /// the ActiveJob arguments as the worker received them.
    pub fn args(&self) -> &str {
        if let Some(active_job) = &self.active_job {
            return active_job.arguments();
        }
        std::str::from_utf8(&self.raw[self.args.clone()]).unwrap_or("[]")
    }

    /// ActiveJob's record (`job_id`, `executions`, `locale`, …) of a job a Rails app
    /// enqueued with `perform_later`; `None` for any other job. See [`crate::job::active_job`].
    pub fn active_job(&self) -> Option<&ActiveJob> {
        self.active_job.as_deref()
    }

    /// The whole payload as stored.
    pub fn payload(&self) -> &str {
        std::str::from_utf8(&self.raw).unwrap_or("")
    }

    /// Any payload field, e.g. `tags`, `bid` or one a client middleware added.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields
            .get_or_init(|| serde_json::from_str(self.payload()).unwrap_or_default())
            .get(name)
    }

    /// Failed attempts before this one, minus one (Sidekiq's `retry_count`); `None` on a
    /// first run.
    pub fn retry_count(&self) -> Option<i64> {
        self.field("retry_count")?.as_i64()
    }

    /// When it was pushed to its queue (float seconds; Sidekiq 8's milliseconds are read).
    pub fn enqueued_at(&self) -> Option<f64> {
        payload::timestamp_secs(self.field("enqueued_at")?)
    }

    /// When it was first created.
    pub fn created_at(&self) -> Option<f64> {
        payload::timestamp_secs(self.field("created_at")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_on_demand() {
        let raw = r#"{"class":"X","args":[1,"a"],"jid":"j","retry_count":2,"tags":["t"],"enqueued_at":1700000000500}"#;
        let raw: Arc<[u8]> = Arc::from(raw.as_bytes());
        let text = std::str::from_utf8(&raw).unwrap();
        let args = &text[text.find("[1").unwrap()..text.find(",\"jid").unwrap()];
        let job = JobContext::new(Arc::clone(&raw), Arc::from("q"), "X", "j", args);
        assert_eq!(job.args(), r#"[1,"a"]"#);
        assert_eq!(job.retry_count(), Some(2));
        assert_eq!(job.field("tags"), Some(&serde_json::json!(["t"])));
        assert_eq!(job.enqueued_at(), Some(1_700_000_000.5));
        assert_eq!(job.field("nope"), None);
    }
}
