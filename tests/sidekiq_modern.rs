//! Psychiq beside the real Sidekiq 7.3.10 and 8.0.10 (their sources in `../shared/peers`, run
//! on Debian's Ruby through `ruby-sidekiq 7|8`): Ruby as client, embedded server, API and web
//! app, through `tests/ruby/modern.rb`.
//!
//! Sidekiq 7 and 8 have no namespaces, so Psychiq runs with bare keys (`-n ''`) on a Redis
//! database reserved for this file: 12 for Sidekiq 7, 13 for Sidekiq 8 (emptied before and
//! after each run). Skipped with a message when `../shared/peers` is absent (a clone without
//! it), unless `PSYCHIQ_REQUIRE_PEERS=1` (as `.ci/run` sets when the folder is there).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use psychiq::api::{Api, SetKind};
use psychiq::{Client, Job, JobError, JobResult, RedisConfig, Registry, Worker, WorkerOptions};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ruby/modern.rb");

/// `../shared/peers/ruby-sidekiq`, if this clone has it.
fn runner() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/ruby-sidekiq");
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("PSYCHIQ_REQUIRE_PEERS").is_err(),
        "Sidekiq 7/8 peers are required here but {} is missing",
        path.display()
    );
    eprintln!(
        "skipped: no {} (the Sidekiq 7.3.10 / 8.0.10 peers); Sidekiq 6.4.1 is tested by ruby_interop.rs",
        path.display()
    );
    None
}

/// One Sidekiq version on its own database.
struct Peer {
    version: &'static str,
    runner: PathBuf,
    url: String,
    client: Client,
}

impl Peer {
    async fn new(version: &'static str, db: u32, runner: PathBuf) -> Peer {
        let url = format!("{}/{db}", redis_url().trim_end_matches('/'));
        Peer::at(version, url, runner).await
    }

    /// On the Redis database at `url` (emptied now and when dropped).
    async fn at(version: &'static str, url: String, runner: PathBuf) -> Peer {
        let client = Client::connect(&RedisConfig::from_url(url.as_str()).unwrap(), "")
            .await
            .expect("tests need Redis: see README");
        let peer = Peer {
            version,
            runner,
            url,
            client,
        };
        peer.flush();
        peer
    }

    /// Empties the reserved database (nothing else uses it).
    fn flush(&self) {
        let mut conn = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .expect("Redis");
        let () = redis::cmd("FLUSHDB").query(&mut conn).expect("FLUSHDB");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.runner);
        command
            .arg(self.version)
            .arg(PEER)
            .args(args)
            .env("REDIS_URL", &self.url);
        command
    }

    async fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().await.expect("ruby runs");
        assert!(
            out.status.success(),
            "Sidekiq {} {args:?} failed: {}",
            self.version,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 from Ruby")
    }

    async fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed {out:?}: {e}"))
    }

    fn config(&self) -> psychiq::ServerConfig {
        psychiq::ServerConfig::default()
            .redis(RedisConfig::from_url(self.url.as_str()).unwrap())
            .namespace("")
            .poll_interval(Duration::from_millis(200))
            .shutdown_timeout(Duration::from_secs(5))
            .tag("modern")
    }

    async fn list(&self, key: &str) -> Vec<String> {
        let mut conn = self.client.redis_connection().unwrap();
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    async fn performed(&self) -> Vec<Value> {
        self.list("performed")
            .await
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `Interop::Recorder` on both sides: appends what it ran to `performed`.
#[derive(Clone)]
struct Recorder(Client);

impl Worker for Recorder {
    type Args = Vec<Value>;
    fn class_name() -> String {
        "Interop::Recorder".into()
    }
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        let record = json!({"who": "psychiq", "args": args});
        let mut conn = self.0.redis_connection().unwrap();
        redis::cmd("RPUSH")
            .arg("performed")
            .arg(record.to_string())
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| JobError::msg(e.to_string()))
    }
}

/// `Interop::Flaky` on Psychiq's side: fails, as the Ruby one does.
struct Flaky;

impl Worker for Flaky {
    type Args = Vec<Value>;
    fn class_name() -> String {
        "Interop::Flaky".into()
    }
    fn options() -> WorkerOptions {
        WorkerOptions::default().retry(psychiq::Retry::Max(3))
    }
    async fn perform(&self, _: Vec<Value>) -> JobResult {
        Err(JobError::new("PaymentDeclined", "declined again"))
    }
}

