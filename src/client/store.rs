//! What stands in for Redis behind a client (the test mode's store), and the shapes of
//! what the client hands it: jobs as written, and batches with their callbacks.

#[cfg(feature = "server")]
use super::Push;
#[cfg(feature = "server")]
use crate::error::Result;

/// A store that takes a client's jobs in place of Redis, as they would be written: the test
/// mode plugs one in (`testing::Fake`, `testing::inline`), so the client names no test code.
#[cfg(feature = "server")]
pub(crate) trait JobStore: Send + Sync + 'static {
    /// Takes the jobs (recorded, or performed at once); what became of each.
    fn push(&self, jobs: Vec<Pushed>) -> crate::job::middleware::BoxFuture<'_, Result<Vec<Push>>>;
    /// Records a new batch and takes its jobs, in one step, as `Batch::push` writes it.
    fn create_batch(&self, batch: NewBatch<'_>) -> Result<()>;
    /// Adds jobs to an open batch, as `Batch::open` does.
    fn add_to_batch(&self, bid: &str, jobs: Vec<Pushed>) -> Result<()>;
    /// A tracked job's status after its last run, if it ran.
    fn status(&self, jid: &str) -> Option<crate::job::status::JobStatus> {
        let _ = jid;
        None
    }
}

/// A batch as a store in place of Redis takes it (see `crate::batch::Batch`): its bid,
/// its parent's, its callbacks and its jobs, each stamped with `bid`.
#[cfg(feature = "server")]
pub(crate) struct NewBatch<'a> {
    pub bid: &'a str,
    pub parent: Option<&'a str>,
    pub callbacks: Vec<BatchCallback>,
    pub jobs: Vec<Pushed>,
}

/// A batch's callback job as it is kept until it fires.
pub(crate) struct BatchCallback {
    /// `complete`, `success` or `death`.
    pub event: &'static str,
    /// Its payload without the final `}` (firing appends `enqueued_at`).
    pub payload: String,
    pub queue: String,
}

/// A job as the client wrote it: its exact payload, and where it waits.
pub(crate) struct Pushed {
    pub jid: String,
    pub queue: String,
    /// Epoch seconds, for a job scheduled for later.
    pub at: Option<f64>,
    pub payload: String,
}
