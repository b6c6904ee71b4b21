//! Psychiq beside the original it rewrites: Common Lisp Psychiq 0.2.0, run with SBCL from
//! `../shared/peers/lisp` through `tests/lisp/peer.lisp`, on one Redis of the test's own,
//! both on their default (bare) keys.
//!
//! Skipped with a message where `../shared/peers/lisp` is absent; where it is present, SBCL
//! and Debian's `cl-*` packages must be installed (`.ci/run` installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{OwnRedis, RunningServer, wait_until};
use psychiq::api::{Api, SetKind};
use psychiq::{Client, Job, JobError, JobResult, RedisConfig, Registry, ServerConfig, Worker};
use serde_json::{Value, json};

fn peer_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/lisp");
    if dir.join("load.lisp").exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: the original Lisp Psychiq is not at {} (see README, \"Using Psychiq with the original\")",
            dir.display()
        );
        None
    }
}

/// The Lisp peer: `peer.lisp COMMAND ARGS...` against `redis`.
struct Lisp {
    load: PathBuf,
    port: u16,
}

impl Lisp {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("sbcl");
        command
            .args(["--noinform", "--non-interactive", "--load"])
            .arg(&self.load)
            .arg("--load")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lisp/peer.lisp"))
            .arg("--end-toplevel-options")
            .args(args)
            .env("PSYCHIQ_LISP_QUIET", "1")
            .env("PEER_REDIS_PORT", self.port.to_string())
            .env_remove("PEER_NAMESPACE");
        command
    }

    /// Runs a command to its end; its standard output, the test failing on a non-zero exit.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap_or_else(|e| {
            panic!("sbcl does not run ({e}): apt-get install sbcl and the cl-* packages ../shared/peers/lisp/README.md lists")
        });
        assert!(
            out.status.success(),
            "Lisp peer {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn lines(&self, args: &[&str]) -> Vec<String> {
        self.run(args).lines().map(str::to_string).collect()
    }
}

/// Records each job it runs: jid, class and arguments as the worker was given them.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Value>>>);

impl Seen {
    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

impl Worker for Seen {
    type Args = Vec<Value>;
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        let job = psychiq::context::current().expect("inside a job");
        self.0.lock().unwrap().push(json!({
            "who": "psychiq", "jid": job.jid(), "class": job.class(), "args": job.args()
        }));
        let _ = args;
        Ok(())
    }
}

/// Fails every run, as the Lisp peer's `LISP-FAIL` does.
struct Declined;

impl Worker for Declined {
    type Args = Vec<Value>;
    async fn perform(&self, _: Vec<Value>) -> JobResult {
        Err(JobError::new("PaymentDeclined", "declined by psychiq"))
    }
}

const LISP_ECHO: &str = "COMMON-LISP-USER::LISP-ECHO";
const LISP_FAIL: &str = "COMMON-LISP-USER::LISP-FAIL";