fn object(raw: &str) -> Map<String, Value> {
    serde_json::from_str(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

fn sorted_keys(map: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = map.keys().cloned().collect();
    keys.sort();
    keys
}

/// A timestamp as this version writes it: floats in seconds before 8, integer ms from 8.
fn assert_timestamp_shape(version: &str, key: &str, value: &Value) {
    if version == "8" {
        assert!(
            value.is_u64(),
            "Sidekiq 8 writes {key} as integer ms: {value}"
        );
    } else {
        assert!(
            value.is_f64(),
            "Sidekiq 7 writes {key} as float seconds: {value}"
        );
    }
}

async fn scenarios(version: &'static str, db: u32) {
    let Some(runner) = runner() else { return };
    let peer = Peer::new(version, db, runner).await;

    // 1. Ruby pushes every way; a Psychiq server runs each job with its arguments.
    let charge = Charge::failing();
    let mut registry = Registry::new();
    registry
        .register(Recorder(peer.client.clone()))
        .register(charge.clone())
        .register(Nap);
    let server = RunningServer::start(peer.config().concurrency(4), registry);
    peer.run(&["push-every-way"]).await;
    wait_until(Duration::from_secs(15), "4 jobs performed", || async {
        peer.performed().await.len() == 4
    })
    .await;
    let every_type = peer.json(&["every-type"]).await;
    let performed = peer.performed().await;
    assert!(performed.iter().all(|p| p["who"] == "psychiq"));
    assert!(
        performed.iter().any(|p| p["args"] == every_type),
        "{performed:?}"
    );
    for args in [json!(["in"]), json!(["bulk", 1]), json!(["bulk", 2])] {
        assert!(
            performed.iter().any(|p| p["args"] == args),
            "{args}: {performed:?}"
        );
    }

    // 2. The payload Psychiq writes has the keys this Sidekiq writes (as Ruby wrote it now).
    let args = r#"[42,"eur",{"lines":[1.5,null]}]"#;
    let theirs = object(
        &peer
            .run(&["push", "Billing::InvoiceJob", args, "bytes"])
            .await,
    );
    let job = Job::new(
        "Billing::InvoiceJob",
        serde_json::from_str::<Value>(args).unwrap(),
    )
    .unwrap()
    .queue("bytes");
    let jid = peer.client.push(job).await.unwrap();
    let ours = peer
        .list("queue:bytes")
        .await
        .into_iter()
        .find(|raw| raw.contains(&jid))
        .map(|raw| object(&raw))
        .expect("our payload");
    assert_eq!(
        sorted_keys(&ours),
        sorted_keys(&theirs),
        "Sidekiq {version}"
    );
    for key in ["created_at", "enqueued_at"] {
        assert_timestamp_shape(version, key, &theirs[key]);
    }
    for (key, value) in &theirs {
        if !matches!(key.as_str(), "jid" | "created_at" | "enqueued_at") {
            assert_eq!(&ours[key], value, "Sidekiq {version}: field {key}");
        }
    }

    // 3. A job Psychiq failed: Ruby's RetrySet reads it and retries it; Psychiq runs it.
    let jid = peer
        .client
        .push(Job::new("Interop::Charge", ("order-1",)).unwrap())
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the failure in the retry set",
        || async {
            peer.json(&["retries"])
                .await
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
    )
    .await;
    let retries = peer.json(&["retries"]).await;
    let item = &retries[0]["item"];
    assert_eq!(retries[0]["jid"], jid.as_str());
    assert_eq!(item["error_class"], "PaymentDeclined");
    assert_eq!(item["retry_count"], 0);
    // 4. Sidekiq's own dashboard renders Psychiq's state, its process and running jobs on
    // the Busy page (workers take jobs from a prefetched backlog; they must still show).
    // Each beat (5 s) writes the running jobs, so a 6 s nap is seen by at least one.
    let napping = tokio::time::Instant::now();
    for _ in 0..2 {
        peer.client
            .push(Job::new("Nap", (6_000,)).unwrap())
            .await
            .unwrap();
    }
    wait_until(
        Duration::from_secs(10),
        "Sidekiq's WorkSet shows both running naps",
        || async {
            let workers = peer.json(&["workers"]).await;
            workers.as_array().is_some_and(|w| {
                w.iter()
                    .filter(|w| w["class"] == "Nap" && w["queue"] == "default")
                    .count()
                    == 2
            })
        },
    )
    .await;
    let pages = peer
        .json(&[
            "web", "/", "/busy", "/queues", "/retries", "/morgue", "/metrics",
        ])
        .await;
    for (path, page) in pages.as_object().unwrap() {
        assert_eq!(page[0], 200, "Sidekiq {version} {path}: {}", page[1]);
    }
    assert!(
        pages["/busy"][1].as_str().unwrap().contains("modern"),
        "the tag on /busy"
    );
    // Unless the naps had ended before Ruby rendered the page (a loaded machine can take
    // longer than the nap to start Ruby): then there is nothing running to list.
    let rendered_within_the_nap = napping.elapsed() < Duration::from_secs(6);
    assert!(
        pages["/busy"][1].as_str().unwrap().contains("Nap") || !rendered_within_the_nap,
        "Sidekiq {version}'s /busy lists Psychiq's running jobs"
    );
    assert!(
        pages["/retries"][1]
            .as_str()
            .unwrap()
            .contains("Interop::Charge")
    );
    let processes = peer.json(&["processes"]).await;
    assert_eq!(processes[0]["tag"], "modern", "{processes}");

    charge.failing.store(false, Ordering::SeqCst);
    peer.run(&["retry-now", &jid]).await;
    wait_until(
        Duration::from_secs(10),
        "the retried charge ran",
        || async { charge.record.count() == 1 },
    )
    .await;
    // The naps end within the stop's 5 s, so none is pushed back for step 5's Ruby server,
    // which has no Nap.
    tokio::time::sleep_until(napping + Duration::from_secs(2)).await;
    server.stop().await; // counters are flushed every 5 s and at shutdown
    let stats = peer.json(&["stats"]).await;
    assert_eq!(stats["failed"], 1, "{stats}");
    assert!(stats["processed"].as_u64().unwrap() >= 6, "{stats}");
    // Sidekiq's Metrics tab reads the per-class keys Psychiq flushed in its layout.
    let pages = peer
        .json(&["web", "/metrics", "/metrics/Interop::Recorder"])
        .await;
    for (path, page) in pages.as_object().unwrap() {
        assert_eq!(page[0], 200, "Sidekiq {version} {path}: {}", page[1]);
    }
    let metrics = pages["/metrics"][1].as_str().unwrap();
    assert!(
        metrics.contains("Interop::Recorder") && metrics.contains("Interop::Charge"),
        "Sidekiq {version}'s Metrics tab lists Psychiq's classes: {metrics}"
    );
    let recorder = pages["/metrics/Interop::Recorder"][1].as_str().unwrap();
    assert!(recorder.contains("Interop::Recorder"), "{recorder}");

    // 5. An embedded Sidekiq server runs what Psychiq enqueues, now and scheduled; a job it
    //    fails is a real retry payload of this version, which Psychiq then fails again.
    let mut ruby = peer
        .command(&["server", "2"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ruby runs");
    let mut lines = BufReader::new(ruby.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the Sidekiq server starts within 30 s");
    assert_eq!(ready.unwrap().as_deref(), Some("ready"));
    // With the extensions' payload keys (expires_at, unique_*, track, and those of a
    // periodic tick and a rate-limit snooze), which Sidekiq ignores.
    peer.client
        .push(
            Job::new("Interop::Recorder", ("from-rust", 1))
                .unwrap()
                .track()
                .expires_in(Duration::from_secs(3600))
                .unique_for(Duration::from_secs(60))
                .option("periodic", json!("nightly-report"))
                .option("periodic_at", json!(1_796_400_000))
                .option("snoozed", json!(2))
                .option("snoozed_at", json!(1_796_400_000.5)),
        )
        .await
        .unwrap();
    peer.client
        .push(
            Job::new("Interop::Recorder", ("later",))
                .unwrap()
                .delay(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    // A workflow whose two steps this Sidekiq runs, with ruby/psychiq_workflow.rb: the
    // first one's end starts the second, and the second's ends the workflow.
    let wid = psychiq::workflow::Workflow::new("in Ruby")
        .step(
            "first",
            Job::new("Interop::Recorder", ("wf-first",)).unwrap(),
        )
        .step(
            "second",
            Job::new("Interop::Recorder", ("wf-second",)).unwrap(),
        )
        .after(["first"])
        .push(&peer.client)
        .await
        .unwrap();
    let flaky = peer
        .client
        .push(
            Job::new("Interop::Flaky", (7,))
                .unwrap()
                .option("backtrace", json!(true)),
        )
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "Ruby ran both and failed one",
        || async {
            let by_ruby = peer
                .performed()
                .await
                .iter()
                .filter(|p| p["who"] == "ruby")
                .count();
            let retries = peer.json(&["retries"]).await;
            by_ruby == 4 && retries.as_array().is_some_and(|r| r.len() == 1)
        },
    )
    .await;
    let by_ruby: Vec<Value> = peer
        .performed()
        .await
        .into_iter()
        .filter(|p| p["who"] == "ruby")
        .map(|p| p["args"].clone())
        .collect();
    assert!(by_ruby.contains(&json!(["from-rust", 1])) && by_ruby.contains(&json!(["later"])));
    let second = by_ruby.iter().position(|a| a == &json!(["wf-second"]));
    assert!(
        by_ruby.iter().position(|a| a == &json!(["wf-first"])) < second,
        "{by_ruby:?}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &ruby.id().unwrap().to_string()])
        .status()
        .await;
    let status = tokio::time::timeout(Duration::from_secs(30), ruby.wait())
        .await
        .expect("the Sidekiq server stops within 30 s");
    assert!(status.unwrap().success());

    let api = Api::connect(&RedisConfig::from_url(peer.url.as_str()).unwrap(), "")
        .await
        .unwrap();
    let workflow = api.workflow(&wid).await.unwrap().unwrap();
    assert_eq!((workflow.state.as_str(), workflow.done), ("succeeded", 2));
    let written = api
        .set_find(SetKind::Retry, &flaky)
        .await
        .unwrap()
        .expect("Ruby's retry");
    let real = object(written.raw());
    eprintln!(
        "Sidekiq {version} retry payload, as it wrote it: {}",
        written.raw()
    );
    assert_eq!(real["error_class"], "Interop::Flaky::PaymentDeclined");
    // 0 after the first failure; 1 on a loaded machine where the first retry (due 15 to
    // 24 s later) came round before this read.
    assert!(
        matches!(real["retry_count"].as_u64(), Some(0 | 1)),
        "retry_count {}",
        real["retry_count"]
    );
    assert!(
        real["error_backtrace"].is_string(),
        "backtrace: true keeps one"
    );
    assert_timestamp_shape(version, "failed_at", &real["failed_at"]);

    // Psychiq takes it from the queue, fails it again and rewrites it: Ruby's keys and
    // timestamp shapes stay. "Retry now" takes one off the count (as Sidekiq's API does, so
    // a retry by hand is free) and the failure adds it back.
    assert!(api.retry_now(SetKind::Retry, &written).await.unwrap());
    let mut registry = Registry::new();
    registry.register(Flaky);
    let server = RunningServer::start(peer.config(), registry);
    wait_until(
        Duration::from_secs(10),
        "Psychiq failed it again",
        || async {
            let retries = peer.json(&["retries"]).await;
            retries[0]["item"]["error_message"] == "declined again"
        },
    )
    .await;
    server.stop().await;
    let again = api.set_find(SetKind::Retry, &flaky).await.unwrap().unwrap();
    let again = object(again.raw());
    assert_eq!(again["error_message"], "declined again");
    assert_eq!(again["retry_count"], 0);
    assert!(again["retried_at"].is_f64());
    assert_eq!(
        again["failed_at"], real["failed_at"],
        "the first failure's time, as written"
    );
    // (enqueued_at is new: "retry now" enqueued it again.)
    assert_eq!(
        again["created_at"], real["created_at"],
        "created_at kept as written"
    );
    for key in real.keys() {
        assert!(
            again.contains_key(key),
            "Sidekiq {version}'s {key} survives the rewrite"
        );
    }
}

#[tokio::test]
async fn sidekiq_7_3_and_psychiq_share_jobs_retries_and_the_dashboard() {
    scenarios("7", 12).await;
}

#[tokio::test]
async fn sidekiq_8_0_and_psychiq_share_jobs_retries_and_the_dashboard() {
    scenarios("8", 13).await;
}

/// Where a failed job ends and which fields it gets, for one payload: the set (`retry`,
/// `dead` or `none`), its keys and `retry_count`, `queue`.
async fn outcome_of(peer: &Peer, jid: &str) -> Value {
    let mut conn = peer.client.redis_connection().unwrap();
    for set in ["retry", "dead"] {
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(set)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(raw) = members.iter().find(|m| m.contains(&format!("\"{jid}\""))) {
            let item = object(raw);
            return json!({"set": set, "keys": sorted_keys(&item),
                "retry_count": item["retry_count"], "queue": item["queue"]});
        }
    }
    json!({"set": "none"})
}

/// Sidekiq's retry rules as its job_retry.rb applies them, one payload each: the same
/// payloads failed by a real Sidekiq 8.0.10 server and by a Psychiq server end in the same
/// set, with the same fields, `retry_count` and queue.
#[tokio::test]
async fn a_failed_job_ends_where_sidekiq_8_puts_it_with_the_same_fields() {
    let Some(runner) = runner() else { return };
    let own = OwnRedis::start();
    let peer = Peer::at("8", own.url(), runner).await;
    let now = psychiq::__private::now_secs();
    let hours_ago_ms = ((now - 7200.0) * 1000.0) as i64;
    let cases: Vec<(&str, Value)> = vec![
        ("negative", json!({"retry": -1})),
        ("zero", json!({"retry": 0})),
        ("off", json!({"retry": false})),
        (
            "last",
            json!({"retry": 2, "retry_count": 1, "failed_at": now - 60.0}),
        ),
        (
            "again",
            json!({"retry": 2, "retry_count": 0, "failed_at": now - 60.0}),
        ),
        ("first", json!({"retry": true})),
        ("for-zero", json!({"retry": true, "retry_for": 0})),
        (
            "for-passed",
            json!({"retry": true, "retry_for": 3600, "retry_count": 3, "failed_at": hours_ago_ms}),
        ),
        (
            "for-open",
            json!({"retry": true, "retry_for": 3600, "retry_count": 3, "failed_at": now - 60.0}),
        ),
        ("undead", json!({"retry": 0, "dead": false})),
        ("elsewhere", json!({"retry": 1, "retry_queue": "later"})),
        (
            "minus-one",
            json!({"retry": 3, "retry_count": -1, "failed_at": now - 60.0}),
        ),
    ];
    let push_all = || async {
        for (jid, fields) in &cases {
            let mut payload = fields.as_object().unwrap().clone();
            payload.insert("class".into(), json!("Interop::Flaky"));
            payload.insert("args".into(), json!([jid]));
            payload.insert("jid".into(), json!(jid));
            payload.insert("queue".into(), json!("default"));
            payload.insert("created_at".into(), json!(now));
            payload.insert("enqueued_at".into(), json!(now));
            let mut conn = peer.client.redis_connection().unwrap();
            let () = redis::pipe()
                .sadd("queues", "default")
                .ignore()
                .lpush("queue:default", Value::Object(payload).to_string())
                .ignore()
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };
    let drained = || async { peer.list("queue:default").await.is_empty() };

    // Ruby's server fails each once.
    push_all().await;
    let mut ruby = peer
        .command(&["server", "2"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ruby runs");
    wait_until(
        Duration::from_secs(30),
        "Sidekiq 8 to take every job",
        drained,
    )
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &ruby.id().unwrap().to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(30), ruby.wait()).await;
    assert!(status.unwrap().unwrap().success());
    let mut sidekiq = Vec::new();
    for (jid, _) in &cases {
        sidekiq.push(outcome_of(&peer, jid).await);
    }

    // Not a vacuous comparison: Sidekiq sent these where its rules say.
    let sets: Vec<&str> = sidekiq.iter().map(|o| o["set"].as_str().unwrap()).collect();
    assert_eq!(
        sets,
        [
            "dead", "dead", "none", "dead", "retry", "retry", "dead", "dead", "retry", "none",
            "retry", "retry"
        ],
        "{sidekiq:#?}"
    );
    assert_eq!(sidekiq[10]["queue"], "later");

    // The same payloads, failed by Psychiq.
    peer.flush();
    push_all().await;
    let deaths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut registry = Registry::new();
    registry.register(Flaky);
    let mut server = psychiq::Server::new(peer.config(), registry);
    let heard = Arc::clone(&deaths);
    server.on_death(move |job| {
        let heard = Arc::clone(&heard);
        async move {
            heard
                .lock()
                .unwrap()
                .push((job.jid().to_string(), job.dead, job.dropped));
        }
    });
    let server = RunningServer::start_server(server);
    wait_until(
        Duration::from_secs(15),
        "Psychiq to take every job",
        drained,
    )
    .await;
    server.stop().await;
    for ((jid, _), ruby) in cases.iter().zip(&sidekiq) {
        assert_eq!(
            &outcome_of(&peer, jid).await,
            ruby,
            "case {jid}: Psychiq vs Sidekiq 8.0.10"
        );
    }
    // The death handlers hear of every job that will not run again, dropped ones too.
    let mut heard: Vec<(String, bool, bool)> = deaths.lock().unwrap().clone();
    heard.sort();
    let expected: Vec<(String, bool, bool)> = vec![
        ("for-passed".into(), true, false),
        ("for-zero".into(), true, false),
        ("last".into(), true, false),
        ("negative".into(), true, false),
        ("off".into(), false, true),
        ("undead".into(), false, true),
        ("zero".into(), true, false),
    ];
    assert_eq!(heard, expected);
}
