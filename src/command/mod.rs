//! Command workers: jobs run by any program, described in a TOML file.
//!
//! Each job class maps to a program. The job's `args` array is written as JSON to the
//! program's standard input; `PSYCHIQ_JID`, `PSYCHIQ_CLASS` and `PSYCHIQ_QUEUE` are in its
//! environment. Exit status 0 is success; any other status, a signal, or running past the
//! timeout is a failure whose `error_message` is the end of what the program wrote to
//! standard error, and the usual retry rules apply. Its standard output goes to the
//! server's standard output.
//!
//! **Results and workflows.** `PSYCHIQ_RESULT` names a file the program may write its
//! result to, as JSON: a tracked job's result ([`crate::Task`]'s output for a Rust worker),
//! and a workflow step's, which the steps after it read. In a workflow step,
//! `PSYCHIQ_INPUTS` names a file holding the results of the steps it runs after (a JSON
//! object by step name), and `PSYCHIQ_WORKFLOW` and `PSYCHIQ_STEP` say where it is. A
//! workflow of command workers is written in TOML too ([`parse_workflow`]).
//!
//! ```toml
//! [workers."Reports::Generate"]
//! command = ["python3", "reports/generate.py"]   # argv; no shell is involved
//! dir = "/srv/app"                                # optional working directory
//! env = { PYTHONUNBUFFERED = "1" }                # optional extra environment
//! timeout = 300                                   # optional, seconds
//! limit = "reports-api"                           # optional: a [limits."name"] table
//!
//! [limits."reports-api"]                          # see psychiq::limits
//! kind = "concurrent"     # or "window", "sliding-window", "bucket", "leaky"
//! size = 3                # holders at once, or grants per interval
//! lease = 30              # concurrent: seconds a killed process's places stay taken
//! # interval = 60         # the others: seconds
//! ```
//!
//!
//! The same file may declare periodic entries beside them (`[periodic."name"]`, see
//! [`crate::periodic`]).
//!
//! ```
//! let registry = psychiq::command::parse_workers(r#"
//!     [workers.Hello]
//!     command = ["echo", "hello"]
//! "#).unwrap();
//! assert_eq!(registry.class_names(), ["Hello"]);
//! ```

pub(crate) mod process_group;
mod spec;
mod workflow_file;

use spec::CommandSpec;
pub use spec::{load_workers, parse_workers};
pub use workflow_file::{load_workflow, parse_workflow};

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::job::failure::JobError;
use crate::job::payload::JobMap;
use crate::job::worker::{JobFuture, RawJob, RawWorker, WorkerOptions};

/// How much of the end of standard error becomes the `error_message`.
const STDERR_TAIL_BYTES: usize = 4_000;

pub(super) struct CommandWorker {
    spec: Arc<CommandSpec>,
    options: WorkerOptions,
}

impl RawWorker for CommandWorker {
    fn start(&self, job: &RawJob<'_>) -> Result<JobFuture, serde_json::Error> {
        let spec = Arc::clone(&self.spec);
        let mut command = tokio::process::Command::new(&spec.command[0]);
        command
            .args(&spec.command[1..])
            // A job's program gets no Redis or dashboard credentials from the server's
            // environment; a TOML `env` entry may still pass what it needs on purpose.
            .env_remove("REDIS_URL")
            .env_remove("PSYCHIQ_WEB_BASIC_AUTH")
            .env_remove("PSYCHIQ_WEB_TOKEN")
            .envs(&spec.env)
            .env("PSYCHIQ_JID", job.jid)
            .env("PSYCHIQ_CLASS", job.class)
            .env("PSYCHIQ_QUEUE", job.queue)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &spec.dir {
            command.current_dir(dir);
        }
        // Its own process group: whatever it starts ends with the job.
        crate::command::process_group::isolate(&mut command);
        let input = job.args.as_bytes().to_vec();
        let jid = job.jid.to_string();
        Ok(Box::pin(async move {
            let files = JobFiles::create(&jid, &mut command).await?;
            let run = async {
                run(command, input, &spec.command).await?;
                files.read_result()
            };
            match spec.timeout {
                None => run.await,
                Some(secs) => tokio::time::timeout(Duration::from_secs_f64(secs), run)
                    .await
                    .unwrap_or_else(|_| {
                        Err(JobError::new(
                            "Psychiq::CommandTimeout",
                            format!(
                                "{:?} did not finish within {secs} s and was killed",
                                spec.command
                            ),
                        ))
                    }),
            }
        }))
    }
    fn options(&self) -> &WorkerOptions {
        &self.options
    }
    fn retry_in(&self, _: u32, _: &JobError) -> Option<Duration> {
        None
    }
    fn retries_exhausted(&self, _: &JobMap, _: &JobError) {}
}

