//! Acknowledgements: removing finished jobs from their in-progress hashes, in batches.
//!
//! Every job task sends its acknowledgement (hash, slot) to one task ([`acknowledge`]),
//! which removes whatever has gathered with one `HDEL hash slot slot …` per hash, so a busy
//! server pays a fraction of a command per job, and sends only slot numbers, never payloads.
//! A counter of those not yet written tells the manager when nothing is in flight (see its
//! push-back of jobs a lost fetch reply stranded).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::store::connection::Connection;
use crate::store::outage::{Outage, query_until_ok};

/// Acknowledgements written in one round trip at most.
const ACK_BATCH: usize = 1_000;

/// An acknowledgement: remove field `slot` from the in-progress hash `hash`.
pub(crate) type Ack = (Arc<str>, u64);

/// Sends acknowledgements to [`acknowledge`] and counts those not yet written to Redis.
#[derive(Clone)]
pub(crate) struct Acks {
    tx: mpsc::UnboundedSender<Ack>,
    pending: Arc<AtomicUsize>,
}

impl Acks {
    /// A sender and the receiver [`acknowledge`] drains.
    pub fn channel() -> (Acks, mpsc::UnboundedReceiver<Ack>, Arc<AtomicUsize>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        (
            Acks {
                tx,
                pending: Arc::clone(&pending),
            },
            rx,
            pending,
        )
    }

    /// Queues the removal of a finished job from its in-progress hash.
    pub fn send(&self, hash: &Arc<str>, slot: u64) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        // The acknowledger outlives every sender, so this cannot fail.
        let _ = self.tx.send((Arc::clone(hash), slot));
    }

    /// An acknowledgement counted as pending now and sent later (once a tracked job's
    /// status is written), so the manager never takes the job for stranded meanwhile.
    pub fn later(&self, hash: &Arc<str>, slot: u64) -> LaterAck {
        self.pending.fetch_add(1, Ordering::SeqCst);
        LaterAck {
            acks: self.clone(),
            ack: Some((Arc::clone(hash), slot)),
        }
    }
}

/// An acknowledgement already counted as pending, to send later ([`Acks::later`]). Dropped
/// unsent, it is no longer counted: the job stays in its hash and runs again when recovered.
pub(crate) struct LaterAck {
    acks: Acks,
    ack: Option<Ack>,
}

impl LaterAck {
    /// Sends it to the acknowledger.
    pub fn send(mut self) {
        if let Some(ack) = self.ack.take() {
            let _ = self.acks.tx.send(ack);
        }
    }
}

impl Drop for LaterAck {
    fn drop(&mut self) {
        if self.ack.take().is_some() {
            self.acks.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Acknowledges finished jobs in batches until every sender is gone.
pub(crate) async fn acknowledge(
    mut acks: mpsc::UnboundedReceiver<Ack>,
    mut conn: Connection,
    pending: Arc<AtomicUsize>,
    config: crate::store::config::RedisConfig,
) {
    let mut batch: Vec<Ack> = Vec::new();
    let mut outage = Outage::new("acknowledge");
    while acks.recv_many(&mut batch, ACK_BATCH).await > 0 {
        let pipe = removals(&mut batch);
        // Until it works: an unacknowledged job would run again after a recovery.
        if let Err(e) = query_until_ok(&mut conn, &pipe, &mut outage).await {
            // A hash of the wrong type, say: not acknowledged, so a recovery may run the
            // jobs again; never a loop.
            tracing::error!(error = %e, jobs = batch.len(), "acknowledge: {}; not retried, as waiting will not cure it", crate::store::errors::explain(&e));
        }
        // Replicated before the jobs count as done, when asked (a failover then cannot
        // bring a finished job back).
        crate::store::connection::wait_for_replicas(&mut conn, &config, "acknowledge").await;
        pending.fetch_sub(batch.len(), Ordering::SeqCst);
        batch.clear();
    }
}

/// One `HDEL` per hash for a batch of acknowledgements (several queues interleave in one).
fn removals(batch: &mut [Ack]) -> redis::Pipeline {
    batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut pipe = redis::pipe();
    for group in batch.chunk_by(|a, b| a.0 == b.0) {
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(&*group[0].0);
        for (_, slot) in group {
            hdel.arg(*slot);
        }
        pipe.add_command(hdel).ignore();
    }
    pipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hdel_per_hash() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut batch = vec![
            (Arc::clone(&a), 1),
            (Arc::clone(&b), 2),
            (Arc::clone(&a), 3),
        ];
        let pipe = removals(&mut batch);
        let commands: Vec<Vec<u8>> = pipe.cmd_iter().map(|c| c.get_packed_command()).collect();
        assert_eq!(commands.len(), 2);
        let text = String::from_utf8_lossy(&commands[0]);
        assert!(text.contains("HDEL") && text.contains("\r\n1\r\n") && text.contains("\r\n3\r\n"));
    }
}
