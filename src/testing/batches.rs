//! Batches in the test mode: the state a server keeps in Redis (`batch:BID:unran`,
//! `:pending`, `:failed`, `:dead`, the children's sets), kept in memory, with the same rules
//! as the server's counting script, so callbacks fire during a [`super::Fake`]'s drain when
//! they would on a server.

use std::collections::{HashMap, HashSet};

use crate::client::BatchCallback;
use crate::error::{Error, Result};

/// One outcome of a batch's job, as the server counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    /// It succeeded (or was skipped or discarded on purpose).
    Success,
    /// It failed and will be retried.
    Failure,
    /// It will not run again.
    Death,
}

#[derive(Default)]
struct Batch {
    parent: Option<String>,
    /// Callback payloads without their final `}`, and their queues, by event.
    callbacks: HashMap<&'static str, (String, String)>,
    fired: HashSet<&'static str>,
    unran: HashSet<String>,
    pending: HashSet<String>,
    failed: HashSet<String>,
    dead: HashSet<String>,
    kids_incomplete: HashSet<String>,
    kids_unsucceeded: HashSet<String>,
}

/// Every batch a fake has seen.
#[derive(Default)]
pub(super) struct Batches {
    by_bid: HashMap<String, Batch>,
}

impl Batches {
    /// Fails unless `bid` exists and has not succeeded, as `Batch::open` does on a server.
    pub fn check_open(&self, bid: &str) -> Result<()> {
        match self.by_bid.get(bid) {
            None => Err(Error::NotFound(format!(
                "no batch {bid:?} in this fake; create it with Batch::push first"
            ))),
            Some(batch) if batch.fired.contains("success") => Err(Error::Config(format!(
                "batch {bid:?} has already succeeded; add work to a new batch"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Records a new batch (a child of `parent`, which must be open).
    pub fn create(
        &mut self,
        bid: &str,
        parent: Option<&str>,
        callbacks: Vec<BatchCallback>,
    ) -> Result<()> {
        if let Some(parent) = parent {
            self.check_open(parent)?;
            let parent = self.by_bid.get_mut(parent).expect("checked");
            parent.kids_incomplete.insert(bid.to_string());
            parent.kids_unsucceeded.insert(bid.to_string());
        }
        let batch = Batch {
            parent: parent.map(str::to_string),
            callbacks: callbacks
                .into_iter()
                .map(|c| (c.event, (c.payload, c.queue)))
                .collect(),
            ..Batch::default()
        };
        self.by_bid.insert(bid.to_string(), batch);
        Ok(())
    }

    /// Counts jobs `jids` in batch `bid` as pending and unran.
    pub fn add(&mut self, bid: &str, jids: impl IntoIterator<Item = String>) {
        if let Some(batch) = self.by_bid.get_mut(bid) {
            for jid in jids {
                batch.unran.insert(jid.clone());
                batch.pending.insert(jid);
            }
        }
    }

    /// Counts one outcome of job `jid` of batch `bid`; returns the callbacks that fire, as
    /// (payload, queue), as the server's script does.
    pub fn count(
        &mut self,
        bid: &str,
        jid: &str,
        kind: Counted,
        now: f64,
    ) -> Vec<(String, String)> {
        let mut fired = Vec::new();
        let Some(batch) = self.by_bid.get_mut(bid) else {
            return fired;
        };
        match kind {
            Counted::Success => {
                for set in [
                    &mut batch.unran,
                    &mut batch.pending,
                    &mut batch.failed,
                    &mut batch.dead,
                ] {
                    set.remove(jid);
                }
            }
            Counted::Failure => {
                batch.unran.remove(jid);
                if batch.pending.contains(jid) {
                    batch.failed.insert(jid.to_string());
                }
            }
            Counted::Death => {
                batch.unran.remove(jid);
                if batch.pending.remove(jid) {
                    batch.dead.insert(jid.to_string());
                    fire(batch, "death", now, &mut fired);
                }
            }
        }
        // Completion and success climb to the parents, as far as they change something.
        let mut at = bid.to_string();
        loop {
            let batch = self.by_bid.get_mut(&at).expect("a known batch");
            let mut changed = Vec::new();
            if !batch.fired.contains("complete")
                && batch.unran.is_empty()
                && batch.kids_incomplete.is_empty()
            {
                fire(batch, "complete", now, &mut fired);
                changed.push("complete");
            }
            if !batch.fired.contains("success")
                && batch.pending.is_empty()
                && batch.dead.is_empty()
                && batch.kids_unsucceeded.is_empty()
            {
                fire(batch, "success", now, &mut fired);
                changed.push("success");
            }
            let Some(parent) = batch.parent.clone().filter(|_| !changed.is_empty()) else {
                return fired;
            };
            let Some(up) = self.by_bid.get_mut(&parent) else {
                return fired;
            };
            for event in changed {
                match event {
                    "complete" => up.kids_incomplete.remove(&at),
                    _ => up.kids_unsucceeded.remove(&at),
                };
            }
            at = parent;
        }
    }
}

/// Records `event` as fired (once) and collects its callback, if it has one.
fn fire(batch: &mut Batch, event: &'static str, now: f64, fired: &mut Vec<(String, String)>) {
    if !batch.fired.insert(event) {
        return;
    }
    if let Some((payload, queue)) = batch.callbacks.get(event) {
        fired.push((format!("{payload},\"enqueued_at\":{now}}}"), queue.clone()));
    }
}
