//! Chaos: three server processes on a private Redis (`appendonly yes`, fsync always) run a
//! mixed workload (plain jobs, jobs that fail once and are retried, nested batches, unique
//! jobs, a class under a window limit, a periodic entry and iterable walks) while a driver,
//! seeded, `kill -9`s servers, stops one with SIGSTOP for longer than its heartbeat lives
//! and resumes it, and restarts Redis. Afterwards it checks invariants, not outputs:
//!
//! - every job ran at least once, and extra runs are no more than the jobs the killed and
//!   stopped servers could hold;
//! - each batch callback was enqueued exactly once;
//! - no periodic tick was enqueued twice;
//! - the window limit was never exceeded;
//! - no unique lock is left, nothing is in progress, nothing waits in a queue or a set.
//!
//! `PSYCHIQ_CHAOS_SECS` sets how long the chaos lasts (60 s unless set; the heartbeat's
//! 60 s is the floor for the stopped server to be taken for dead), `PSYCHIQ_CHAOS_SEED`
//! the seed (random unless set; printed either way, to replay a failure).
//!
//! The servers are this test binary itself, started again with `--ignored --exact
//! chaos_server` and its settings in the environment.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use psychiq::batch::Batch;
use psychiq::iteration::IterableWorker;
use psychiq::limits::Limiter;
use psychiq::periodic::{PeriodicJob, Schedule};
use psychiq::{Job, JobError, JobResult, Registry, Worker, WorkerOptions};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

/// Pushed every quarter second while the chaos lasts: plain, failing-once, unique and
/// limited jobs.
const CHUNK: [(&str, u32); 4] = [
    ("Chaos::Plain", 40),
    ("Chaos::Flaky", 3),
    ("Chaos::Unique", 3),
    ("Chaos::Limited", 2),
];
const PARENT_JOBS: u32 = 400;
const CHILD_JOBS: u32 = 200;
const WALKS: u32 = 3;
const WALK_STEPS: u64 = 40;
/// Steps of the workflow pushed at the start: one root, the rest after it, one after all.
const WF_STEPS: u32 = 10_000;
/// Tracked jobs of 0.8 s (long enough to be caught running, short enough not to be killed
/// three times and buried as poison), due across the chaos, some cancelled as it goes.
const LONGS: u32 = 24;
/// The window limit: starts a second.
const LIMIT: u32 = 25;
const CONCURRENCY: usize = 5;
const SERVERS: usize = 3;

/// Appends one JSON line per run to the file `CHAOS_OUT` names (O_APPEND: whole lines).
fn record(line: Value) {
    let path = std::env::var("CHAOS_OUT").expect("CHAOS_OUT");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut line = line;
    line["pid"] = std::process::id().into();
    let mut text = line.to_string();
    text.push('\n');
    file.write_all(text.as_bytes()).unwrap();
}

fn jid() -> String {
    psychiq::context::current()
        .map(|job| job.jid().to_string())
        .unwrap_or_default()
}

/// Takes a few milliseconds and records its kind and id. Registered as Chaos::Plain,
/// Chaos::Unique and (taking longer) Chaos::Part.
struct Plain(&'static str, u64);
impl Worker for Plain {
    type Args = (u32,);
    async fn perform(&self, (id,): (u32,)) -> JobResult {
        tokio::time::sleep(Duration::from_millis(self.1)).await;
        record(json!({"kind": self.0, "id": id, "jid": jid()}));
        Ok(())
    }
}

/// A workflow step: records its id, jid and what it read of its parents' results (how many,
/// and their sum), and returns its id as its result. Chaos::WfStep.
struct WfStep;
impl psychiq::Task for WfStep {
    type Args = (u32,);
    type Output = u32;
    async fn run(&self, (id,): (u32,)) -> Result<u32, JobError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let inputs = psychiq::workflow::inputs().await?;
        let sum: u64 = inputs.values().filter_map(Value::as_u64).sum();
        record(
            json!({"kind": "wfstep", "id": id, "jid": jid(), "inputs": inputs.len(), "sum": sum}),
        );
        Ok(id)
    }
}

/// Fails its first run, then records. Chaos::Flaky.
struct Flaky;
impl Worker for Flaky {
    type Args = (u32,);
    fn retry_in(&self, _: u32, _: &JobError) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
    async fn perform(&self, (id,): (u32,)) -> JobResult {
        let job = psychiq::context::current().unwrap();
        if job.field("retry_count").is_none() {
            return Err(JobError::msg("fails once"));
        }
        record(json!({"kind": "flaky", "id": id, "jid": jid()}));
        Ok(())
    }
}

