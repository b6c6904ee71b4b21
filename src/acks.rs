//! Acknowledgements: removing finished jobs from their in-progress lists, in pipelines.
//!
//! Every job task sends its acknowledgement to one task ([`acknowledge`]), which writes
//! them `LREM` by `LREM` in pipelines of up to 1,000, so a busy server pays a fraction of a
//! round trip per job. A counter of those not yet written tells the manager when nothing
//! is in flight (see its push-back of jobs a lost fetch reply stranded).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::connection::{Connection, Outage, query_until_ok};

/// Acknowledgements sent in one pipeline at most.
const ACK_BATCH: usize = 1_000;

/// An acknowledgement: remove `raw` from the in-progress list `list`.
pub(crate) type Ack = (Arc<str>, Arc<[u8]>);

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

    /// Queues the removal of a finished job from its in-progress list.
    pub fn send(&self, list: &Arc<str>, raw: &Arc<[u8]>) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        // The acknowledger outlives every sender, so this cannot fail.
        let _ = self.tx.send((Arc::clone(list), Arc::clone(raw)));
    }
}

/// Acknowledges finished jobs in pipelines until every sender is gone.
pub(crate) async fn acknowledge(
    mut acks: mpsc::UnboundedReceiver<Ack>,
    mut conn: Connection,
    pending: Arc<AtomicUsize>,
) {
    let mut batch: Vec<Ack> = Vec::new();
    let mut outage = Outage::new("acknowledge");
    while acks.recv_many(&mut batch, ACK_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (list, raw) in &batch {
            // From the tail: the list is pushed at its head, so the oldest job, the one most
            // likely done, is found first rather than after every newer one.
            pipe.lrem(&**list, -1, &**raw).ignore();
        }
        // Until it works: an unacknowledged job would run again after a recovery.
        query_until_ok(&mut conn, &pipe, &mut outage).await;
        pending.fetch_sub(batch.len(), Ordering::SeqCst);
        batch.clear();
    }
}
