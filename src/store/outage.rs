//! Waiting out a Redis outage: one record per process, so an outage is logged once when
//! it starts and once when it ends, and retries that return what waiting will not cure.

use std::time::{Duration, Instant};

use super::connection::Connection;
use super::errors::{explain, waiting_may_cure};

/// One part of a server (fetch, heartbeat, scheduler, …) waiting out a Redis outage. The
/// parts of a process share one [`OUTAGE`] record, so an outage is logged once when it
/// starts (what failed, since when) and once when Redis answers a part that was failing
/// again (how long), not once per part.
#[derive(Debug)]
pub(crate) struct Outage {
    /// Which part of the server is talking (e.g. "fetch").
    what: &'static str,
    /// Whether this part's last command failed.
    failing: bool,
}

/// The process's outage: since when, and why.
#[derive(Debug)]
struct OutageState {
    since: Option<Instant>,
    cause: &'static str,
}

static OUTAGE: std::sync::Mutex<OutageState> = std::sync::Mutex::new(OutageState {
    since: None,
    cause: "",
});

impl Outage {
    pub fn new(what: &'static str) -> Outage {
        Outage {
            what,
            failing: false,
        }
    }

    /// A command failed: logs it if this starts the process's outage or changes its cause.
    pub fn failed(&mut self, error: &redis::RedisError) {
        let cause = explain(error);
        self.failing = true;
        let mut shared = OUTAGE.lock().unwrap_or_else(|e| e.into_inner());
        if shared.since.is_none() {
            shared.since = Some(Instant::now());
            shared.cause = cause;
            tracing::error!(
                error = %error,
                part = self.what,
                "Redis unavailable since {}: {cause}; every part waits and tries again",
                crate::clock::utc_iso8601(crate::clock::now_secs())
            );
        } else if shared.cause != cause {
            shared.cause = cause;
            tracing::error!(error = %error, part = self.what, "Redis still unavailable: {cause}");
        }
    }

    /// A command succeeded: if this part was failing and the outage is still open, logs how
    /// long it lasted (the parts that failed too get through on their next try, unlogged).
    /// Returns whether this part was failing.
    pub fn ok(&mut self) -> bool {
        if !std::mem::take(&mut self.failing) {
            return false;
        }
        let since = OUTAGE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since
            .take();
        if let Some(since) = since {
            let downtime = since.elapsed().as_secs_f64();
            tracing::info!(downtime_s = downtime, "Redis is back after {downtime:.1} s");
        }
        true
    }
}

/// Runs `pipe` until Redis answers (see [`until_cured`]). For writes that must not be
/// dropped.
pub(crate) async fn query_until_ok(
    conn: &mut Connection,
    pipe: &redis::Pipeline,
    outage: &mut Outage,
) -> redis::RedisResult<()> {
    until_cured(outage, || {
        let mut conn = conn.clone();
        async move { pipe.query_async::<()>(&mut conn).await }
    })
    .await
}

/// Tries `attempt` until it works, with capped backoff (100 ms doubling to 5 s), logging an
/// outage once through `outage`. An error that waiting will not cure ([`waiting_may_cure`])
/// is returned at once: the caller decides.
pub(crate) async fn until_cured<T, F, Fut>(
    outage: &mut Outage,
    mut attempt: F,
) -> redis::RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(value) => {
                outage.ok();
                return Ok(value);
            }
            Err(e) if waiting_may_cure(&e) => {
                outage.failed(&e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                outage.ok();
                return Err(e);
            }
        }
    }
}
