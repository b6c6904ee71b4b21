//! A batch as the API reads it: its counts, failed jobs and times, read in one round trip.

use std::collections::HashMap;

/// A batch as the API reads it.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct BatchStatus {
    /// Its bid.
    pub bid: String,
    /// Its description.
    pub description: String,
    /// Its parent's bid, if it is a child batch.
    pub parent: Option<String>,
    /// Jobs ever added.
    pub total: u64,
    /// Jobs not yet succeeded (nor dead).
    pub pending: u64,
    /// Jobs that have failed and not succeeded since (retrying).
    pub failures: u64,
    /// Their jids.
    pub failed_jids: Vec<String>,
    /// Jobs that died.
    pub dead: u64,
    /// Child batches not yet succeeded.
    pub children_pending: u64,
    /// When it was created (epoch seconds).
    pub created_at: f64,
    /// When every job had run (epoch seconds).
    pub complete_at: Option<f64>,
    /// When every job had succeeded.
    pub success_at: Option<f64>,
    /// When the first job died.
    pub death_at: Option<f64>,
    /// Why its keys could not be read (one holds another type of value), naming the key;
    /// the counts are then zero.
    pub unreadable: Option<String>,
}

impl BatchStatus {
    pub(crate) fn unreadable(bid: String, why: String) -> BatchStatus {
        BatchStatus {
            bid,
            description: why.clone(),
            parent: None,
            total: 0,
            pending: 0,
            failures: 0,
            failed_jids: Vec::new(),
            dead: 0,
            children_pending: 0,
            created_at: 0.0,
            complete_at: None,
            success_at: None,
            death_at: None,
            unreadable: Some(why),
        }
    }
}

/// A batch's hash, pending count, failed jids, dead count and pending children.
pub(crate) type StatusRow = (HashMap<String, String>, u64, Vec<String>, u64, u64);

/// Queues the five reads of a [`StatusRow`] for the batch at `key`.
pub(crate) fn status_commands(pipe: &mut redis::Pipeline, key: &str) {
    pipe.hgetall(key)
        .scard(format!("{key}:pending"))
        .smembers(format!("{key}:failed"))
        .scard(format!("{key}:dead"))
        .scard(format!("{key}:kids_unsucceeded"));
}

/// The status those reads give; `None` when the batch is gone.
pub(crate) fn status_from(bid: &str, row: StatusRow) -> Option<BatchStatus> {
    let (fields, pending, failed_jids, dead, children_pending) = row;
    if fields.is_empty() {
        return None;
    }
    let time = |name: &str| fields.get(name).and_then(|v| v.parse::<f64>().ok());
    Some(BatchStatus {
        bid: bid.to_string(),
        description: fields.get("description").cloned().unwrap_or_default(),
        parent: fields.get("parent").cloned(),
        total: fields
            .get("total")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        pending,
        failures: failed_jids.len() as u64,
        failed_jids,
        dead,
        children_pending,
        created_at: time("created_at").unwrap_or(0.0),
        complete_at: time("complete_at"),
        success_at: time("success_at"),
        death_at: time("death_at"),
        unreadable: None,
    })
}
