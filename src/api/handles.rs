//! The API in Sidekiq's shape: a value per Redis structure with its own verbs, as
//! `api.rb` gives Ruby code (`Sidekiq::Queue.new("default").clear`,
//! `Sidekiq::RetrySet.new.find_job(jid).retry`, `Sidekiq::DeadSet.new.clear`), and each job
//! found carrying the verbs that act on it.
//!
//! ```no_run
//! # async fn demo() -> psychiq::Result<()> {
//! let api = psychiq::Config::default().api().await?;
//! api.queue("default").clear().await?;                         // Sidekiq::Queue#clear
//! if let Some(job) = api.retries().find("a1b2c3d4e5f6a1b2c3d4e5f6").await? {
//!     println!("{} failed: {:?}", job.display_class(), job.error_message());
//!     job.retry_now().await?;                                  // SortedEntry#retry
//! }
//! for job in api.dead().page(0, 25).await? {
//!     job.delete().await?;                                     // SortedEntry#delete
//! }
//! println!("{} scheduled", api.scheduled().size().await?);
//! # Ok(()) }
//! ```

use std::ops::Deref;

use super::{Api, JobRecord, SetKind};
use crate::error::Result;

impl Api {
    /// The queue `name` (Sidekiq's `Sidekiq::Queue.new(name)`); it need not exist.
    pub fn queue(&self, name: &str) -> Queue<'_> {
        Queue {
            api: self,
            name: name.to_string(),
        }
    }

    /// The jobs scheduled for later (`Sidekiq::ScheduledSet`).
    pub fn scheduled(&self) -> JobSet<'_> {
        self.set(SetKind::Scheduled)
    }

    /// The failed jobs waiting for a retry (`Sidekiq::RetrySet`).
    pub fn retries(&self) -> JobSet<'_> {
        self.set(SetKind::Retry)
    }

    /// The jobs that will not be retried (`Sidekiq::DeadSet`).
    pub fn dead(&self) -> JobSet<'_> {
        self.set(SetKind::Dead)
    }

    /// One of the three sets by kind (Sidekiq's `JobSet`).
    pub fn set(&self, kind: SetKind) -> JobSet<'_> {
        JobSet { api: self, kind }
    }
}

/// A queue and its verbs (Sidekiq's `Sidekiq::Queue`).
#[derive(Clone)]
pub struct Queue<'a> {
    api: &'a Api,
    name: String,
}

impl<'a> Queue<'a> {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Jobs waiting in it.
    pub async fn size(&self) -> Result<u64> {
        self.api.queue_size(&self.name).await
    }

    /// Whether it exists (it is known to the `queues` set or holds jobs).
    pub async fn exists(&self) -> Result<bool> {
        self.api.queue_exists(&self.name).await
    }

    /// `count` of its jobs from `start`, newest first.
    pub async fn page(&self, start: u64, count: u64) -> Result<Vec<QueueJob<'a>>> {
        let jobs = self.api.queue_jobs(&self.name, start, count).await?;
        Ok(jobs.into_iter().map(|job| self.entry(job)).collect())
    }

    /// Its job with this jid, among its first 100,000 (Sidekiq's `find_job`).
    pub async fn find(&self, jid: &str) -> Result<Option<QueueJob<'a>>> {
        let job = self.api.find_in_queue(&self.name, jid).await?;
        Ok(job.map(|job| self.entry(job)))
    }

    /// Deletes it with every job in it; how many went. Each job leaves as on every path
    /// (its batch counts its death, its unique lock goes).
    pub async fn clear(&self) -> Result<u64> {
        self.api.clear_queue(&self.name).await
    }

    /// Pauses it for every server (Sidekiq Pro's `pause!`); `false` if it was paused.
    pub async fn pause(&self) -> Result<bool> {
        self.api.pause_queue(&self.name).await
    }

    /// Lets servers take its jobs again; `false` if it was not paused.
    pub async fn unpause(&self) -> Result<bool> {
        self.api.unpause_queue(&self.name).await
    }

    fn entry(&self, record: JobRecord) -> QueueJob<'a> {
        QueueJob {
            api: self.api,
            record,
        }
    }
}

/// A job read from a queue, with what can be done to it (Sidekiq's `JobRecord`); reads as
/// the [`JobRecord`] it is.
#[derive(Clone)]
pub struct QueueJob<'a> {
    api: &'a Api,
    record: JobRecord,
}

