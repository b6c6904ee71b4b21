//! A handle on one pushed job: its status, its result awaited without polling, and (with the
//! `api` feature) its cancellation.
//!
//! Waiting blocks on the job's `status:JID:done` list (`BLMOVE` of the list onto itself, so
//! every waiter sees the element) on a connection of its own, five seconds at a time,
//! reading the status between; a dropped connection or a Redis restart only costs a
//! reconnect, as the final state stays in Redis for the job's retention. See
//! [`crate::status`] for the keys, to wait from Ruby or Python too.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::job::builder::Job;
use crate::job::failure::JobError;
use crate::job::status::{JobStatus, State};
use crate::job::worker::Task;

/// How long one blocking pop waits before the status is read again.
const BLOCK: Duration = Duration::from_secs(5);

/// A pushed job, to ask about and wait for. `O` is what its result reads as (any JSON
/// unless the handle came from a [`Task`]).
///
/// ```no_run
/// # use psychiq::{JobError, Task};
/// # struct Resize;
/// # impl Task for Resize {
/// #     type Args = (String,);
/// #     type Output = u64;
/// #     async fn run(&self, _: Self::Args) -> Result<u64, JobError> { Ok(1) }
/// # }
/// # async fn demo(client: psychiq::Client) -> psychiq::Result<()> {
/// let handle = client.enqueue_tracked::<Resize>(("cat.png".into(),)).await?;
/// println!("{:?}", handle.status().await?.map(|s| s.state));
/// let bytes: u64 = handle.result().await?; // waits; the job's error if it died
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JobHandle<O = serde_json::Value> {
    pub(crate) client: Client,
    pub(crate) jid: String,
    output: PhantomData<fn() -> O>,
}

impl<O> std::fmt::Debug for JobHandle<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle").field("jid", &self.jid).finish()
    }
}

impl Client {
    /// A handle on the job `jid` (pushed by any client, in any language), whose result
    /// reads as `O`.
    pub fn handle<O>(&self, jid: impl Into<String>) -> JobHandle<O> {
        JobHandle {
            client: self.clone(),
            jid: jid.into(),
            output: PhantomData,
        }
    }

    /// Pushes `job` tracked (its status and result kept; see [`Job::track`]) and gives its
    /// handle. A job that already asks for tracking keeps its own retention.
    pub async fn push_tracked(&self, job: Job) -> Result<JobHandle> {
        let job = if job.tracked_for().is_some() {
            job
        } else {
            job.track()
        };
        Ok(self.handle(self.push(job).await?))
    }

    /// Enqueues a job for task `T`, tracked, and gives its handle, whose result reads as
    /// `T::Output`.
    pub async fn enqueue_tracked<T: Task>(&self, args: T::Args) -> Result<JobHandle<T::Output>> {
        let job = Job::of::<T>(&args)?;
        let jid = self.push_tracked(job).await?.jid;
        Ok(self.handle(jid))
    }

    /// Enqueues a job for task `T` and waits up to `timeout` for its result: the job's
    /// error if it died, [`Error::Cancelled`] if it was cancelled, [`Error::WaitTimedOut`]
    /// after `timeout` (the job goes on).
    ///
    /// ```no_run
    /// # use psychiq::{JobError, Task};
    /// # struct Add;
    /// # impl Task for Add {
    /// #     type Args = (i64, i64);
    /// #     type Output = i64;
    /// #     async fn run(&self, (a, b): Self::Args) -> Result<i64, JobError> { Ok(a + b) }
    /// # }
    /// # async fn demo(client: psychiq::Client) -> psychiq::Result<()> {
    /// let sum = client
    ///     .enqueue_and_wait::<Add>((2, 3), std::time::Duration::from_secs(30))
    ///     .await?;
    /// assert_eq!(sum, 5);
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_and_wait<T: Task>(
        &self,
        args: T::Args,
        timeout: Duration,
    ) -> Result<T::Output> {
        let handle = self.enqueue_tracked::<T>(args).await?;
        handle.result_within(timeout).await
    }
}

