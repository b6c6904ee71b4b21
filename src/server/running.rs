//! The jobs running now in this process, by slot: what the heartbeat reports, what TTIN
//! logs, and what a hard stop pushes back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::server::work::UnitOfWork;

/// A job that is running now.
#[derive(Debug, Clone)]
pub(crate) struct RunningJob {
    /// The job: its exact bytes, to show and to push back on a hard stop, and what holds it.
    pub work: UnitOfWork,
    /// When it started, in whole epoch seconds (as Sidekiq writes `run_at`).
    pub run_at: u64,
    /// Its cancellation, output and progress, shared with the job.
    pub signals: Arc<crate::job::context::Signals>,
}

/// The jobs running now, by slot id.
pub(crate) type Running = Arc<Mutex<HashMap<u64, RunningJob>>>;

/// Logs every running job (TTIN).
pub(crate) fn log_running(running: &Running) {
    let running = running.lock().expect("running jobs lock");
    tracing::info!(busy = running.len(), "TTIN: running jobs");
    for (slot, job) in running.iter() {
        tracing::info!(
            slot = radix36(*slot),
            queue = &*job.work.queue,
            run_at = job.run_at,
            payload = %String::from_utf8_lossy(&job.work.raw),
            "running"
        );
    }
}

/// A slot id as Sidekiq writes thread ids: base 36.
pub(crate) fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}