impl QueueJob<'_> {
    /// Deletes it from its queue; `false` if it had left meanwhile.
    pub async fn delete(&self) -> Result<bool> {
        self.api.delete_from_queue(&self.record).await
    }

    /// The job as read.
    pub fn into_record(self) -> JobRecord {
        self.record
    }
}

impl Deref for QueueJob<'_> {
    type Target = JobRecord;
    fn deref(&self) -> &JobRecord {
        &self.record
    }
}

/// The scheduled, retry or dead set and its verbs (Sidekiq's `ScheduledSet`, `RetrySet`,
/// `DeadSet` over `JobSet`).
#[derive(Clone, Copy)]
pub struct JobSet<'a> {
    api: &'a Api,
    kind: SetKind,
}

impl<'a> JobSet<'a> {
    /// Which set it is.
    pub fn kind(&self) -> SetKind {
        self.kind
    }

    /// Jobs in it.
    pub async fn size(&self) -> Result<u64> {
        self.api.set_size(self.kind).await
    }

    /// `count` of its jobs from `start`, in the order the dashboard lists them.
    pub async fn page(&self, start: u64, count: u64) -> Result<Vec<SetJob<'a>>> {
        let jobs = self.api.set_page(self.kind, start, count).await?;
        Ok(jobs.into_iter().map(|job| self.entry(job)).collect())
    }

    /// Up to `limit` jobs holding `text` anywhere (class, arguments, error, jid).
    pub async fn search(&self, text: &str, limit: usize) -> Result<Vec<SetJob<'a>>> {
        let jobs = self.api.set_search(self.kind, text, limit).await?;
        Ok(jobs.into_iter().map(|job| self.entry(job)).collect())
    }

    /// Its job with this jid (Sidekiq's `find_job`), or by the dashboard's `SCORE-JID`.
    pub async fn find(&self, jid_or_key: &str) -> Result<Option<SetJob<'a>>> {
        let job = self.api.set_find_key(self.kind, jid_or_key).await?;
        Ok(job.map(|job| self.entry(job)))
    }

    /// Moves every job to its queue (retry count lowered, as "Retry now" does).
    pub async fn retry_all(&self) -> Result<u64> {
        self.api.retry_all(self.kind).await
    }

    /// Moves every job to the dead set.
    pub async fn kill_all(&self) -> Result<u64> {
        self.api.kill_all(self.kind).await
    }

    /// Deletes every job; how many went. Each leaves as on every path.
    pub async fn clear(&self) -> Result<u64> {
        self.api.clear(self.kind).await
    }

    fn entry(&self, record: JobRecord) -> SetJob<'a> {
        SetJob {
            api: self.api,
            kind: self.kind,
            record,
        }
    }
}

/// A job read from a set, with what can be done to it (Sidekiq's `SortedEntry`); reads as
/// the [`JobRecord`] it is. Each verb acts on the exact bytes read, and says `false` when
/// the job had moved meanwhile.
#[derive(Clone)]
pub struct SetJob<'a> {
    api: &'a Api,
    kind: SetKind,
    record: JobRecord,
}

impl SetJob<'_> {
    /// Back to its queue now; from the retry and dead sets its retry count goes down by one,
    /// as Sidekiq's "Retry Now" does.
    pub async fn retry_now(&self) -> Result<bool> {
        self.api.retry_now(self.kind, &self.record).await
    }

    /// To its queue now, as it is (a scheduled job's "Add to queue").
    pub async fn add_to_queue(&self) -> Result<bool> {
        self.api.add_to_queue(self.kind, &self.record).await
    }

    /// Removes it for good, as on every path a job leaves by.
    pub async fn delete(&self) -> Result<bool> {
        self.api.delete(self.kind, &self.record).await
    }

    /// To the dead set.
    pub async fn kill(&self) -> Result<bool> {
        self.api.kill(Some(self.kind), &self.record).await
    }

    /// Which set it was read from.
    pub fn kind(&self) -> SetKind {
        self.kind
    }

    /// The job as read.
    pub fn into_record(self) -> JobRecord {
        self.record
    }
}

impl Deref for SetJob<'_> {
    type Target = JobRecord;
    fn deref(&self) -> &JobRecord {
        &self.record
    }
}
