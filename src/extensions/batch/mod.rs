//! Batches: groups of jobs with callbacks, as Sidekiq Pro's `Sidekiq::Batch`. Fan out any
//! number of jobs, then run one job when all of them have run ("complete"), when all have
//! succeeded ("success"), or when one dies ("death"); nest batches so a parent waits for
//! its children.
//!
//! ```no_run
//! use psychiq::batch::Batch;
//! use psychiq::{Client, Job, RedisConfig};
//! # async fn demo() -> psychiq::Result<()> {
//! let client = Client::connect(&RedisConfig::default(), "").await?;
//! let batch = Batch::new("import 2026-12")
//!     .on_complete(Job::new("Import::Report", ("2026-12",))?)
//!     .on_success(Job::new("Import::Publish", ("2026-12",))?);
//! let rows: Vec<Job> = (0..10_000).map(|row| Job::new("Import::Row", (row,))).collect::<Result<_, _>>()?;
//! let bid = batch.push(&client, rows).await?;      // one atomic step: counted, then pushed
//! # let _ = bid; Ok(()) }
//! ```
//!
//! **Semantics** (Sidekiq Pro's). Each job carries `bid`. A job is *pending* until it
//! succeeds (or dies); a failed job waiting for a retry has *run* but is still pending.
//! "complete" fires once every job has run at least once and every child batch is
//! complete; "success" once every job has succeeded and every child batch has succeeded;
//! "death" at the first job of the batch that dies. A job retried by hand out of the dead
//! set that then succeeds counts as a success.
//!
//! **Exactly once.** The state is sets of jids in Redis (`batch:BID:unran`, `:pending`,
//! `:failed`, `:dead`) changed by one Lua step per outcome, so a job that runs twice (a
//! crashed process's job recovered after it had run) changes nothing the second time. The
//! step that sees a condition met records it (`HSETNX complete_at`) and pushes the callback
//! job in the same atomic step, so a callback can neither fire twice nor be lost between
//! the check and the push. Jobs are counted and pushed in one transaction, so no callback
//! fires before every job of that step is counted; a job adding jobs to its own batch
//! (see [`Batch::open`]) is itself pending while it does, so the batch stays open.
//!
//! A job that will not run again (dead, or dropped with `retry: false`) dies for its
//! batch in the same transaction that writes it to the dead set.
//!
//! **Housekeeping.** Every key of a batch expires 30 days after it was last touched, and
//! [`DONE_TTL`] (or [`Batch::expire_after`]) after it succeeded.
//!
//! **Cost.** A server counts outcomes with the [`BatchCounter`] middleware; a job without
//! `bid` passes it with a substring search of its payload.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

#[cfg(feature = "server")]
use crate::client::NewBatch;
use crate::client::{BatchCallback, Client, Pushed};
use crate::error::{Error, Result};
use crate::job::builder::Job;
use crate::job::payload;
use crate::store::connection::Connection;
use crate::store::keys::Keys;

/// How long a batch's data lives after it succeeded.
pub const DONE_TTL: Duration = crate::store::scripts::BATCH_DONE_TTL;
/// How long a batch's data lives after it was last touched, while unfinished.
pub const IDLE_TTL: Duration = crate::store::scripts::BATCH_IDLE_TTL;

/// A batch to create: a description, callbacks and an optional parent.
#[derive(Debug, Clone)]
pub struct Batch {
    bid: String,
    description: String,
    callbacks: Vec<(&'static str, Job)>,
    parent: Option<String>,
    expire_after: Duration,
}

impl Batch {
    /// A new batch (with a new bid) described by `description`.
    pub fn new(description: impl Into<String>) -> Batch {
        Batch {
            bid: payload::new_jid(),
            description: description.into(),
            callbacks: Vec::new(),
            parent: None,
            expire_after: DONE_TTL,
        }
    }