impl<O: DeserializeOwned> JobHandle<O> {
    /// The job's id.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The job's status as it was tracked; `None` if it is not tracked (or its status
    /// expired). For any job, tracked or not, see [`crate::api::Api::status`].
    pub async fn status(&self) -> Result<Option<JobStatus>> {
        #[cfg(feature = "server")]
        if let Some(store) = self.client.job_store() {
            // The test mode: what its last run left, once drained (or performed inline).
            return Ok(store.status(&self.jid));
        }
        let (conn, config) = self.client.redis("job statuses")?;
        let hash: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.client.keys.status(&self.jid))
            .query_async(&mut conn.clone())
            .await
            .map_err(|e| config.redis_error(e))?;
        Ok(JobStatus::from_hash(&self.jid, &hash))
    }

    /// Waits until the job reaches a final state (succeeded, dead, discarded, cancelled)
    /// and gives its status. An error at once if the job is not tracked. Wrap it in
    /// `tokio::time::timeout`, or use [`JobHandle::wait_within`], to bound the wait.
    pub async fn wait(&self) -> Result<JobStatus> {
        self.wait_until(None).await
    }

    /// [`JobHandle::wait`] for at most `timeout`: [`Error::WaitTimedOut`] after it.
    pub async fn wait_within(&self, timeout: Duration) -> Result<JobStatus> {
        self.wait_until(Some(Instant::now() + timeout)).await
    }

    /// Waits for the job's result: its output if it succeeded, its error if it died or was
    /// discarded, [`Error::Cancelled`] if it was cancelled.
    pub async fn result(&self) -> Result<O> {
        self.wait()
            .await
            .and_then(|status| self.read_result(status))
    }

    /// [`JobHandle::result`] for at most `timeout`: [`Error::WaitTimedOut`] after it.
    pub async fn result_within(&self, timeout: Duration) -> Result<O> {
        self.wait_within(timeout)
            .await
            .and_then(|status| self.read_result(status))
    }

    async fn wait_until(&self, deadline: Option<Instant>) -> Result<JobStatus> {
        #[cfg(feature = "server")]
        if self.client.job_store().is_some() {
            // The test mode runs nothing by itself: a job ends when drained (or inline).
            return match self.status().await? {
                Some(status) if status.state.is_final() => Ok(status),
                _ => Err(Error::WaitTimedOut {
                    jid: self.jid.clone(),
                    state: "not run yet in the test mode: drain the fake first".into(),
                }),
            };
        }
        let (_, config) = self.client.redis("job statuses")?;
        let done = self.client.keys.status_done(&self.jid);
        let mut blocking = None;
        // The last pop found an end, yet the status read after it was not final: an end
        // left from an earlier run (a job retried by hand, say). Read again in a moment,
        // not in a tight loop.
        let mut popped_before = false;
        loop {
            match self.status().await {
                Ok(Some(status)) if status.state.is_final() => return Ok(status),
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(Error::NotFound(format!(
                        "job {} is not tracked, or its status expired: push it with Job::track() (or a worker with WorkerOptions::track) to wait for it",
                        self.jid
                    )));
                }
                // Waiting out an outage, up to the deadline.
                Err(e) if !e.is_retryable() => return Err(e),
                Err(_) => blocking = None,
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                let state = self.status().await.ok().flatten().map(|s| s.state);
                return Err(Error::WaitTimedOut {
                    jid: self.jid.clone(),
                    state: state.map_or("unknown", State::name).to_string(),
                });
            }
            let block = left.map_or(BLOCK, |left| left.min(BLOCK));
            if popped_before {
                tokio::time::sleep(Duration::from_millis(200).min(block)).await;
            }
            if blocking.is_none() {
                match config
                    .connect_with_timeout(block + crate::store::config::COMMAND_TIMEOUT)
                    .await
                {
                    Ok(conn) => blocking = Some(conn),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200).min(block)).await;
                        continue;
                    }
                }
            }
            let Some(conn) = blocking.as_mut() else {
                continue;
            };
            // Whole seconds with a floor: BLMOVE takes a float, but 0 would block for good.
            let popped: redis::RedisResult<Option<String>> = redis::cmd("BLMOVE")
                .arg(&done)
                .arg(&done)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(block.as_secs_f64().max(0.01))
                .query_async(conn)
                .await;
            match popped {
                Ok(Some(_)) => popped_before = true,
                Ok(None) => popped_before = false,
                Err(_) => blocking = None,
            }
        }
    }

    fn read_result(&self, status: JobStatus) -> Result<O> {
        match status.state {
            State::Succeeded => {
                let text = status.result.as_deref().unwrap_or("null");
                serde_json::from_str(text).map_err(|e| {
                    Error::Payload(format!(
                        "job {}'s result {text} does not read as {}: {e}",
                        self.jid,
                        std::any::type_name::<O>()
                    ))
                })
            }
            State::Cancelled => Err(Error::Cancelled {
                jid: self.jid.clone(),
            }),
            _ => {
                let error = status.error.unwrap_or_else(|| status.state.to_string());
                let (class, message) = error.split_once(": ").unwrap_or(("Error", &error));
                Err(Error::JobFailed {
                    jid: self.jid.clone(),
                    error: Box::new(JobError::new(class, message)),
                })
            }
        }
    }
}
