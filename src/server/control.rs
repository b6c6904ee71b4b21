//! The switches a server obeys, shared by the launcher, the heartbeat (remote signals) and
//! the local signal handler.

use std::sync::Arc;

use tokio::sync::watch;

/// The switches a server obeys: quiet (stop taking work) and stop.
#[derive(Clone)]
pub(crate) struct Control {
    pub quiet: Arc<watch::Sender<bool>>,
    pub stop: Arc<watch::Sender<bool>>,
    /// Stop without waiting for running jobs: they are pushed back at once.
    pub now: Arc<watch::Sender<bool>>,
}

impl Control {
    pub fn new() -> Control {
        Control {
            quiet: Arc::new(watch::channel(false).0),
            stop: Arc::new(watch::channel(false).0),
            now: Arc::new(watch::channel(false).0),
        }
    }
    /// Stops at once: running jobs are cancelled and pushed back to their queues.
    pub fn stop_now(&self) {
        self.stop();
        self.now.send_replace(true);
    }
    /// Stops fetching and scheduling; running jobs go on and the heartbeat keeps beating.
    pub fn quiet(&self) {
        if !self.quiet.send_replace(true) {
            tracing::info!("Quiet: no new jobs will be fetched");
        }
    }
    /// Quiets, then starts the graceful shutdown.
    pub fn stop(&self) {
        self.quiet();
        self.stop.send_replace(true);
    }
}