    /// How long its data stays in Redis once it has succeeded ([`DONE_TTL`], 30 days,
    /// unless set; at least a second).
    pub fn expire_after(mut self, ttl: Duration) -> Batch {
        self.expire_after = ttl.max(Duration::from_secs(1));
        self
    }

    /// Its bid (batch id), which every job of it carries as `bid`.
    pub fn bid(&self) -> &str {
        &self.bid
    }

    /// Pushes `job` once every job of the batch (and of its child batches) has run at
    /// least once.
    pub fn on_complete(mut self, job: Job) -> Batch {
        self.callbacks.push(("complete", job));
        self
    }

    /// Pushes `job` once every job of the batch (and of its child batches) has succeeded.
    pub fn on_success(mut self, job: Job) -> Batch {
        self.callbacks.push(("success", job));
        self
    }

    /// Pushes `job` when the first job of the batch dies.
    pub fn on_death(mut self, job: Job) -> Batch {
        self.callbacks.push(("death", job));
        self
    }

    /// Makes it a child of batch `parent`: the parent completes and succeeds only after it
    /// does.
    pub fn parent(mut self, parent: impl Into<String>) -> Batch {
        self.parent = Some(parent.into());
        self
    }

    /// Creates the batch with `jobs`, counted and pushed in one transaction; returns the
    /// bid. A batch with no jobs fires nothing until jobs are added ([`Batch::open`]).
    pub async fn push(self, client: &Client, jobs: Vec<Job>) -> Result<String> {
        if jobs.is_empty() {
            return Err(Error::Config(
                "a batch needs at least one job (its callbacks fire when its jobs are done)".into(),
            ));
        }
        let now = crate::clock::now_secs();
        #[cfg(feature = "server")]
        if let Some(store) = client.job_store() {
            store.create_batch(NewBatch {
                bid: &self.bid,
                parent: self.parent.as_deref(),
                callbacks: self.callback_records(now),
                jobs: stamp(&self.bid, jobs, now, true)?,
            })?;
            return Ok(self.bid);
        }
        let conn = connection(client)?;
        let keys = client.keys();
        if let Some(parent) = &self.parent {
            still_open(&conn, keys, parent).await?;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.write_record(&mut pipe, keys, now);
        add_jobs(&mut pipe, keys, &self.bid, jobs, now, None)?;
        pipe.query_async::<()>(&mut conn.clone())
            .await
            .map_err(|e| Error::Other(format!("creating batch {}: {e}", self.bid)))?;
        Ok(self.bid)
    }

    /// Adds to `pipe` the batch with `jobs` counted but not pushed: they are returned (by
    /// queue, each payload without its final `}`, to which the one who pushes them adds
    /// `enqueued_at`). A workflow's batch step is written so, and pushed when it starts.
    pub(crate) fn write_held(
        &self,
        pipe: &mut redis::Pipeline,
        keys: &Keys,
        jobs: Vec<Job>,
        now: f64,
    ) -> Result<Vec<(String, String)>> {
        if jobs.is_empty() {
            return Err(Error::Config("a batch step needs at least one job".into()));
        }
        self.write_record(pipe, keys, now);
        let mut held = Vec::new();
        add_jobs(pipe, keys, &self.bid, jobs, now, Some(&mut held))?;
        Ok(held)
    }

    /// Whether a callback for `event` is set.
    pub(crate) fn has_callback(&self, event: &str) -> bool {
        self.callbacks.iter().any(|(e, _)| *e == event)
    }

    /// Adds to `pipe` the batch's own hash (description, times, callbacks, parent) and its
    /// place in the index and in its parent.
    fn write_record(&self, pipe: &mut redis::Pipeline, keys: &Keys, now: f64) {
        let key = batch_key(keys, &self.bid);
        let mut fields: Vec<(String, String)> = vec![
            ("description".into(), self.description.clone()),
            ("created_at".into(), now.to_string()),
            ("ttl".into(), self.expire_after.as_secs().to_string()),
        ];
        if let Some(parent) = &self.parent {
            fields.push(("parent".into(), parent.clone()));
        }
        for callback in self.callback_records(now) {
            fields.push((format!("cb_{}", callback.event), callback.payload));
            fields.push((format!("cbq_{}", callback.event), callback.queue));
        }
        pipe.hset_multiple(&key, &fields).ignore();
        pipe.zadd(keys.key("batches"), &self.bid, now).ignore();
        if let Some(parent) = &self.parent {
            for kids in ["kids_incomplete", "kids_unsucceeded"] {
                let parent_kids = format!("{}:{kids}", batch_key(keys, parent));
                pipe.sadd(&parent_kids, &self.bid).ignore();
                pipe.expire(&parent_kids, IDLE_TTL.as_secs() as i64)
                    .ignore();
            }
        }
    }

    /// Its callbacks as they are stored until they fire.
    fn callback_records(&self, now: f64) -> Vec<BatchCallback> {
        self.callbacks
            .iter()
            .map(|(event, job)| {
                let mut job = job.clone();
                job.set_option(
                    "batch_event",
                    serde_json::json!({"bid": self.bid, "event": event}),
                );
                let job = job.jid(format!("{}-{event}", self.bid));
                BatchCallback {
                    event,
                    // Without its final `}`: the step that fires it appends `enqueued_at`.
                    payload: job.payload_at(now, false).trim_end_matches('}').to_string(),
                    queue: job.queue_name().to_string(),
                }
            })
            .collect()
    }

    /// Adds `jobs` to the existing batch `bid` in one transaction (from a job of that
    /// batch, whose own pending run keeps the batch open, or before its jobs can finish).
    pub async fn open(client: &Client, bid: &str, jobs: Vec<Job>) -> Result<()> {
        #[cfg(feature = "server")]
        if let Some(store) = client.job_store() {
            return store.add_to_batch(bid, stamp(bid, jobs, crate::clock::now_secs(), true)?);
        }
        let conn = connection(client)?;
        let keys = client.keys();
        still_open(&conn, keys, bid).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        add_jobs(&mut pipe, keys, bid, jobs, crate::clock::now_secs(), None)?;
        pipe.query_async::<()>(&mut conn.clone())
            .await
            .map_err(|e| Error::Other(format!("adding to batch {bid}: {e}")))
    }
}

/// Fails unless batch `bid` exists and has not succeeded (work added to a batch that has
/// fired its success would never be waited for). Checked before the transaction: work
/// added by a batch's own job is safe, as that job is pending while it adds.
async fn still_open(conn: &Connection, keys: &Keys, bid: &str) -> Result<()> {
    let (exists, succeeded): (bool, bool) = redis::pipe()
        .exists(batch_key(keys, bid))
        .hexists(batch_key(keys, bid), "success_at")
        .query_async(&mut conn.clone())
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    if !exists {
        return Err(Error::NotFound(format!(
            "no batch {bid:?} (it may have expired); `psychiq batches` lists them"
        )));
    }
    if succeeded {
        return Err(Error::Config(format!(
            "batch {bid:?} has already succeeded; add work to a new batch"
        )));
    }
    Ok(())
}

/// The bid of the running job's batch, inside `perform`.
pub fn current_bid() -> Option<String> {
    crate::job::context::current()?
        .field("bid")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn connection(client: &Client) -> Result<Connection> {
    if client.keys().is_cluster() {
        // Its counts and its jobs' queues are written in one transaction: one slot.
        return Err(Error::Config(
            "batches are not available in the cluster layout yet; run them on one Redis (Sidekiq's layout, or Sentinel for failover)".into(),
        ));
    }
    client.redis_connection().ok_or_else(|| {
        Error::Other("batches need a client connected to Redis (not the test mode's)".into())
    })
}

pub(crate) fn batch_key(keys: &Keys, bid: &str) -> String {
    keys.key(&format!("batch:{bid}"))
}

/// Stamps `jobs` with batch `bid` (and a jid each), refusing what a client's push refuses;
/// those due now get `enqueued_at` if `enqueued`.
pub(crate) fn stamp(bid: &str, jobs: Vec<Job>, now: f64, enqueued: bool) -> Result<Vec<Pushed>> {
    jobs.into_iter()
        .map(|job| {
            job.check()?;
            job.refuse_encrypt("a batch")?;
            if job.debounce.is_some() || job.priority_level() > 0 {
                return Err(Error::Config(format!(
                    "batch job {} is debounced or given a priority, which batch jobs do not take yet; push it without",
                    job.class()
                )));
            }
            let jid = job
                .given_jid()
                .map_or_else(payload::new_jid, str::to_string);
            let job = job
                .option("bid", Value::String(bid.to_string()))
                .jid(jid.clone());
            let at = job
                .run_at()
                .map(crate::clock::epoch_secs)
                .filter(|&at| at > now);
            Ok(Pushed {
                payload: job.payload_at(now, enqueued && at.is_none()),
                queue: job.queue_name().to_string(),
                jid,
                at,
            })
        })
        .collect()
}

/// Queues the commands that count `jobs` in batch `bid` and push them, or, with `held`,
/// adds them there (by queue, without `enqueued_at` and their final `}`) instead.
fn add_jobs(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    bid: &str,
    jobs: Vec<Job>,
    now: f64,
    held: Option<&mut Vec<(String, String)>>,
) -> Result<()> {
    let key = batch_key(keys, bid);
    let stamped = stamp(bid, jobs, now, held.is_none())?;
    // Long enough for the latest scheduled job to run and be counted.
    let latest = stamped.iter().filter_map(|job| job.at).fold(now, f64::max);
    let ttl = IDLE_TTL.as_secs() as i64 + (latest - now) as i64;
    let mut jids = Vec::with_capacity(stamped.len());
    let mut queues: HashMap<String, Vec<String>> = HashMap::new();
    let mut scheduled: Vec<(f64, String)> = Vec::new();
    for job in stamped {
        match job.at {
            Some(at) => scheduled.push((at, job.payload)),
            None => queues.entry(job.queue).or_default().push(job.payload),
        }
        jids.push(job.jid);
    }
    if jids.is_empty() {
        return Ok(());
    }
    pipe.hincr(&key, "total", jids.len()).ignore();
    for suffix in [":pending", ":unran"] {
        pipe.sadd(format!("{key}{suffix}"), &jids).ignore();
    }
    for suffix in [
        "",
        ":pending",
        ":unran",
        ":failed",
        ":dead",
        ":kids_incomplete",
        ":kids_unsucceeded",
    ] {
        pipe.expire(format!("{key}{suffix}"), ttl).ignore();
    }
    if let Some(held) = held {
        if !scheduled.is_empty() {
            return Err(Error::Config(
                "a batch step's jobs start with their step; drop their delay".into(),
            ));
        }
        for (queue, payloads) in queues {
            for payload in payloads {
                let open = payload.strip_suffix('}').unwrap_or(&payload);
                held.push((queue.clone(), open.to_string()));
            }
        }
        return Ok(());
    }
    for (queue, payloads) in queues {
        pipe.sadd(keys.queues(), &queue).ignore();
        pipe.lpush(keys.queue(&queue), payloads).ignore();
    }
    for (at, payload) in scheduled {
        pipe.zadd(keys.schedule(), payload, at).ignore();
    }
    Ok(())
}

#[cfg(feature = "api")]
mod status;
#[cfg(feature = "api")]
pub use status::BatchStatus;
#[cfg(feature = "api")]
pub(crate) use status::{StatusRow, status_commands, status_from};

#[cfg(feature = "server")]
mod counter;
#[cfg(feature = "server")]
pub use counter::BatchCounter;
