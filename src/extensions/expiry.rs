//! Expiring jobs, as Sidekiq Pro's `expires_in`: a job must *start* before its
//! `expires_at` (epoch seconds, written by the client from [`crate::Job::expires_in`] or
//! [`crate::WorkerOptions::expires_in`], counted from when the job is due). One taken later
//! is discarded unrun: acknowledged, counted as processed and in `stat:discarded`, logged
//! with its class and jid, never retried and never dead. A job that has started runs to its
//! end, however long. Retries of a failed job are checked the same way, so an expired job
//! is not retried either.
//!
//! The check is a substring search of the payload for `"expires_at"` (a payload without
//! one is parsed no further) and adds no boxing: a job that has not expired goes straight
//! on through the rest of the chain.

use crate::Outcome;
use crate::job::context::JobContext;
use crate::job::middleware::{Next, ServerMiddleware};

/// The server middleware that discards expired jobs (see the module docs). Every server
/// adds it near the front of the chain; it can also be added by hand (it is then not
/// added twice):
///
/// ```
/// let mut server = psychiq::Server::new(Default::default(), psychiq::Registry::new());
/// server.middleware().prepend(psychiq::extensions::Expiry);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Expiry;

/// The payload key that holds the expiry, in epoch seconds (Sidekiq Pro's).
pub(crate) const EXPIRES_AT: &str = "expires_at";

impl ServerMiddleware for Expiry {
    fn wants(&self, payload: &str) -> bool {
        payload.contains("\"expires_at\"")
    }

    async fn call(&self, job: &JobContext, next: Next<'_>) -> Outcome {
        match expired(job, crate::clock::now_secs()) {
            Some(late) => {
                let reason = format!("expired {late:.1} s before it could start");
                tracing::info!(class = job.class(), jid = job.jid(), reason, "job expired");
                Outcome::Discarded(reason)
            }
            None => next.run().await,
        }
    }
}

/// How many seconds past its expiry the job is at `now`, if it has expired.
fn expired(job: &JobContext, now: f64) -> Option<f64> {
    if !job.payload().contains("\"expires_at\"") {
        return None;
    }
    let expires_at = job.field(EXPIRES_AT)?.as_f64()?;
    (now >= expires_at).then_some(now - expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn context(payload: &str) -> JobContext {
        let raw: Arc<[u8]> = Arc::from(payload.as_bytes());
        JobContext::new(raw, Arc::from("default"), "X", "j", "[]")
    }

    #[test]
    fn only_a_past_expires_at_expires() {
        let now = 1_700_000_000.0;
        let job = |field: &str| context(&format!(r#"{{"class":"X","args":[]{field}}}"#));
        assert_eq!(expired(&job(""), now), None);
        assert_eq!(expired(&job(r#","expires_at":1700000001.0"#), now), None);
        assert_eq!(
            expired(&job(r#","expires_at":1699999998.5"#), now),
            Some(1.5)
        );
        assert_eq!(
            expired(&job(r#","expires_at":"soon""#), now),
            None,
            "not a number: runs"
        );
    }
}
