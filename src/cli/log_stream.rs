//! The log stream of the `psychiq` binary: lines go to a bounded buffer in memory and one
//! thread of their own writes them to stderr, many lines a `write`.
//!
//! Why: a job logs two lines (`start`, `done`), and a `write` to stderr for each took more of
//! the server's time than running a no-op job. Here a line costs a copy under a lock; the
//! writer thread takes whatever has gathered, so under load one `write` carries hundreds of
//! lines and, when idle, a line is written as soon as it is logged.
//!
//! Logging never slows or stops a server: a stderr that blocks (a full pipe, a stopped
//! terminal) blocks only the writer thread. When the buffer is full, new lines are dropped
//! and counted, and so are lines whose `write` failed (a full disk, a closed pipe); the
//! count is said on the next line that is written. Lines keep their order: one buffer, one
//! writer. [`flush`] writes what is left before the process exits, and a panic of the main
//! thread flushes before its message is printed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bytes held for the writer before new lines are dropped: about 50,000 lines, a few
/// seconds of a busy server's log. `PSYCHIQ_LOG_BUFFER` (bytes) sets another; 0 writes
/// each line where it is logged, as before this buffer.
const CAPACITY: usize = 8 << 20;

/// The capacity in use: [`CAPACITY`] or `PSYCHIQ_LOG_BUFFER`.
static CAPACITY_IN_USE: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(CAPACITY);

/// How long the writer lets lines gather after a `write`: under load, one `write` a
/// millisecond; idle, a line still goes out at once (the writer is waiting for it).
const GATHER: Duration = Duration::from_millis(1);

/// Lines dropped (buffer full, or their `write` failed) and not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The buffer between the logging threads and the writer thread.
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when lines arrive for a waiting writer, and when a write is done.
    changed: Condvar,
    /// The writer is asleep on `changed` waiting for lines (saves a wake-up call per line
    /// while it is busy).
    writer_waiting: AtomicBool,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer holds taken lines it has not finished writing.
    writing: bool,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        match std::env::var("PSYCHIQ_LOG_BUFFER")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            // No buffer: each line is written where it is logged (and waits for stderr).
            Some(0) => UNBUFFERED.store(true, Ordering::Relaxed),
            Some(bytes) => CAPACITY_IN_USE.store(bytes, Ordering::Relaxed),
            None => {}
        }
        let shared = Shared {
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
            writer_waiting: AtomicBool::new(false),
        };
        let spawned = if UNBUFFERED.load(Ordering::Relaxed) {
            Ok(())
        } else {
            std::thread::Builder::new()
                .name("psychiq-log".into())
                .spawn(write_forever)
                .map(drop)
        };
        if let Err(e) = spawned {
            // No thread: lines would wait forever. Say it once; logging goes on unbuffered.
            let _ = writeln!(
                std::io::stderr(),
                "psychiq: no log writer thread ({e}); logging straight to stderr"
            );
            UNBUFFERED.store(true, Ordering::Relaxed);
        }
        install_panic_flush();
        shared
    })
}

/// Set when the writer thread could not start: lines are written where they are logged.
static UNBUFFERED: AtomicBool = AtomicBool::new(false);

/// Lines are JSON (the notice of dropped lines is then JSON too).
static JSON: AtomicBool = AtomicBool::new(false);

/// Makes a [`Line`] writer per log event (tracing-subscriber's `MakeWriter`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogStream {
    /// Whether lines are JSON (the notice of dropped lines is then JSON too).
    pub json: bool,
}

impl LogStream {
    /// Starts the writer thread now, so the first line does not pay for it.
    pub(crate) fn start(self) -> Self {
        JSON.store(self.json, Ordering::Relaxed);
        shared();
        self
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogStream {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

/// One log event's writer: each event arrives as one `write` of its whole text.
pub(crate) struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        append(buf);
        // Always "written": a log line is never worth an error, a retry or a panic.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Adds whole lines for the writer thread (or drops and counts them when the buffer is
/// full).
pub(crate) fn append(lines: &[u8]) {
    let shared = shared();
    if UNBUFFERED.load(Ordering::Relaxed) {
        write_out(lines, JSON.load(Ordering::Relaxed));
        return;
    }
    let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
    if pending.lines.len() + lines.len() > CAPACITY_IN_USE.load(Ordering::Relaxed) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    } else {
        pending.lines.extend_from_slice(lines);
    }
    drop(pending);
    if shared.writer_waiting.load(Ordering::Acquire) {
        shared.changed.notify_all();
    }
}

/// The writer thread: takes what has gathered, writes it, lets more gather.
fn write_forever() {
    let shared = shared();
    let mut taken = Vec::with_capacity(64 << 10);
    loop {
        {
            let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            while pending.lines.is_empty() {
                shared.writer_waiting.store(true, Ordering::Release);
                pending = shared
                    .changed
                    .wait(pending)
                    .unwrap_or_else(|e| e.into_inner());
                shared.writer_waiting.store(false, Ordering::Release);
            }
            std::mem::swap(&mut pending.lines, &mut taken);
            pending.writing = true;
        }
        write_out(&taken, JSON.load(Ordering::Relaxed));
        shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .writing = false;
        shared.changed.notify_all(); // a flush may be waiting for this
        taken.clear();
        // A burst of a few megabytes leaves a big buffer behind; give it back.
        taken.shrink_to(1 << 20);
        std::thread::sleep(GATHER);
    }
}

/// Writes `lines` to stderr, after the notice of any dropped lines; counts the lines of a
/// failed write as dropped.
fn write_out(lines: &[u8], json: bool) {
    let mut stderr = std::io::stderr().lock();
    let dropped = DROPPED.load(Ordering::Relaxed);
    if dropped > 0 && stderr.write_all(notice(dropped, json).as_bytes()).is_ok() {
        DROPPED.fetch_sub(dropped, Ordering::Relaxed);
    }
    if stderr.write_all(lines).is_err() {
        let count = lines.iter().filter(|&&b| b == b'\n').count().max(1);
        DROPPED.fetch_add(count as u64, Ordering::Relaxed);
    }
}

fn notice(dropped: u64, json: bool) -> String {
    if json {
        format!(
            "{{\"level\":\"WARN\",\"dropped_lines\":{dropped},\"message\":\"{dropped} log lines could not be written (stderr too slow or blocked, disk full, pipe closed) and were dropped\"}}\n"
        )
    } else {
        format!(
            "WARN psychiq: {dropped} log lines could not be written (stderr too slow or blocked, disk full, pipe closed) and were dropped\n"
        )
    }
}

/// Waits, at most `limit`, until every line logged so far is written (a stderr that blocks
/// longer loses them: the process is ending). Returns whether all were written.
pub(crate) fn flush(limit: Duration) -> bool {
    let Some(shared) = SHARED.get() else {
        return true; // nothing was ever logged here
    };
    let deadline = Instant::now() + limit;
    let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
    while !pending.lines.is_empty() || pending.writing {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        shared.changed.notify_all();
        pending = shared
            .changed
            .wait_timeout(pending, left.min(GATHER * 5))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(pending);
    // Lines dropped since the last one written are said before the process ends.
    if DROPPED.load(Ordering::Relaxed) > 0 {
        write_out(&[], JSON.load(Ordering::Relaxed));
    }
    true
}

/// A panic that ends the program prints its message after the lines logged before it. (A
/// job's panic, on a runtime thread, is caught and fails the job: it does not wait.)
fn install_panic_flush() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") {
            flush(Duration::from_millis(500));
        }
        previous(info);
    }));
}
