//! What the two peer binaries share: argument parsing, REDIS_URL, the LOG switch, the
//! completion counter and the result lines (the panel parses those lines, keep them stable).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The queue both peers push to and drain.
pub const QUEUE: &str = "default";
/// A drain that has not finished by then exits non-zero.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

pub enum Mode {
    Push { jobs: u64 },
    Drain { jobs: u64, concurrency: usize },
}

/// `BIN push N` or `BIN drain N C`; anything else prints usage and exits 2.
pub fn parse_args() -> Mode {
    let args: Vec<String> = std::env::args().collect();
    let bin = args.first().map(String::as_str).unwrap_or("peer");
    let usage = || -> ! {
        eprintln!("usage: {bin} push N | {bin} drain N C   (env REDIS_URL, LOG=warn|default)");
        std::process::exit(2)
    };
    let number = |s: &String| s.parse::<u64>().ok().filter(|n| *n > 0);
    match args.get(1).map(String::as_str) {
        Some("push") if args.len() == 3 => match number(&args[2]) {
            Some(jobs) => Mode::Push { jobs },
            None => usage(),
        },
        Some("drain") if args.len() == 4 => match (number(&args[2]), number(&args[3])) {
            (Some(jobs), Some(c)) => Mode::Drain { jobs, concurrency: c as usize },
            _ => usage(),
        },
        _ => usage(),
    }
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6399".to_string())
}

/// `LOG=warn`: a fmt subscriber on stderr at WARN. `LOG=default` (or unset): the same at
/// INFO, so whatever the crate logs per job by default is written.
pub fn init_logging() {
    let level = match std::env::var("LOG").as_deref() {
        Ok("warn") => tracing::Level::WARN,
        Ok("default") | Err(_) => tracing::Level::INFO,
        Ok(other) => fail(format!("LOG must be `warn` or `default`, not `{other}`")),
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Prints a clear message on stderr and exits 1.
pub fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}

/// Counts completions from the job handlers and records the time of the Nth.
pub struct Completions {
    target: u64,
    done: AtomicU64,
    started: OnceLock<Instant>,
    elapsed: OnceLock<Duration>,
    reached: Notify,
}

impl Completions {
    pub fn new(target: u64) -> Arc<Self> {
        Arc::new(Self {
            target,
            done: AtomicU64::new(0),
            started: OnceLock::new(),
            elapsed: OnceLock::new(),
            reached: Notify::new(),
        })
    }

    /// Call just before the worker/server is started.
    pub fn start_clock(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// One job completed; returns true for the Nth.
    pub fn complete(&self) -> bool {
        let n = self.done.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.target {
            let started = self.started.get().copied().unwrap_or_else(Instant::now);
            let _ = self.elapsed.set(started.elapsed());
            self.reached.notify_one();
            true
        } else {
            false
        }
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Waits for the Nth completion and returns the time from `start_clock` to it; after
    /// DRAIN_TIMEOUT says how many were done and exits 3.
    pub async fn wait(&self, name: &str) -> Duration {
        if tokio::time::timeout(DRAIN_TIMEOUT, self.reached.notified()).await.is_err() {
            eprintln!(
                "error: {name}: timed out after {} s with {} of {} jobs done",
                DRAIN_TIMEOUT.as_secs(),
                self.done(),
                self.target
            );
            std::process::exit(3);
        }
        *self.elapsed.get().expect("elapsed is set before the notify")
    }
}

fn rate(jobs: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        jobs as f64 / secs
    } else {
        f64::INFINITY
    }
}

pub fn print_push(name: &str, version: &str, jobs: u64, took: Duration) {
    let s = took.as_secs_f64();
    println!("{name} {version}: pushed {jobs} jobs in {s:.3} s = {:.0} jobs/s", rate(jobs, s));
}

pub fn print_drain(name: &str, version: &str, jobs: u64, concurrency: usize, took: Duration) {
    let s = took.as_secs_f64();
    println!(
        "{name} {version}: drained {jobs} jobs at -c {concurrency} in {s:.3} s = {:.0} jobs/s",
        rate(jobs, s)
    );
}
