//! Psychiq beside the real Ruby Sidekiq (Debian's ruby-sidekiq 6.4.1 with redis-namespace):
//! Ruby as client, server, API and web app, through `tests/ruby/peer.rb`.
//!
//! Skipped with a message when Ruby Sidekiq is not installed, unless `PSYCHIQ_REQUIRE_RUBY=1`
//! (as `.ci/run` sets), where a missing Ruby is a failure.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use common::*;
use psychiq::RedisConnection;
use psychiq::api::{Api, SetKind};
use psychiq::{Job, JobError, JobResult, Worker, WorkerOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ruby/peer.rb");

/// Runs one peer command; returns its standard output, failing with its standard error.
async fn peer(ns: &TestNs, args: &[&str]) -> String {
    let out = Command::new("ruby")
        .arg(PEER)
        .arg(&ns.namespace)
        .args(args)
        .env("REDIS_URL", &ns.url)
        .output()
        .await
        .expect("ruby runs");
    assert!(
        out.status.success(),
        "ruby peer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 from Ruby")
}

async fn peer_json(ns: &TestNs, args: &[&str]) -> Value {
    let out = peer(ns, args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("peer {args:?} printed {out:?}: {e}"))
}

/// A Ruby Sidekiq server (Launcher in process) serving `default` until dropped or stopped.
struct RubyServer(Child);

impl RubyServer {
    async fn start(ns: &TestNs, concurrency: usize) -> RubyServer {
        let mut child = Command::new("ruby")
            .arg(PEER)
            .arg(&ns.namespace)
            .args(["server", &concurrency.to_string()])
            .env("REDIS_URL", &ns.url)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("ruby runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the Ruby server starts within 20 s");
        assert_eq!(ready.unwrap().as_deref(), Some("ready"));
        RubyServer(child)
    }

    async fn stop(mut self) {
        let pid = self.0.id().unwrap().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
        let status = tokio::time::timeout(Duration::from_secs(30), self.0.wait())
            .await
            .expect("the Ruby server stops within 30 s");
        assert!(status.unwrap().success());
    }
}

/// Known to both sides (`Interop::Recorder` in peer.rb): appends what it ran to the
/// namespace's `performed` list, as the Ruby one does.
#[derive(Clone)]
struct Recorder {
    conn: RedisConnection,
    key: String,
}

impl Recorder {
    fn new(ns: &TestNs) -> Recorder {
        Recorder {
            conn: ns.conn(),
            key: ns.keys().key("performed"),
        }
    }
}

impl Worker for Recorder {
    type Args = Vec<Value>;
    fn class_name() -> String {
        "Interop::Recorder".into()
    }
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        let record = json!({"who": "psychiq", "args": args, "at": psychiq::__private::now_secs()});
        redis::cmd("RPUSH")
            .arg(&self.key)
            .arg(record.to_string())
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|e| JobError::msg(e.to_string()))
    }
}

async fn performed(ns: &TestNs) -> Vec<Value> {
    ns.lrange(&ns.keys().key("performed"))
        .await
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

/// Fails straight into the dead set (`retry: 0`). Class `Interop::Once`.
#[derive(Clone)]
struct Once(Charge);

impl Worker for Once {
    type Args = Vec<Value>;
    fn class_name() -> String {
        "Interop::Once".into()
    }
    fn options() -> WorkerOptions {
        WorkerOptions::default().retry(psychiq::Retry::Max(0))
    }
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        self.0.perform(args).await
    }
}