/// Records the time it started, within a window limit. Chaos::Limited.
struct Limited;
impl Worker for Limited {
    type Args = (u32,);
    fn options() -> WorkerOptions {
        WorkerOptions::default().rate_limit(Limiter::window("chaos", LIMIT, Duration::from_secs(1)))
    }
    async fn perform(&self, (id,): (u32,)) -> JobResult {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        record(json!({"kind": "limited", "id": id, "jid": jid(), "at_ms": at}));
        Ok(())
    }
}

/// A batch callback or a periodic tick: records its jid and what it is. Chaos::Event.
struct Event;
impl Worker for Event {
    type Args = (String,);
    async fn perform(&self, (what,): (String,)) -> JobResult {
        let job = psychiq::context::current().unwrap();
        let tick = job.field("periodic_at").cloned().unwrap_or(Value::Null);
        record(json!({"kind": "event", "what": what, "jid": jid(), "tick": tick}));
        Ok(())
    }
}

/// Walks `WALK_STEPS` steps of 50 ms, recording each. Chaos::Walk.
struct Walk;
impl IterableWorker for Walk {
    type Args = (u32,);
    type Cursor = u64;
    fn class_name() -> String {
        "Chaos::Walk".into()
    }
    async fn step(&self, (id,): &(u32,), cursor: Option<u64>) -> Result<Option<u64>, JobError> {
        let step = cursor.unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        record(json!({"kind": "step", "id": id, "step": step}));
        Ok((step + 1 < WALK_STEPS).then_some(step + 1))
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register_as("Chaos::Plain", Plain("plain", 10))
        .register_as("Chaos::Unique", Plain("unique", 10))
        .register_as("Chaos::Part", Plain("part", 100))
        .register_as("Chaos::Long", Plain("long", 800))
        .register_as("Chaos::WfStep", WfStep)
        .register_as("Chaos::Flaky", Flaky)
        .register_as("Chaos::Limited", Limited)
        .register_as("Chaos::Event", Event)
        .register_iterable(Walk);
    registry.periodic(
        PeriodicJob::new(
            "chaos-tick",
            Schedule::cron("* * * * * *").unwrap(),
            Job::new("Chaos::Event", ("tick",)).unwrap().queue("ticks"),
        )
        .unwrap(),
    );
    registry
}

/// One server process of the test, a server binary as an app writes one (`psychiq::cli`):
/// runs until TERM, its exit status the CLI's. Started by the test below, never on its own
/// (it is ignored, and does nothing without its settings).
#[test]
#[ignore = "a server process the chaos test starts"]
fn chaos_server() {
    let (Ok(url), Ok(namespace)) = (
        std::env::var("CHAOS_REDIS"),
        std::env::var("CHAOS_NAMESPACE"),
    ) else {
        return;
    };
    let concurrency = CONCURRENCY.to_string();
    let args = [
        "chaos",
        "--redis-url",
        &url,
        "-n",
        &namespace,
        "-s",
        "chaos",
        "-c",
        &concurrency,
        "-q",
        "default",
        "-q",
        "ticks",
        "-t",
        "5",
    ];
    // Warnings only, but every job's lines where they cannot be written.
    let level = std::env::var("CHAOS_LOG").unwrap_or_else(|_| "warn".into());
    // SAFETY: set before the CLI starts any thread.
    unsafe { std::env::set_var("RUST_LOG", level) };
    let status = psychiq::cli::Cli::new("chaos")
        .system("chaos", registry())
        .run_from(args);
    if status != std::process::ExitCode::SUCCESS {
        std::process::exit(1);
    }
}

/// A chaos server process, killed if the test ends first.
struct ServerProcess {
    child: Child,
}

/// The last server's clock runs ten minutes fast (libfaketime): what several processes
/// decide together must follow Redis's clock, not theirs.
const FAST_CLOCK: &str = "+600s";
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
/// This server logs every job into a stream that cannot be written (`/dev/full`).
const FULL_DISK: usize = 1;

impl ServerProcess {
    fn start(
        index: usize,
        redis: &str,
        namespace: &str,
        out: &std::path::Path,
        log: &std::path::Path,
    ) -> Self {
        // The middle server logs into a stream that cannot be written (as on a full disk),
        // which must stop nothing.
        let mut command = Command::new(std::env::current_exe().unwrap());
        let log = if index == FULL_DISK {
            command.env("CHAOS_LOG", "info");
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap()
        } else {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap()
        };
        if index == SERVERS - 1 {
            assert!(
                std::path::Path::new(LIBFAKETIME).exists(),
                "{LIBFAKETIME} is missing: apt-get install faketime"
            );
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", FAST_CLOCK)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .args(["--ignored", "--exact", "chaos_server", "--nocapture"])
            .env("CHAOS_REDIS", redis)
            .env("CHAOS_NAMESPACE", namespace)
            .env("CHAOS_OUT", out)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        ServerProcess { child }
    }

    fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_nothing_and_fires_everything_once() -> psychiq::Result<()> {
    let secs: u64 = std::env::var("PSYCHIQ_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("PSYCHIQ_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("chaos: seed {seed} (PSYCHIQ_CHAOS_SEED={seed} replays it), {secs} s");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let mut redis = OwnRedis::start();
    let ns = TestNs::on(&redis.url()).await;
    let dir = std::env::temp_dir().join(format!("{}-chaos", ns.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("runs.jsonl");
    let log = dir.join("servers.log");

    // The batches and walks first; the rest is pushed while the chaos goes on.
    let c = &ns.client;
    let event = |what: &str| Job::new("Chaos::Event", (what,)).unwrap();
    let parent = Batch::new("chaos parent")
        .on_complete(event("parent-complete"))
        .on_success(event("parent-success"));
    let parent_bid = parent.bid().to_string();
    parent
        .push(
            c,
            (0..PARENT_JOBS)
                .map(|n| Job::new("Chaos::Part", (n,)).unwrap())
                .collect(),
        )
        .await?;
    Batch::new("chaos child")
        .parent(&parent_bid)
        .on_complete(event("child-complete"))
        .on_success(event("child-success"))
        .push(
            c,
            (0..CHILD_JOBS)
                .map(|n| Job::new("Chaos::Part", (PARENT_JOBS + n,)).unwrap())
                .collect(),
        )
        .await?;
    for n in 0..WALKS {
        c.push(Job::new("Chaos::Walk", (n,))?).await?;
    }
    // A workflow of 10,000 steps: a root, 9,998 after it, and one after all of them.
    let mut workflow = psychiq::workflow::Workflow::new("chaos")
        .on_failure(psychiq::workflow::OnFailure::Continue)
        .step("root", Job::new("Chaos::WfStep", (0,))?);
    let middle: Vec<String> = (1..WF_STEPS - 1).map(|n| format!("s{n}")).collect();
    for (n, name) in (1..).zip(&middle) {
        workflow = workflow
            .step(name, Job::new("Chaos::WfStep", (n,))?)
            .after(["root"]);
    }
    let all: Vec<&str> = middle.iter().map(String::as_str).collect();
    let wid = workflow
        .step("last", Job::new("Chaos::WfStep", (WF_STEPS - 1,))?)
        .after(&all)
        .push(c)
        .await?;
    // Due across the chaos, so cancels find them scheduled, queued, running and done.
    let mut longs: Vec<String> = Vec::new();
    for n in 0..LONGS {
        let due = Duration::from_millis(secs * 1_000 * u64::from(n) / u64::from(LONGS));
        let handle = c
            .push_tracked(Job::new("Chaos::Long", (n,))?.delay(due))
            .await?;
        longs.push(handle.jid().to_string());
    }
    let canceller = psychiq::api::Api::connect(&ns.redis, &ns.namespace).await?;
    // (id, its runs recorded when it was cancelled, what the cancel said: `None` when Redis
    // dropped it half-way, which may have marked the job or not)
    let mut cancels: Vec<(u32, usize, Option<psychiq::api::Cancellation>)> = Vec::new();
    let runs_of = |id: u32| -> usize {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|r| r["kind"] == "long" && r["id"] == id)
            .count()
    };

    let mut servers: Vec<ServerProcess> = (0..SERVERS)
        .map(|i| ServerProcess::start(i, &redis.url(), &ns.namespace, &out, &log))
        .collect();
    // The pusher: a chunk every quarter second until the chaos ends, each chunk pushed
    // again until Redis takes it (its jids kept, so a retried push that had landed is one
    // more run of the same job at most). Returns how many of each class it pushed and how
    // many pushes it had to retry.
    let pushing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pusher = {
        let client = ns.client.clone();
        let pushing = std::sync::Arc::clone(&pushing);
        tokio::spawn(async move {
            let mut pushed: BTreeMap<&'static str, u32> = BTreeMap::new();
            let mut retried = 0u32;
            while pushing.load(std::sync::atomic::Ordering::Relaxed) {
                for (class, n) in CHUNK {
                    let first = pushed.get(class).copied().unwrap_or(0);
                    let jobs: Vec<Job> = (first..first + n)
                        .map(|id| {
                            let job = Job::new(class, (id,))
                                .unwrap()
                                .jid(psychiq::__private::new_jid());
                            if class == "Chaos::Unique" {
                                job.unique_for(Duration::from_secs(3_600))
                            } else {
                                job
                            }
                        })
                        .collect();
                    let push = || async {
                        if class == "Chaos::Unique" {
                            for job in jobs.clone() {
                                client.try_push(job).await?;
                            }
                            psychiq::Result::Ok(())
                        } else {
                            client.push_bulk(jobs.clone()).await.map(|_| ())
                        }
                    };
                    while push().await.is_err() {
                        retried += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    pushed.insert(class, first + n);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (pushed, retried)
        })
    };
    // What the chaos did, to bound the extra runs it may cause.
    let (mut kills, mut stops, mut restarts) = (0u32, 0u32, 0u32);
    let started = Instant::now();
    let chaos = Duration::from_secs(secs);
    // One server is stopped past its heartbeat's 60 s early on, so the others recover its
    // jobs while it sleeps; it is resumed before the chaos ends.
    let sleeper = rng.random_range(0..SERVERS);
    eprintln!(
        "chaos: server {sleeper} will be stopped; server {} runs ten minutes fast",
        SERVERS - 1
    );
    let mut stopped_at: Option<Instant> = None;
    let stop_for = Duration::from_secs(65).min(chaos.saturating_sub(Duration::from_secs(5)));
    // Servers that exited though nobody asked them to (each is started again).
    let mut exits: Vec<String> = Vec::new();
    // Every process that was the full-disk server.
    let mut full_disk_pids: BTreeSet<u64> = BTreeSet::new();
    full_disk_pids.insert(u64::from(servers[FULL_DISK].child.id()));
    while started.elapsed() < chaos {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_500..4_000))).await;
        for (i, server) in servers.iter_mut().enumerate() {
            if let Some(status) = server.child.try_wait().unwrap() {
                exits.push(format!("server {i}: {status}"));
                *server = ServerProcess::start(i, &redis.url(), &ns.namespace, &out, &log);
                if i == FULL_DISK {
                    full_disk_pids.insert(u64::from(server.child.id()));
                }
            }
        }
        if stopped_at.is_none() && stops == 0 && started.elapsed() > Duration::from_secs(3) {
            servers[sleeper].signal("STOP");
            stopped_at = Some(Instant::now());
            stops += 1;
            continue;
        }
        if let Some(at) = stopped_at
            && at.elapsed() >= stop_for
        {
            servers[sleeper].signal("CONT");
            stopped_at = None;
        }
        match rng.random_range(0..10) {
            0..=5 => {
                // kill -9 a running (not the stopped) server and start it again.
                let victim = rng.random_range(0..SERVERS);
                if stopped_at.is_some() && victim == sleeper {
                    continue;
                }
                servers[victim].kill9();
                servers[victim] =
                    ServerProcess::start(victim, &redis.url(), &ns.namespace, &out, &log);
                if victim == FULL_DISK {
                    full_disk_pids.insert(u64::from(servers[victim].child.id()));
                }
                kills += 1;
            }
            6..=7 => {
                redis.stop();
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..2_000))).await;
                redis.launch();
                restarts += 1;
            }
            _ => {}
        }
        // Cancel one tracked job a round, wherever it is now.
        let id = rng.random_range(0..LONGS);
        if !cancels.iter().any(|(c, _, _)| *c == id) {
            let before = runs_of(id);
            let said = canceller.cancel(&longs[id as usize]).await.ok();
            cancels.push((id, before, said));
        }
    }
    if stopped_at.is_some() {
        servers[sleeper].signal("CONT");
    }
    pushing.store(false, std::sync::atomic::Ordering::Relaxed);
    let (pushed, retried_pushes) = pusher.await.unwrap();
    let count = |class: &str| pushed.get(class).copied().unwrap_or(0);
    let (plain, flaky, unique, limited) = (
        count("Chaos::Plain"),
        count("Chaos::Flaky"),
        count("Chaos::Unique"),
        count("Chaos::Limited"),
    );
    eprintln!("chaos: pushed {pushed:?}, {retried_pushes} pushes retried while Redis was down");
    eprintln!(
        "chaos: {kills} kill -9s, {stops} SIGSTOP past the heartbeat, {restarts} Redis restarts"
    );

    // Drain: wait until every kind of job has run, then until nothing is in progress.
    let runs = || -> Vec<Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    let ids = |runs: &[Value], kind: &str| -> BTreeMap<u64, usize> {
        let mut ids = BTreeMap::new();
        for run in runs.iter().filter(|r| r["kind"] == kind) {
            *ids.entry(run["id"].as_u64().unwrap()).or_default() += 1;
        }
        ids
    };
    let cancelled: BTreeSet<u32> = cancels.iter().map(|(id, _, _)| *id).collect();
    eprintln!("chaos: cancels {cancels:?}");
    let all_done = |runs: &[Value]| {
        let long = ids(runs, "long");
        let wf = ids(runs, "wfstep");
        (0..LONGS).all(|id| cancelled.contains(&id) || long.contains_key(&u64::from(id)))
            && wf.len() == WF_STEPS as usize
            && ids(runs, "plain").len() == plain as usize
            && ids(runs, "flaky").len() == flaky as usize
            && ids(runs, "unique").len() == unique as usize
            && ids(runs, "limited").len() == limited as usize
            && ids(runs, "part").len() == (PARENT_JOBS + CHILD_JOBS) as usize
            && runs
                .iter()
                .filter(|r| r["what"] == "parent-success")
                .count()
                >= 1
            && (0..WALKS).all(|id| {
                runs.iter()
                    .any(|r| r["kind"] == "step" && r["id"] == id && r["step"] == WALK_STEPS - 1)
            })
    };
    let missing = |runs: &[Value]| -> String {
        let long = ids(runs, "long");
        let longs: Vec<u32> = (0..LONGS)
            .filter(|id| !cancelled.contains(id) && !long.contains_key(&u64::from(*id)))
            .collect();
        format!(
            "plain {}/{plain}, flaky {}/{flaky}, unique {}/{unique}, limited {}/{limited}, part {}/{}, longs not run {longs:?}, workflow steps {}/{WF_STEPS}",
            ids(runs, "plain").len(),
            ids(runs, "flaky").len(),
            ids(runs, "unique").len(),
            ids(runs, "limited").len(),
            ids(runs, "part").len(),
            PARENT_JOBS + CHILD_JOBS,
            ids(runs, "wfstep").len()
        )
    };
    let drain = Instant::now();
    while !all_done(&runs()) {
        if drain.elapsed() >= Duration::from_secs(150) {
            let long = ids(&runs(), "long");
            let mut where_ = Vec::new();
            for id in (0..LONGS).filter(|id| !long.contains_key(&u64::from(*id))) {
                let jid = &longs[id as usize];
                let status = canceller.status(jid).await;
                where_.push(format!("long {id} ({jid}): {status:?}"));
            }
            panic!(
                "not every job ran within 150 s of the chaos (seed {seed}): {}; {where_:?}; servers' log: {}",
                missing(&runs()),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the last acknowledgements and recoveries land, then stop gracefully.
    let settle = Instant::now();
    loop {
        let hashes: Vec<String> = ns
            .query(redis::cmd("KEYS").arg(ns.keys().key("inprogress*")))
            .await;
        let mut held = 0u64;
        for hash in &hashes {
            let kind: String = ns.query(redis::cmd("TYPE").arg(hash)).await;
            if kind == "hash" {
                let n: u64 = ns.query(redis::cmd("HLEN").arg(hash)).await;
                held += n;
            }
        }
        // A tick taken just now may be running: only the ticks queue may be busy.
        if held <= SERVERS as u64 || settle.elapsed() > Duration::from_secs(90) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // An exit nobody asked for is a failure of its own, whatever the jobs say.
    for (i, server) in servers.iter_mut().enumerate() {
        if let Some(status) = server.child.try_wait().unwrap() {
            exits.push(format!("server {i}: {status}"));
        }
    }
    assert!(
        exits.is_empty(),
        "servers exited by themselves: {exits:?} (seed {seed})"
    );
    // The server whose log cannot be written ran jobs all along (its share depends on how
    // long it was stopped or down; a server whose log stopped it runs none). Counted over
    // the jobs pushed throughout, not the workflow's burst of steps at the start, which
    // whichever servers were up then took.
    let throughout: Vec<Value> = runs()
        .into_iter()
        .filter(|r| r["kind"] != "wfstep")
        .collect();
    let by_full_disk = throughout
        .iter()
        .filter(|r| {
            r["pid"]
                .as_u64()
                .is_some_and(|pid| full_disk_pids.contains(&pid))
        })
        .count();
    assert!(
        by_full_disk * 100 >= throughout.len(),
        "the server logging to /dev/full ran {by_full_disk} of {} runs (seed {seed})",
        throughout.len()
    );
    for server in &servers {
        server.signal("TERM");
    }
    for server in &mut servers {
        let limit = Instant::now() + Duration::from_secs(20);
        while server.child.try_wait().unwrap().is_none() && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let runs = runs();

    // Every job at least once; extra runs bounded by what the kills and the stop held
    // (running and prefetched: three times the concurrency a process).
    let in_flight = u64::from(kills + stops) * 3 * CONCURRENCY as u64
        + u64::from(retried_pushes) * u64::from(CHUNK.iter().map(|(_, n)| n).sum::<u32>());
    let mut extra = 0u64;
    for (kind, expected) in [
        ("plain", plain),
        ("flaky", flaky),
        ("unique", unique),
        ("limited", limited),
        ("part", PARENT_JOBS + CHILD_JOBS),
    ] {
        let seen = ids(&runs, kind);
        assert_eq!(
            seen.len(),
            expected as usize,
            "{kind}: every job ran (seed {seed})"
        );
        extra += seen.values().map(|&n| n as u64 - 1).sum::<u64>();
    }
    eprintln!("chaos: {extra} extra runs, at most {in_flight} allowed");
    assert!(
        extra <= in_flight,
        "{extra} extra runs > {in_flight} (seed {seed})"
    );

    // Each batch callback enqueued exactly once (a callback job may run twice; its jid
    // says whether it was enqueued twice).
    for what in [
        "parent-complete",
        "parent-success",
        "child-complete",
        "child-success",
    ] {
        let jids: BTreeSet<&str> = runs
            .iter()
            .filter(|r| r["what"] == what)
            .filter_map(|r| r["jid"].as_str())
            .collect();
        assert_eq!(
            jids.len(),
            1,
            "{what} enqueued once: {jids:?} (seed {seed})"
        );
    }
    // No periodic tick enqueued twice.
    let mut per_tick: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r["what"] == "tick") {
        per_tick
            .entry(run["tick"].as_i64().unwrap())
            .or_default()
            .insert(run["jid"].as_str().unwrap());
    }
    let twice: Vec<_> = per_tick.iter().filter(|(_, jids)| jids.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "ticks enqueued twice: {twice:?} (seed {seed})"
    );
    // None early, though one server's clock is ten minutes fast.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let early: Vec<_> = per_tick.keys().filter(|&&tick| tick > now + 1).collect();
    assert!(
        early.is_empty(),
        "ticks enqueued before their time: {early:?} (seed {seed})"
    );
    assert!(!per_tick.is_empty(), "the periodic entry ticked");
    // The window limit held: starts counted per second, those within 20 ms of a boundary
    // left out (the recorded time and Redis's clock differ by that much at most).
    let mut per_window: BTreeMap<u64, u32> = BTreeMap::new();
    let mut first_runs = BTreeSet::new();
    for run in runs.iter().filter(|r| r["kind"] == "limited") {
        // A re-run after a kill took room too, so every run counts.
        let at = run["at_ms"].as_u64().unwrap();
        first_runs.insert(run["id"].as_u64().unwrap());
        if (20..980).contains(&(at % 1000)) {
            *per_window.entry(at / 1000).or_default() += 1;
        }
    }
    let over: Vec<_> = per_window.iter().filter(|(_, n)| **n > LIMIT).collect();
    assert!(
        over.is_empty(),
        "windows over {LIMIT}: {over:?} (seed {seed})"
    );

    // Nothing left behind.
    let locks: Vec<String> = ns
        .query(redis::cmd("KEYS").arg(ns.keys().key("unique:*")))
        .await;
    assert!(
        locks.is_empty(),
        "unique locks left: {locks:?} (seed {seed})"
    );
    let api = psychiq::api::Api::connect(&ns.redis, &ns.namespace).await?;
    assert_eq!(api.queue_size("default").await?, 0, "default queue empty");
    for kind in [
        psychiq::api::SetKind::Retry,
        psychiq::api::SetKind::Dead,
        psychiq::api::SetKind::Scheduled,
    ] {
        let left = api.set_page(kind, 0, 5).await?;
        assert!(
            left.is_empty(),
            "{kind:?} left: {:?} (seed {seed})",
            left.iter().map(|j| j.raw().to_string()).collect::<Vec<_>>()
        );
    }
    let hashes: Vec<String> = ns
        .query(redis::cmd("KEYS").arg(ns.keys().key("inprogress*")))
        .await;
    for hash in hashes {
        let kind: String = ns.query(redis::cmd("TYPE").arg(&hash)).await;
        if kind == "hash" {
            let n: u64 = ns.query(redis::cmd("HLEN").arg(&hash)).await;
            assert_eq!(n, 0, "{hash} still holds jobs (seed {seed})");
        }
    }
    let status = api.batch(&parent_bid).await?.unwrap();
    assert_eq!((status.pending, status.dead), (0, 0));
    // Every workflow step was started once (a step may run twice as any job may, never
    // with a second jid: that would be a second start), and the workflow succeeded.
    let mut jids_of: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r["kind"] == "wfstep") {
        jids_of
            .entry(run["id"].as_u64().unwrap())
            .or_default()
            .insert(run["jid"].as_str().unwrap());
    }
    assert_eq!(jids_of.len(), WF_STEPS as usize);
    let twice: Vec<_> = jids_of.iter().filter(|(_, j)| j.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "steps started twice: {twice:?} (seed {seed})"
    );
    // Each read its parents' results, however the crashes fell: the middle ones the root's
    // (0), the last one all 9,998 of the middle (a diamond as wide as it gets).
    for run in runs.iter().filter(|r| r["kind"] == "wfstep") {
        let expected = match run["id"].as_u64().unwrap() {
            0 => (0, 0),
            id if id == u64::from(WF_STEPS) - 1 => {
                let n = u64::from(WF_STEPS) - 2;
                (n, n * (n + 1) / 2)
            }
            _ => (1, 0),
        };
        assert_eq!(
            (
                run["inputs"].as_u64().unwrap(),
                run["sum"].as_u64().unwrap()
            ),
            expected,
            "{run} (seed {seed})"
        );
    }
    let workflow = api.workflow(&wid).await?.expect("the workflow");
    assert_eq!(
        (workflow.state.as_str(), workflow.done, workflow.dead),
        ("succeeded", u64::from(WF_STEPS), 0),
        "seed {seed}"
    );
    // A cancelled job ends cancelled (or as it was, if it was over; or succeeded, if it
    // finished before its process heard), and runs at most the run it was in.
    use psychiq::api::Cancellation;
    use psychiq::status::State;
    let long_runs = ids(&runs, "long");
    for (id, before, said) in &cancels {
        let state = api
            .tracked_status(&longs[*id as usize])
            .await?
            .map(|s| s.state);
        let allowed: &[State] = match said {
            Some(Cancellation::Removed(_)) => &[State::Cancelled],
            Some(Cancellation::AlreadyFinished(state)) => &[*state],
            _ => &[State::Cancelled, State::Succeeded],
        };
        assert!(
            state.is_some_and(|s| allowed.contains(&s)),
            "long {id}: cancel said {said:?}, its status is {state:?} (seed {seed})"
        );
        if !matches!(said, Some(Cancellation::AlreadyFinished(_))) {
            let after = long_runs.get(&u64::from(*id)).copied().unwrap_or(0);
            assert!(
                after <= before + 1,
                "long {id} ran {after} times, {before} before its cancel (seed {seed})"
            );
        }
    }
    eprintln!(
        "chaos: {} runs, {} ticks, every invariant held",
        runs.len(),
        per_tick.len()
    );
    drop(servers);
    redis.stop();
    if std::env::var_os("PSYCHIQ_CHAOS_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
