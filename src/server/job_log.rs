//! Psychiq's own line per job start and per job end, and the span a job's own log lines run
//! in.
//!
//! By default both go through `tracing`: a `start` and a `done` event, and a `job` span
//! with the job's class, jid, queue and retry count, so whatever subscriber the app set up
//! sees them. A log stream that Psychiq owns (the `psychiq` binary's) installs a
//! [`JobLines`] writer instead: it formats the two lines itself, in the same words, at a
//! fraction of the cost (they were most of a no-op job's CPU), and, when it can add the
//! job's fields to a worker's lines itself, asks for no span. The `RUST_LOG` filter still
//! decides: a line is written only where the `tracing` event would have been.

use std::sync::OnceLock;

use crate::job::text;

/// The target the lines have always had (`RUST_LOG=psychiq::server::execute=warn` silences
/// them).
pub(crate) const TARGET: &str = "psychiq::server::execute";

/// One of Psychiq's own lines about a job.
#[derive(Debug, Clone, Copy)]
pub struct JobLine<'a> {
    /// `"start"` or `"done"`.
    pub message: &'static str,
    /// The worker's class, as in the payload (written printable: control characters
    /// escaped).
    pub class: &'a str,
    /// The job id.
    pub jid: &'a str,
    /// The queue.
    pub queue: &'a str,
    /// For `done`: how long the run took, in microseconds (logged as `elapsed_ms`).
    pub elapsed_us: Option<u64>,
}

/// Writes Psychiq's per-job lines where a log stream of its own is in use.
pub trait JobLines: Send + Sync + 'static {
    /// Writes one line (the filter has already said it is wanted).
    fn write(&self, line: JobLine<'_>);
    /// Whether this stream adds the running job's fields to every line logged inside it,
    /// so the `job` span is not needed.
    fn adds_job_fields(&self) -> bool;
}

static LINES: OnceLock<Box<dyn JobLines>> = OnceLock::new();

/// Installs the writer of per-job lines, once for the process; later calls are ignored.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub fn install(lines: impl JobLines) {
    let _ = LINES.set(Box::new(lines));
}

/// Whether a job's own lines need the `job` span for its fields.
pub(crate) fn span_needed() -> bool {
    LINES.get().is_none_or(|lines| !lines.adds_job_fields())
}

/// Says a job started or ended, through the installed writer or as a `tracing` event.
pub(crate) fn say(line: JobLine<'_>) {
    // One filter check for both writers: nothing below runs for a line nobody wants.
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    if let Some(lines) = LINES.get() {
        lines.write(line);
        return;
    }
    let (class, jid, queue) = (
        text::printable(line.class),
        text::printable(line.jid),
        text::printable(line.queue),
    );
    match line.elapsed_us {
        None => tracing::info!(
            target: TARGET,
            parent: None,
            class = %class,
            jid = %jid,
            queue = %queue,
            "{}",
            line.message
        ),
        Some(us) => tracing::info!(
            target: TARGET,
            parent: None,
            class = %class,
            jid = %jid,
            queue = %queue,
            elapsed_ms = us as f64 / 1000.0,
            "{}",
            line.message
        ),
    }
}