/// The files a job's program reads its inputs from and writes its result to, in a
/// directory of its own that goes with the job.
struct JobFiles {
    dir: std::path::PathBuf,
}

impl JobFiles {
    /// Makes the directory, writes a workflow step's inputs, and names the files in the
    /// program's environment.
    async fn create(
        jid: &str,
        command: &mut tokio::process::Command,
    ) -> Result<JobFiles, JobError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("psychiq-{}-{n}-{jid}", std::process::id()));
        let shown = dir.display().to_string();
        let failed = |what: &str, e: std::io::Error| {
            JobError::new(
                "Psychiq::CommandFailed",
                format!("{what} {shown}: {e} (is the temporary directory writable?)"),
            )
        };
        std::fs::create_dir_all(&dir).map_err(|e| failed("cannot make", e))?;
        let files = JobFiles { dir };
        command.env("PSYCHIQ_RESULT", files.dir.join("result.json"));
        if let Some((wid, step)) = crate::workflow::current() {
            let inputs = crate::workflow::inputs().await?;
            let path = files.dir.join("inputs.json");
            std::fs::write(&path, serde_json::to_vec(&inputs)?)
                .map_err(|e| failed("cannot write the inputs in", e))?;
            command
                .env("PSYCHIQ_INPUTS", path)
                .env("PSYCHIQ_WORKFLOW", wid)
                .env("PSYCHIQ_STEP", step);
        }
        Ok(files)
    }

    /// The result the program wrote, kept as the job's output; none if it wrote none.
    fn read_result(&self) -> Result<(), JobError> {
        let Ok(text) = std::fs::read_to_string(self.dir.join("result.json")) else {
            return Ok(());
        };
        if text.trim().is_empty() {
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            JobError::new(
                "Psychiq::CommandFailed",
                format!("the result it wrote to $PSYCHIQ_RESULT is not JSON ({e}); write one JSON value, or nothing"),
            )
        })?;
        if let Some(job) = crate::job::context::current() {
            job.set_output(value.to_string());
        }
        Ok(())
    }
}

