//! The log stream of the `psychiq` binary: stderr, where a line that cannot be written (a
//! full disk, a closed pipe) is dropped and counted, and the count is said on the next line
//! that can be written. Logging must never stop a server: tracing-subscriber reports a
//! failed write with `eprintln!`, which panics when stderr itself is what failed, and that
//! panic took the whole server down with status 0, its jobs left in progress.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lines that could not be written since the last one that could.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Makes a [`Line`] writer per log event (tracing-subscriber's `MakeWriter`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogStream {
    /// Whether lines are JSON (the notice of dropped lines is then JSON too).
    pub json: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogStream {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { json: self.json }
    }
}

/// One log event's writer: each event arrives as one `write` of its whole text.
pub(crate) struct Line {
    json: bool,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut stderr = std::io::stderr().lock();
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped > 0 {
            let notice = if self.json {
                format!(
                    "{{\"level\":\"WARN\",\"dropped_lines\":{dropped},\"message\":\"{dropped} log lines could not be written (disk full? pipe closed?) and were dropped\"}}\n"
                )
            } else {
                format!(
                    "WARN psychiq: {dropped} log lines could not be written (disk full? pipe closed?) and were dropped\n"
                )
            };
            if stderr.write_all(notice.as_bytes()).is_ok() {
                DROPPED.fetch_sub(dropped, Ordering::Relaxed);
            }
        }
        if stderr.write_all(buf).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        // Always "written": a log line is never worth an error, a retry or a panic.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