#[tokio::test]
async fn jobs_pushed_by_ruby_sidekiq_run_in_psychiq_with_their_arguments() {
    if !ruby_sidekiq_available() {
        return;
    }
    let ns = TestNs::new().await;
    peer(&ns, &["push-every-way"]).await;

    #[derive(Clone, Default)]
    struct Invoice(Record);
    impl Worker for Invoice {
        type Args = (u64, String);
        fn class_name() -> String {
            "Billing::InvoiceJob".into()
        }
        async fn perform(&self, (id, currency): (u64, String)) -> JobResult {
            self.0.seen.lock().unwrap().push(json!([id, currency]));
            Ok(())
        }
    }
    let invoice = Invoice::default();
    let mut registry = psychiq::Registry::new();
    registry
        .register(Recorder::new(&ns))
        .register(invoice.clone());
    let server = RunningServer::start(ns.config(), registry);
    wait_until(Duration::from_secs(10), "Ruby's jobs", || async {
        performed(&ns).await.len() == 5 && invoice.0.count() == 1
    })
    .await;
    server.stop().await;

    let done = performed(&ns).await;
    assert_eq!(
        done[0]["args"],
        json!([1, "two", {"three": 3.0, "n": null, "deep": [[{}], []]}, [true, false],
               "emoji 😀 rtl עברית", 4611686018427387904u64, -1.5e-7, "", null])
    );
    let mut rest: Vec<String> = done[1..].iter().map(|r| r["args"].to_string()).collect();
    rest.sort();
    assert_eq!(
        rest,
        [r#"["at"]"#, r#"["bulk",1]"#, r#"["bulk",2]"#, r#"["in"]"#]
    );
    assert!(done.iter().all(|r| r["who"] == "psychiq"));
    assert_eq!(invoice.0.seen(), vec![json!([42, "eur"])]);
}

#[tokio::test]
async fn jobs_enqueued_by_psychiq_run_in_a_ruby_sidekiq_server_on_time() {
    if !ruby_sidekiq_available() {
        return;
    }
    let ns = TestNs::new().await;
    let every_type = vec![
        json!(1),
        json!("two"),
        json!({"three": 3.0, "n": null, "deep": [[{}], []]}),
        json!([true, false]),
        json!("emoji 😀 rtl עברית"),
        json!(4611686018427387904u64),
        json!(-1.5e-7),
        json!(""),
        Value::Null,
    ];
    let c = &ns.client;
    c.enqueue::<Recorder>(every_type.clone()).await.unwrap();
    let due_in = psychiq::__private::now_secs() + 2.0;
    c.enqueue_in::<Recorder>(Duration::from_secs(2), vec![json!("in")])
        .await
        .unwrap();
    let due_at = SystemTime::now() + Duration::from_secs(3);
    c.enqueue_at::<Recorder>(due_at, vec![json!("at")])
        .await
        .unwrap();
    c.enqueue_bulk::<Recorder>((0..50).map(|i| vec![json!("bulk"), json!(i)]))
        .await
        .unwrap();
    // Tracked: Ruby ignores the field and runs it (its status stays as the push left it).
    let tracked = c
        .push_tracked(psychiq::Job::of::<Recorder>(&vec![json!("tracked")]).unwrap())
        .await
        .unwrap();

    let ruby = RubyServer::start(&ns, 5).await;
    // Ruby's poller waits up to 5 s before its first look, then about 1 s between looks.
    wait_until(Duration::from_secs(20), "Ruby to run every job", || async {
        performed(&ns).await.len() == 54
    })
    .await;
    ruby.stop().await;
    assert_eq!(
        tracked.status().await.unwrap().map(|s| s.state),
        Some(psychiq::status::State::Enqueued)
    );

    let done = performed(&ns).await;
    assert!(done.iter().all(|r| r["who"] == "ruby"));
    let args_of = |first: &str| {
        done.iter()
            .find(|r| r["args"][0] == first)
            .unwrap_or_else(|| panic!("no job {first}"))
            .clone()
    };
    assert!(done.iter().any(|r| r["args"][0] == "tracked"));
    let first = done.iter().find(|r| r["args"][0] == 1).unwrap();
    assert_eq!(first["args"], Value::Array(every_type));
    let ran_in = args_of("in")["at"].as_f64().unwrap();
    assert!(
        ran_in >= due_in - 0.05 && ran_in < due_in + 10.0,
        "ran at {ran_in}, due {due_in}"
    );
    let ran_at = args_of("at")["at"].as_f64().unwrap();
    let due_at = psychiq::__private::epoch_secs(due_at);
    assert!(
        ran_at >= due_at - 0.05 && ran_at < due_at + 10.0,
        "ran at {ran_at}, due {due_at}"
    );
    let mut bulk: Vec<i64> = done
        .iter()
        .filter(|r| r["args"][0] == "bulk")
        .map(|r| r["args"][1].as_i64().unwrap())
        .collect();
    bulk.sort();
    assert_eq!(bulk, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn ruby_reads_retries_and_reschedules_what_psychiq_failed() -> psychiq::Result<()> {
    if !ruby_sidekiq_available() {
        return Ok(());
    }
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();
    let charge = Charge::failing();
    let failing = Arc::clone(&charge.failing);
    let mut registry = psychiq::Registry::new();
    registry
        .register(charge.clone())
        .register(Once(charge.clone()));
    // Unknown keys from other tools must survive retry and death.
    let extras = |job: Job| {
        job.option("tags", json!(["vip"]))
            .option("bid", json!("batch-1"))
            .option("wrapped", json!("ChargeJob"))
    };
    let retried = ns
        .client
        .push(extras(Job::new("Interop::Charge", ("retry me", 1))?))
        .await?;
    let killed = ns
        .client
        .push(extras(Job::new("Interop::Once", ("kill me", 2))?).retry(psychiq::Retry::Max(0)))
        .await?;
    let rescheduled = ns
        .client
        .push(Job::new("Interop::Charge", ("move me", 3))?)
        .await?;
    let started = psychiq::__private::now_secs();
    let server = RunningServer::start(ns.config(), registry);
    wait_until(
        Duration::from_secs(10),
        "two retries and a death",
        || async {
            api.set_size(SetKind::Retry).await.unwrap() == 2
                && api.set_size(SetKind::Dead).await.unwrap() == 1
        },
    )
    .await;

    // Sidekiq::RetrySet reads Psychiq's entries.
    let retries = peer_json(&ns, &["retries"]).await;
    let by_jid: HashMap<&str, &Value> = retries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["jid"].as_str().unwrap(), e))
        .collect();
    let entry = by_jid[retried.as_str()];
    let item = &entry["item"];
    assert_eq!(item["error_class"], "PaymentDeclined");
    assert_eq!(item["error_message"], "card <4242> declined");
    assert_eq!(item["retry_count"], 0);
    let failed_at = item["failed_at"].as_f64().unwrap();
    assert!(failed_at >= started - 1.0 && failed_at <= psychiq::__private::now_secs());
    assert!(
        entry["score"].as_f64().unwrap() > failed_at,
        "retry is in the future"
    );
    assert_eq!(
        (&item["tags"], &item["bid"], &item["wrapped"]),
        (&json!(["vip"]), &json!("batch-1"), &json!("ChargeJob"))
    );
    let dead = peer_json(&ns, &["dead"]).await;
    assert_eq!(dead[0]["jid"], killed.as_str());
    assert_eq!(dead[0]["item"]["error_class"], "PaymentDeclined");
    assert_eq!(dead[0]["item"]["tags"], json!(["vip"]));

    // Sidekiq's JobRecord#reschedule re-serialises the entry with Ruby's JSON: it must come
    // out byte for byte as Psychiq wrote it, or the set would hold the job twice.
    let later = psychiq::__private::now_secs() + 3_600.0;
    peer(&ns, &["reschedule", &rescheduled, &later.to_string()]).await;
    let moved = api.set_find(SetKind::Retry, &rescheduled).await?.unwrap();
    assert!((moved.score().unwrap() - later).abs() < 0.01);
    assert_eq!(api.set_size(SetKind::Retry).await?, 2, "no duplicate");

    // "Retry now" from Ruby, for a retry and a dead job: Psychiq performs both.
    failing.store(false, Ordering::SeqCst);
    peer(&ns, &["retry-now", &retried]).await;
    peer(&ns, &["dead-retry", &killed]).await;
    wait_until(Duration::from_secs(10), "both jobs performed", || async {
        charge.record.count() == 2
    })
    .await;
    server.stop().await;
    let mut seen: Vec<String> = charge.record.seen().iter().map(|v| v.to_string()).collect();
    seen.sort();
    assert_eq!(seen, [r#"["kill me",2]"#, r#"["retry me",1]"#]);
    assert_eq!(api.set_size(SetKind::Dead).await?, 0);
    assert_eq!(
        api.set_size(SetKind::Retry).await?,
        1,
        "only the rescheduled one"
    );
    Ok(())
}

#[tokio::test]
async fn ruby_api_and_web_ui_see_and_steer_a_running_psychiq_server() -> psychiq::Result<()> {
    if !ruby_sidekiq_available() {
        return Ok(());
    }
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();
    let charge = Charge::failing();
    let mut registry = registry_with(&Record::default());
    registry.register(charge.clone()).register(Once(charge));
    let config = ns.config().concurrency(4).tag("interop");
    let server = RunningServer::start(config, registry);
    let identity = ns.registered_identity().await;

    // Something in every place the dashboard shows.
    let c = &ns.client;
    for _ in 0..2 {
        c.push(Job::new("Nap", (120_000,))?).await?;
    }
    c.push(Job::new("Interop::Charge", ("<script>alert(1)</script>",))?)
        .await?;
    c.push(Job::new("Interop::Once", ("dead",))?.retry(psychiq::Retry::Max(0)))
        .await?;
    c.push(Job::new("Record", ("later",))?.delay(Duration::from_secs(600)))
        .await?;
    wait_until(
        Duration::from_secs(12),
        "busy 2, one retry, one dead",
        || async {
            let stats = api.stats().await.unwrap();
            stats.busy == 2 && stats.retries == 1 && stats.dead == 1
        },
    )
    .await;
    // Waiting jobs, for queue pages and latency (the server is busy with the naps).
    let () = ns
        .query(
            redis::cmd("RPUSH")
                .arg(ns.keys().queue("waiting"))
                .arg(r#"{"retry":true,"queue":"waiting","class":"Record","args":["w"],"jid":"aaaaaaaaaaaaaaaaaaaaaaaa","created_at":1795714853.5,"enqueued_at":1795714853.5}"#),
        )
        .await;
    let () = ns
        .query(redis::cmd("SADD").arg(ns.keys().queues()).arg("waiting"))
        .await;

    // Sidekiq::Stats agrees with Psychiq's own figures.
    let ruby = peer_json(&ns, &["stats"]).await;
    let ours = api.stats().await?;
    assert_eq!(ruby["processed"], ours.processed);
    assert_eq!(ruby["failed"], ours.failed);
    assert!(ours.failed >= 2);
    assert_eq!(ruby["enqueued"], ours.enqueued);
    assert_eq!(ruby["scheduled"], 1);
    assert_eq!(ours.scheduled, 1);
    assert_eq!(
        (ruby["retries"].as_u64(), ruby["dead"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(ruby["processes"], 1);
    assert_eq!(ruby["workers"], ours.busy);
    assert_eq!(ruby["queues"]["waiting"], 1);
    assert!(
        (ruby["default_queue_latency"].as_f64().unwrap() - ours.default_queue_latency).abs() < 1.0
    );

    // Sidekiq::ProcessSet and Sidekiq::Workers.
    let processes = peer_json(&ns, &["processes"]).await;
    assert_eq!(processes.as_array().unwrap().len(), 1);
    let p = &processes[0];
    assert_eq!(p["identity"], identity.as_str());
    assert_eq!(p["concurrency"], 4);
    assert_eq!(p["queues"], json!(["default"]));
    assert_eq!(p["busy"], 2);
    assert_eq!(p["tag"], "interop");
    assert!(p["rss"].as_u64().unwrap() > 0);
    let workers = peer_json(&ns, &["workers"]).await;
    let workers = workers.as_array().unwrap();
    assert_eq!(workers.len(), 2);
    assert!(
        workers
            .iter()
            .all(|w| w["class"] == "Nap" && w["process"] == identity.as_str())
    );

    // Sidekiq's own web app renders every page with Psychiq's data.
    let pages = peer_json(&ns, &["web"]).await;
    for (path, page) in pages.as_object().unwrap() {
        assert_eq!(page[0], 200, "GET {path}");
    }
    let body = |path: &str| {
        pages
            .as_object()
            .unwrap()
            .iter()
            .find(|(p, _)| p.starts_with(path))
            .unwrap()
            .1[1]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(body("/busy").contains(&identity) && body("/busy").contains("interop"));
    assert!(body("/busy").contains("Nap"));
    assert!(body("/queues").contains("waiting"));
    assert!(body("/retries/").contains("PaymentDeclined"));
    assert!(
        !body("/retries/").contains("<script>alert(1)</script>"),
        "escaped"
    );
    assert!(body("/morgue/").contains("Interop::Once"));
    assert!(body("/scheduled/").contains("later"));

    // quiet! and stop! from Ruby.
    peer(&ns, &["quiet", &identity]).await;
    wait_until(Duration::from_secs(8), "quiet in the heartbeat", || async {
        api.processes()
            .await
            .unwrap()
            .first()
            .is_some_and(|p| p.quiet)
    })
    .await;
    assert_eq!(peer_json(&ns, &["processes"]).await[0]["quiet"], "true");
    c.push(Job::new("Record", ("while quiet",))?).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        api.queue_size("default").await?,
        1,
        "a quiet server takes nothing"
    );
    peer(&ns, &["stop", &identity]).await;
    server.wait(Duration::from_secs(15)).await;
    assert!(api.processes().await?.is_empty());
    // The naps were pushed back, the quiet-time job still waits: nothing lost.
    assert_eq!(api.queue_size("default").await?, 3);
    Ok(())
}

#[tokio::test]
async fn a_mixed_fleet_of_ruby_and_psychiq_servers_runs_each_job_once() -> psychiq::Result<()> {
    if !ruby_sidekiq_available() {
        return Ok(());
    }
    let ns = TestNs::new().await;
    let mut registry = psychiq::Registry::new();
    registry.register(Recorder::new(&ns));
    let ruby = RubyServer::start(&ns, 5).await;
    let server = RunningServer::start(ns.config().concurrency(5), registry);
    ns.registered_identity().await;
    // Half pushed by each side while both servers are running.
    const JOBS: i64 = 2_000;
    ns.client
        .enqueue_bulk::<Recorder>((0..JOBS / 2).map(|i| vec![json!(i)]))
        .await?;
    peer(
        &ns,
        &[
            "push-range",
            &(JOBS / 2).to_string(),
            &(JOBS / 2).to_string(),
        ],
    )
    .await;
    wait_until(Duration::from_secs(60), "every job performed", || async {
        performed(&ns).await.len() as i64 >= JOBS
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().await;
    ruby.stop().await;

    let done = performed(&ns).await;
    let mut ids: Vec<i64> = done
        .iter()
        .map(|r| r["args"][0].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..JOBS).collect::<Vec<_>>(), "each job once");
    let by_ruby = done.iter().filter(|r| r["who"] == "ruby").count();
    let by_psychiq = done.len() - by_ruby;
    eprintln!("ruby ran {by_ruby}, psychiq ran {by_psychiq}");
    assert!(by_ruby > 0 && by_psychiq > 0, "both servers took work");
    Ok(())
}

#[tokio::test]
async fn psychiq_writes_the_payload_ruby_writes_field_by_field() -> psychiq::Result<()> {
    if !ruby_sidekiq_available() {
        return Ok(());
    }
    let ns = TestNs::new().await;
    let args = r#"[42,"eur",{"lines":[1.5,null]}]"#;
    let before = psychiq::__private::now_secs();
    let ruby_jid = peer(&ns, &["push", "Billing::InvoiceJob", args, "bytes"]).await;
    let ruby_jid: String = serde_json::from_str(&ruby_jid).unwrap();
    let jid = ns
        .client
        .push(
            Job::new(
                "Billing::InvoiceJob",
                serde_json::from_str::<Value>(args).unwrap(),
            )?
            .queue("bytes"),
        )
        .await?;
    let after = psychiq::__private::now_secs();
    let raws = ns.lrange(&ns.keys().queue("bytes")).await;
    let parse = |raw: &str| serde_json::from_str::<serde_json::Map<String, Value>>(raw).unwrap();
    let (ours, theirs) = (parse(&raws[0]), parse(&raws[1]));
    assert_eq!(theirs["jid"], ruby_jid.as_str());
    assert_eq!(ours["jid"], jid.as_str());

    let mut our_keys: Vec<&String> = ours.keys().collect();
    let mut their_keys: Vec<&String> = theirs.keys().collect();
    our_keys.sort();
    their_keys.sort();
    assert_eq!(our_keys, their_keys, "the same fields");
    for (key, theirs) in &theirs {
        let ours = &ours[key];
        match key.as_str() {
            "jid" => {
                for jid in [ours, theirs] {
                    let jid = jid.as_str().unwrap();
                    assert_eq!(jid.len(), 24);
                    assert!(
                        jid.bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                    );
                }
            }
            "created_at" | "enqueued_at" => {
                for at in [ours, theirs] {
                    assert!(at.is_f64(), "{key} is a float: {at}");
                    let at = at.as_f64().unwrap();
                    assert!(at >= before - 2.0 && at <= after + 0.1, "{key} {at}");
                }
                // Ruby writes 1795714853.3651628; we do the same (a fraction, shortest form).
                assert!(ours.to_string().contains('.'));
            }
            _ => assert_eq!(ours, theirs, "field {key}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_batch_run_by_psychiq_calls_back_a_ruby_class() -> psychiq::Result<()> {
    if !ruby_sidekiq_available() {
        return Ok(());
    }
    let ns = TestNs::new().await;
    // Psychiq serves the batch's jobs on "rust"; Ruby serves "default", where the
    // callbacks go, to its own `Interop::Recorder`.
    let mut registry = psychiq::Registry::new();
    registry.register(Recorder::new(&ns));
    let ruby = RubyServer::start(&ns, 2).await;
    let server = RunningServer::start(ns.config().weighted_queue("rust", 1), registry);
    let jobs = (0..20)
        .map(|n| Job::new("Interop::Recorder", ("part", n)).map(|j| j.queue("rust")))
        .collect::<psychiq::Result<Vec<_>>>()?;
    let bid = psychiq::batch::Batch::new("fan out in Rust, in again in Ruby")
        .on_complete(Job::new("Interop::Recorder", ("batch", "complete"))?)
        .on_success(Job::new("Interop::Recorder", ("batch", "success"))?)
        .push(&ns.client, jobs)
        .await?;
    wait_until(
        Duration::from_secs(30),
        "both callbacks in Ruby",
        || async {
            performed(&ns)
                .await
                .iter()
                .filter(|r| r["args"][0] == "batch")
                .count()
                == 2
        },
    )
    .await;
    server.stop().await;
    ruby.stop().await;
    let done = performed(&ns).await;
    let parts = done
        .iter()
        .filter(|r| r["args"][0] == "part")
        .collect::<Vec<_>>();
    assert_eq!(parts.len(), 20);
    assert!(parts.iter().all(|r| r["who"] == "psychiq"));
    let callbacks: Vec<&Value> = done.iter().filter(|r| r["args"][0] == "batch").collect();
    assert!(
        callbacks.iter().all(|r| r["who"] == "ruby"),
        "{callbacks:?}"
    );
    // Each once (Ruby may run the two at once, in either order); a callback's jid names
    // its batch and event, as Psychiq pushed it.
    let mut jids: Vec<String> = callbacks
        .iter()
        .map(|r| r["jid"].as_str().unwrap().to_string())
        .collect();
    jids.sort();
    assert_eq!(jids, [format!("{bid}-complete"), format!("{bid}-success")]);
    Ok(())
}

#[tokio::test]
async fn a_ruby_server_runs_a_workflow_step_and_its_end_counts() -> psychiq::Result<()> {
    if !ruby_sidekiq_available() {
        return Ok(());
    }
    let ns = TestNs::new().await;
    // Psychiq serves "rust"; Ruby, with ruby/psychiq_workflow.rb, serves "default".
    let mut registry = psychiq::Registry::new();
    registry.register(Recorder::new(&ns));
    let ruby = RubyServer::start(&ns, 2).await;
    let server = RunningServer::start(ns.config().weighted_queue("rust", 1), registry);
    let on = |queue: &str, step: &str| {
        Job::new("Interop::Recorder", (step,)).map(|j| j.queue(queue).retry(psychiq::Retry::Max(0)))
    };
    let wid = psychiq::workflow::Workflow::new("across languages")
        .step("a", on("rust", "a")?)
        .step("b", on("default", "b")?)
        .after(["a"])
        .step("c", on("rust", "c")?)
        .after(["b"])
        .push(&ns.client)
        .await?;
    let api = ns.jobs.api().await?;
    let ended = |wid: String| {
        let api = &api;
        async move {
            wait_until(Duration::from_secs(30), "the workflow to end", || async {
                api.workflow(&wid)
                    .await
                    .unwrap()
                    .unwrap()
                    .finished_at
                    .is_some()
            })
            .await;
            api.workflow(&wid).await.unwrap().unwrap()
        }
    };
    assert_eq!(ended(wid).await.state, "succeeded");
    let who: Vec<(String, String)> = performed(&ns)
        .await
        .iter()
        .map(|r| {
            (
                r["args"][0].as_str().unwrap().to_string(),
                r["who"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("a".into(), "psychiq".into()),
            ("b".into(), "ruby".into()),
            ("c".into(), "psychiq".into())
        ]
    );

    // A step that dies in Ruby (its retries spent) stops its workflow.
    let wid = psychiq::workflow::Workflow::new("dies in Ruby")
        .step(
            "x",
            Job::new("Interop::Broken", ())?.retry(psychiq::Retry::Max(0)),
        )
        .step("y", on("rust", "y")?)
        .after(["x"])
        .push(&ns.client)
        .await?;
    let failed = ended(wid).await;
    assert_eq!(
        (failed.state.as_str(), failed.dead, failed.skipped),
        ("failed", 1, 1)
    );
    server.stop().await;
    ruby.stop().await;
    Ok(())
}