impl Drop for JobFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the program with `input` on stdin; its whole process group is killed when it has
/// exited or when this future is dropped (a timeout, a stop).
async fn run(
    mut command: tokio::process::Command,
    input: Vec<u8>,
    argv: &[String],
) -> Result<(), JobError> {
    let mut child = command.spawn().map_err(|e| {
        JobError::new(
            "Psychiq::CommandFailed",
            format!("cannot start {argv:?}: {e}"),
        )
    })?;
    struct Group(Option<u32>);
    impl Drop for Group {
        fn drop(&mut self) {
            crate::command::process_group::kill_group(self.0);
        }
    }
    let mut group = Group(child.id());
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // Write stdin and read stderr together, so neither pipe can fill up and stall the other.
    let write = async move {
        // A program that exits without reading its input is not an error in itself.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let mut err = Vec::new();
    let read = stderr.read_to_end(&mut err);
    // Once the program has exited, what it left running goes too, closing the stderr a
    // background process may still hold.
    let pid = child.id();
    let wait = async {
        let status = child.wait().await;
        crate::command::process_group::kill_group(pid);
        status
    };
    // A cancelled job's program gets TERM at once (KILL when the grace is over and this
    // future is dropped).
    let term = async {
        crate::context::cancelled().await;
        crate::command::process_group::term_group(pid);
        std::future::pending::<std::convert::Infallible>().await
    };
    let ((), read, status) = tokio::select! {
        all = async { tokio::join!(write, read, wait) } => all,
        never = term => match never {},
    };
    // Killed already, and its pid may be anyone's from now on.
    group.0 = None;
    read.map_err(|e| {
        JobError::new(
            "Psychiq::CommandFailed",
            format!("reading stderr of {argv:?}: {e}"),
        )
    })?;
    let status = status.map_err(|e| {
        JobError::new(
            "Psychiq::CommandFailed",
            format!("waiting for {argv:?}: {e}"),
        )
    })?;
    if status.success() {
        return Ok(());
    }
    let tail = &err[err.len().saturating_sub(STDERR_TAIL_BYTES)..];
    let tail = String::from_utf8_lossy(tail).trim().to_string();
    let message = if tail.is_empty() {
        format!("{argv:?} {status}")
    } else {
        tail
    };
    Err(JobError::new("Psychiq::CommandFailed", message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_entries_are_read_beside_workers() {
        let registry = parse_workers(
            r#"
            [periodic."nightly-report"]
            cron = "0 3 * * *"
            tz = "Europe/Berlin"
            class = "Reports::Nightly"
            args = [1, "full"]
            queue = "reports"
            retry = 3
            missed = "run-last"

            [periodic.pulse]
            cron = "*/10 * * * * *"
            class = "Pulse"
            "#,
        )
        .unwrap();
        let entries = registry.periodic_jobs();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name(), "nightly-report");
        assert_eq!(entries[0].schedule().time_zone(), "Europe/Berlin");
        assert_eq!(entries[1].schedule().time_zone(), "UTC");
        for (bad, says) in [
            ("[periodic.x]\ncron = \"0 3 * *\"\nclass = \"X\"", "5"),
            (
                "[periodic.x]\ncron = \"0 3 * * *\"\ntz = \"Nowhere\"\nclass = \"X\"",
                "IANA",
            ),
            (
                "[periodic.x]\ncron = \"0 3 * * *\"\nclass = \"X\"\nretry = \"often\"",
                "retry",
            ),
            (
                "[periodic.x]\ncron = \"0 3 * * *\"\nclass = \"X\"\nmissed = \"all\"",
                "missed",
            ),
            ("[periodic.x]\ncron = \"0 3 * * *\"", "class"),
        ] {
            let error = parse_workers(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn workers_run_within_limits_the_file_declares() {
        let registry = parse_workers(
            "[workers.Call]\ncommand = [\"true\"]\nlimit = \"api\"\n\
             [limits.api]\nkind = \"sliding-window\"\nsize = 10\ninterval = 60\n",
        )
        .unwrap();
        let limiter = registry
            .get("Call")
            .unwrap()
            .options()
            .rate_limit
            .clone()
            .unwrap();
        assert_eq!(limiter.name(), "api");
        assert_eq!(limiter.kind(), crate::limits::LimitKind::SlidingWindow);
        assert_eq!(limiter.interval(), Duration::from_secs(60));
        for (bad, says) in [
            (
                "[workers.C]\ncommand = [\"true\"]\nlimit = \"nope\"",
                "no [limits",
            ),
            (
                "[workers.C]\ncommand = [\"true\"]\nlimit = \"w\"\n[limits.w]\nkind = \"window\"\nsize = 3",
                "interval",
            ),
            (
                "[workers.C]\ncommand = [\"true\"]\nlimit = \"w\"\n[limits.w]\nkind = \"window\"\nsize = 0\ninterval = 1",
                "size",
            ),
            (
                "[workers.C]\ncommand = [\"true\"]\nlimit = \"w\"\n[limits.w]\nkind = \"fast\"\nsize = 1",
                "kind",
            ),
            (
                "[workers.C]\ncommand = [\"true\"]\nlimit = \"w\"\n[limits.w]\nkind = \"concurrent\"\nsize = 1\ninterval = 5",
                "only for window",
            ),
            (
                "[workers.C]\ncommand = [\"true\"]\nlimit = \"w\"\n[limits.w]\nkind = \"concurrent\"\nsize = 1\nwait = 1e30",
                "wait",
            ),
            (
                "[workers.C]\ncommand = [\"true\"]\ntimeout = 1e30",
                "timeout",
            ),
        ] {
            let error = parse_workers(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(parse_workers("").unwrap_err().contains("no [workers"));
        assert!(
            parse_workers("[workers.X]\ncommand = []")
                .unwrap_err()
                .contains("must name a program")
        );
        assert!(
            parse_workers("[workers.X]\ncommand = [\"a\"]\ntimeout = -1")
                .unwrap_err()
                .contains("timeout")
        );
        assert!(parse_workers("[workers.X]\ncommand = [\"a\"]\nbogus = 1").is_err());
    }

    #[test]
    fn capsules_are_declared_beside_the_workers() {
        let registry = parse_workers(
            "[workers.Call]\ncommand = [\"true\"]\n\
             [capsules.reports]\nqueues = [\"reports\", \"exports=2\"]\nconcurrency = 3\nprefetch = 1\n",
        )
        .unwrap();
        let capsule = crate::Capsule::parse("reports:reports,exports=2:3")
            .unwrap()
            .prefetch(1);
        assert_eq!(registry.capsules(), [capsule]);
        for (bad, says) in [
            (
                "[workers.C]\ncommand = [\"true\"]\n[capsules.r]\nqueues = []\nconcurrency = 3",
                "queue",
            ),
            (
                "[workers.C]\ncommand = [\"true\"]\n[capsules.r]\nqueues = [\"a\"]\nconcurrency = 0",
                "concurrency",
            ),
            (
                "[workers.C]\ncommand = [\"true\"]\n[capsules.r]\nqueues = [\"a=x\"]\nconcurrency = 2",
                "weight",
            ),
            (
                "[workers.C]\ncommand = [\"true\"]\n[capsules.r]\nqueue = [\"a\"]\nconcurrency = 2",
                "unknown field",
            ),
        ] {
            let error = parse_workers(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