fn psychiq_server(redis: &RedisConfig, seen: &Seen) -> RunningServer {
    let mut registry = Registry::new();
    registry
        .register_as("Echo", seen.clone())
        .register_as(LISP_FAIL, Declined);
    // The defaults: bare keys, as the original's.
    let config = ServerConfig::default()
        .redis(redis.clone())
        .concurrency(5)
        .poll_interval(Duration::from_millis(200))
        .shutdown_timeout(Duration::from_secs(5));
    RunningServer::start(config, registry)
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("the Lisp peer writes JSON lines"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_lisp_psychiq_and_psychiq_share_a_redis_on_their_defaults() {
    let Some(dir) = peer_dir() else { return };
    let mut redis_server = OwnRedis::start();
    let lisp = Lisp {
        load: dir.join("load.lisp"),
        port: redis_server.port,
    };
    let redis = RedisConfig::from_url(redis_server.url()).unwrap();
    let client = Client::connect(&redis, "").await.unwrap();
    let api = Api::connect(&redis, "").await.unwrap();
    let out = std::env::temp_dir().join(format!("psychiq-lisp-{}.jsonl", redis_server.port));
    let _ = std::fs::remove_file(&out);

    // 1. Lisp enqueues (the first load may compile the original for ~40 s): Psychiq runs
    //    them with the arguments as written, and reads Lisp's integer seconds as seconds.
    let every_type =
        r#"[1,"two",{"k":[1,2.5]},[true,false],null,"émoji ✓",-7,4611686018427387904]"#;
    let single = lisp
        .run(&["enqueue", "Echo", every_type])
        .trim()
        .to_string();
    let bulk = lisp.lines(&[
        "enqueue-bulk",
        "Echo",
        r#"[["bulk",1],["bulk",2],["bulk",3]]"#,
    ]);
    let later = lisp
        .run(&["enqueue-in-sec", "1", "Echo", r#"["later"]"#])
        .trim()
        .to_string();
    let queued = api.queues().await.unwrap();
    let default = queued
        .iter()
        .find(|q| q.name == "default")
        .expect("Lisp's queue");
    assert_eq!(default.size, 4);
    assert!(
        default.latency < 120.0,
        "latency from integer seconds: {}",
        default.latency
    );
    let job = api
        .find_in_queue("default", &single)
        .await
        .unwrap()
        .unwrap();
    let age = psychiq::__private::now_secs() - job.enqueued_at().unwrap();
    assert!((0.0..120.0).contains(&age), "enqueued {age} s ago");

    let seen = Seen::default();
    let server = psychiq_server(&redis, &seen);
    wait_until(
        Duration::from_secs(20),
        "Lisp's five jobs to run",
        || async { seen.all().len() >= 5 },
    )
    .await;
    let ran = seen.all();
    let by_jid = |jid: &str| {
        ran.iter()
            .filter(|r| r["jid"] == jid)
            .cloned()
            .collect::<Vec<_>>()
    };
    let single_run = by_jid(&single);
    assert_eq!(single_run.len(), 1);
    let given: Value = serde_json::from_str(single_run[0]["args"].as_str().unwrap()).unwrap();
    assert_eq!(given, serde_json::from_str::<Value>(every_type).unwrap());
    for (i, jid) in bulk.iter().enumerate() {
        let runs = by_jid(jid);
        assert_eq!(runs.len(), 1, "bulk job {jid}");
        assert_eq!(runs[0]["args"], json!(format!("[\"bulk\",{}]", i + 1)));
    }
    assert_eq!(by_jid(&later).len(), 1);
    server.stop().await;

    // 2. Psychiq enqueues, now, later and in bulk: the Lisp server runs each once; a job it
    //    fails lands in the retry set with the original's fields.
    let mut pushed = Vec::new();
    for args in [json!([1, "x", {"b": false}]), json!(["ü", 2.5])] {
        pushed.push((
            client
                .push(Job::new(LISP_ECHO, &args).unwrap())
                .await
                .unwrap(),
            args,
        ));
    }
    let soon = Job::new(LISP_ECHO, ["soon"])
        .unwrap()
        .delay(Duration::from_secs(1));
    pushed.push((client.push(soon).await.unwrap(), json!(["soon"])));
    let bulk_jobs = (0..3).map(|i| Job::new(LISP_ECHO, [i]).unwrap()).collect();
    for (i, jid) in client
        .push_bulk(bulk_jobs)
        .await
        .unwrap()
        .into_iter()
        .enumerate()
    {
        pushed.push((jid, json!([i])));
    }
    let failing = client
        .push(Job::new(LISP_FAIL, ["card"]).unwrap())
        .await
        .unwrap();
    lisp.run(&["serve", "4", out.to_str().unwrap()]);
    let lisp_ran = read_lines(&out);
    for (jid, args) in &pushed {
        let runs: Vec<_> = lisp_ran
            .iter()
            .filter(|r| r["jid"] == jid.as_str())
            .collect();
        assert_eq!(runs.len(), 1, "Lisp ran {jid} once: {lisp_ran:?}");
        assert_eq!(&runs[0]["args"], args);
    }
    let retry = api
        .set_find(SetKind::Retry, &failing)
        .await
        .unwrap()
        .expect("Lisp's retry");
    assert_eq!(retry.retry_count(), Some(0));
    assert_eq!(retry.error_class(), Some("COMMON-LISP::SIMPLE-ERROR"));
    let lisp_failed_at = retry.item().unwrap()["failed_at"].clone();
    assert!(
        lisp_failed_at.is_i64(),
        "the original writes integer seconds"
    );

    // 3. The retry crosses: Psychiq retries Lisp's entry ("Retry now", which as in Sidekiq
    //    takes one off the count so that the run it causes does not count) and fails it
    //    again, keeping Lisp's failed_at; Lisp reads Psychiq's entry back.
    assert!(api.retry_now(SetKind::Retry, &retry).await.unwrap());
    let server = psychiq_server(&redis, &seen);
    wait_until(
        Duration::from_secs(10),
        "Psychiq to fail Lisp's retry",
        || async {
            api.set_find(SetKind::Retry, &failing)
                .await
                .unwrap()
                .is_some_and(|r| r.error_class() == Some("PaymentDeclined"))
        },
    )
    .await;
    server.stop().await;
    let retry = api
        .set_find(SetKind::Retry, &failing)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retry.retry_count(), Some(0));
    assert!(retry.item().unwrap()["retried_at"].is_number());
    assert_eq!(retry.item().unwrap()["failed_at"], lisp_failed_at);
    let lisp_retries = lisp.lines(&["retries"]);
    assert_eq!(lisp_retries.len(), 1);
    let read_back: Value = serde_json::from_str(&lisp_retries[0]).unwrap();
    assert_eq!(read_back["jid"], failing.as_str());
    assert_eq!(read_back["retry_count"], 0);
    assert_eq!(read_back["error_class"], "PaymentDeclined");
    assert_eq!(lisp.run(&["retry-length"]).trim(), "1");
    // And back: the entry Psychiq wrote, retried now, runs (and fails) in the Lisp server,
    // which counts on from it.
    assert!(api.retry_now(SetKind::Retry, &retry).await.unwrap());
    lisp.run(&["serve", "1", out.to_str().unwrap()]);
    let retry = api
        .set_find(SetKind::Retry, &failing)
        .await
        .unwrap()
        .expect("Lisp's retry");
    assert_eq!(retry.error_class(), Some("COMMON-LISP::SIMPLE-ERROR"));
    assert_eq!(retry.retry_count(), Some(0));
    assert_eq!(retry.item().unwrap()["failed_at"], lisp_failed_at);
    let stats: Value = serde_json::from_str(lisp.run(&["stats"]).trim()).unwrap();
    assert_eq!(stats["retry"], 1);
    assert!(stats["processed"].as_u64().unwrap() >= 12, "{stats}");

    // 4. A mixed fleet on one queue: 100 jobs from each side, both servers running; each
    //    job runs once, in one of them.
    let ours: Vec<String> = client
        .push_bulk(
            (0..100)
                .map(|i| Job::new("Echo", json!(["fleet", i])).unwrap())
                .collect(),
        )
        .await
        .unwrap();
    let theirs_args: Vec<Value> = (100..200).map(|i| json!(["fleet", i])).collect();
    let theirs = lisp.lines(&[
        "enqueue-bulk",
        "Echo",
        &Value::Array(theirs_args).to_string(),
    ]);
    assert_eq!(lisp.run(&["queue-length", "default"]).trim(), "200");
    let _ = std::fs::remove_file(&out);
    let before = seen.all().len();
    let mut lisp_server = lisp
        .command(&["serve", "5", out.to_str().unwrap()])
        .spawn()
        .unwrap();
    let server = psychiq_server(&redis, &seen);
    let started = Instant::now();
    loop {
        let total = seen.all().len() - before + read_lines(&out).len();
        if total >= 200 && api.queue_size("default").await.unwrap() == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{total} of 200 ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lisp_server.wait().unwrap().success());
    server.stop().await;
    let mut runs: Vec<String> = seen.all()[before..]
        .iter()
        .map(|r| r["jid"].as_str().unwrap().to_string())
        .collect();
    let lisp_runs = read_lines(&out);
    let lisp_count = lisp_runs.len();
    runs.extend(
        lisp_runs
            .iter()
            .map(|r| r["jid"].as_str().unwrap().to_string()),
    );
    let mut expected: Vec<String> = ours.into_iter().chain(theirs).collect();
    runs.sort();
    expected.sort();
    assert_eq!(runs, expected, "every fleet job ran once");
    eprintln!(
        "mixed fleet: Lisp ran {lisp_count}, Psychiq {}",
        200 - lisp_count
    );
    let _ = std::fs::remove_file(&out);
    redis_server.stop();
}
