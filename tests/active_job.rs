//! Rails' ActiveJob both ways, against the real thing: Debian's Rails 6.1 ActiveJob with
//! Debian's Sidekiq 6.4.1, and with Sidekiq 7.3.10 and 8.0.10 from `../shared/peers`
//! (through `tests/ruby/active_job.rb`), each on a Redis of the test's own, on bare keys.
//!
//! A Rails `perform_later` runs a Psychiq worker with the arguments the job was given; a
//! failed one keeps its payload, Sidekiq's dashboard shows it as the ActiveJob class and its
//! "Retry now" brings it back to Psychiq; and a job Psychiq enqueues for an ActiveJob class
//! runs in Ruby once, with `provider_job_id` equal to its jid.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{OwnRedis, RunningServer, wait_until};
use psychiq::active_job::{self, JOB_WRAPPER};
use psychiq::api::{Api, SetKind};
use psychiq::{Client, Job, JobError, JobResult, RedisConfig, Registry, ServerConfig, Worker};
use serde_json::{Value, json};

const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ruby/active_job.rb");

/// One Ruby Sidekiq with Rails 6.1's ActiveJob, on `redis`.
struct Ruby {
    version: &'static str,
    url: String,
    out: PathBuf,
}

impl Ruby {
    /// Sidekiq `version` (6, 7 or 8) if it is here; else skips (unless CI requires it).
    fn new(version: &'static str, redis: &OwnRedis) -> Option<Ruby> {
        if version == "6" {
            if !common::ruby_sidekiq_available() {
                return None;
            }
            let rails = Command::new("ruby")
                .args(["-e", "require 'active_job'"])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                rails || std::env::var("PSYCHIQ_REQUIRE_RUBY").is_err(),
                "Rails' ActiveJob is required here: apt-get install ruby-activejob"
            );
            if !rails {
                eprintln!("skipped: no Rails ActiveJob (apt-get install ruby-activejob)");
                return None;
            }
        } else if !runner().is_file() {
            assert!(
                std::env::var("PSYCHIQ_REQUIRE_PEERS").is_err(),
                "Sidekiq 7/8 peers are required here but {} is missing",
                runner().display()
            );
            eprintln!("skipped: no {}", runner().display());
            return None;
        }
        Some(Ruby {
            version,
            url: redis.url(),
            out: std::env::temp_dir().join(format!("psychiq-aj-{}-{version}.jsonl", redis.port)),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = if self.version == "6" {
            Command::new("ruby")
        } else {
            let mut command = Command::new(runner());
            command.arg(self.version);
            command
        };
        command
            .arg(DRIVER)
            .args(args)
            .env("REDIS_URL", &self.url)
            .env("AJ_OUT", &self.out)
            .env_remove("PEER_NAMESPACE");
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("ruby runs");
        assert!(
            out.status.success(),
            "Sidekiq {} {args:?}: {}",
            self.version,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `enqueue …`: the Sidekiq jid and the ActiveJob job_id.
    fn enqueue(&self, args: &[&str]) -> (String, String) {
        let line: Value = serde_json::from_str(self.run(args).trim()).unwrap();
        (
            line["jid"].as_str().unwrap().to_string(),
            line["job_id"].as_str().unwrap().to_string(),
        )
    }

    /// What the Ruby jobs performed, one record per run.
    fn performed(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

fn runner() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/ruby-sidekiq")
}

/// Records each ActiveJob it runs: class, jid, arguments and ActiveJob's own fields.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Value>>>);

impl Seen {
    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

impl Worker for Seen {
    type Args = Vec<Value>;
    fn class_name() -> String {
        // Serves the Rails class AjEcho, as a Psychiq worker declares it.
        "AjEcho".into()
    }
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        let job = psychiq::context::current().unwrap();
        let active_job = job.active_job().expect("an ActiveJob");
        self.0.lock().unwrap().push(json!({
            "class": job.class(), "jid": job.jid(), "args": args,
            "job_id": active_job.job_id(), "executions": active_job.executions(),
            "locale": active_job.field("locale"),
        }));
        Ok(())
    }
}

/// The Rails class AjFail, failing every run in Psychiq.
#[derive(Clone, Default)]
struct Fails(Arc<Mutex<u32>>);

impl Worker for Fails {
    type Args = Vec<Value>;
    fn class_name() -> String {
        "AjFail".into()
    }
    async fn perform(&self, _: Vec<Value>) -> JobResult {
        *self.0.lock().unwrap() += 1;
        Err(JobError::new("Declined", "declined in psychiq"))
    }
}

/// The arguments `enqueue-rich` gives `AjEcho#perform`, as a Psychiq worker receives them.
fn rich_as_received() -> Value {
    let at = "2026-12-07T01:02:03.123456789Z";
    json!([
        0, 4611686018427387904u64, -7, 1.5, "str", "", null, true, false, "sym",
        {"a": 1, "b": [null]}, {"sym": 1, "str": 2}, {"x": 1, "y": "z"},
        at, "2026-12-07", "2026-12-07T01:02:03.500000000+05:30",
        "2026-12-07T10:02:03.123456789+09:00", 93600, 90, "AjEcho", "Billing",
        "gid://app/User/1",
        [1, [2, ["three", {"four": ["2026-01-01", {"five": "gid://app/User/5"}]}]]],
        {"kw": 1, "at": at, "sym": "v", "nested": {"deep": ["x"]}}
    ])
}

async fn both_ways(version: &'static str) {
    let mut redis_server = OwnRedis::start();
    let Some(ruby) = Ruby::new(version, &redis_server) else {
        return;
    };
    let redis = RedisConfig::from_url(redis_server.url()).unwrap();
    let client = Client::connect(&redis, "").await.unwrap();
    let api = Api::connect(&redis, "").await.unwrap();

    // Rails → Psychiq.
    let (rich, rich_job_id) = ruby.enqueue(&["enqueue-rich"]);
    let (plain, _) = ruby.enqueue(&["enqueue", "AjEcho", r#"[42, "x"]"#]);
    let (keywords, _) = ruby.enqueue(&["enqueue", "AjEcho", r#"42, "x", mode: :fast"#]);
    let (later, _) = ruby.enqueue(&["enqueue", "AjEcho", "[1]", "--wait", "1"]);
    let (failing, _) = ruby.enqueue(&["enqueue", "AjFail", "[7]"]);
    let written = api
        .find_in_queue("default", &failing)
        .await
        .unwrap()
        .unwrap();
    let written: Value = serde_json::from_str(written.raw()).unwrap();

    let seen = Seen::default();
    let fails = Fails::default();
    let mut registry = Registry::new();
    registry.register(seen.clone()).register(fails.clone());
    let config = ServerConfig::default()
        .redis(redis.clone())
        .poll_interval(Duration::from_millis(200))
        .shutdown_timeout(Duration::from_secs(5));
    let server = RunningServer::start(config, registry);
    wait_until(
        Duration::from_secs(15),
        "Rails' jobs to run in Psychiq",
        || async { seen.all().len() >= 4 && api.set_size(SetKind::Retry).await.unwrap() == 1 },
    )
    .await;
    let ran = seen.all();
    let run = |jid: &str| {
        let runs: Vec<&Value> = ran.iter().filter(|r| r["jid"] == jid).collect();
        assert_eq!(runs.len(), 1, "{jid} ran once: {ran:?}");
        runs[0].clone()
    };
    let rich_run = run(&rich);
    assert_eq!(rich_run["args"], rich_as_received(), "Sidekiq {version}");
    assert_eq!(rich_run["class"], "AjEcho");
    assert_eq!(rich_run["job_id"], rich_job_id.as_str());
    assert_eq!(
        (&rich_run["executions"], &rich_run["locale"]),
        (&json!(0), &json!("en"))
    );
    assert_eq!(run(&plain)["args"], json!([42, "x"]));
    assert_eq!(run(&keywords)["args"], json!([42, "x", {"mode": "fast"}]));
    assert_eq!(run(&later)["args"], json!([1]));

    // A failure keeps class, wrapped and args as Rails wrote them: Sidekiq shows it as
    // AjFail, and its "Retry now" sends it back to Psychiq.
    let entry = api
        .set_find(SetKind::Retry, &failing)
        .await
        .unwrap()
        .unwrap();
    let item = entry.item().unwrap();
    assert_eq!(item["class"], JOB_WRAPPER);
    assert_eq!(
        (&item["wrapped"], &item["args"]),
        (&written["wrapped"], &written["args"])
    );
    assert_eq!(item["error_class"], "Declined");
    let shown: Value = serde_json::from_str(ruby.run(&["display", "retry"]).trim()).unwrap();
    assert_eq!(shown["display_class"], "AjFail");
    assert_eq!(shown["jid"], failing.as_str());
    assert_eq!(*fails.0.lock().unwrap(), 1);
    // (6.4's retry_all repeats `while size > 0`, so a job that fails again at once may be
    // sent more than once.)
    ruby.run(&["retry-all"]);
    wait_until(
        Duration::from_secs(10),
        "Ruby's Retry now to reach Psychiq",
        || async { *fails.0.lock().unwrap() >= 2 },
    )
    .await;
    server.stop().await;

    // Psychiq → Rails: Job::active_job and `psychiq enqueue --active-job` run in Ruby once,
    // as AjEcho#perform, with provider_job_id = jid.
    let pushed = client
        .push(
            Job::active_job(
                "AjEcho",
                (
                    42,
                    "x",
                    json!({"sku": "A1"}),
                    active_job::symbol("fast"),
                    active_job::global_id("gid://app/User/3"),
                    active_job::keywords(json!({"mode": "bulk"})).unwrap(),
                ),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let cli = common::psychiq()
        .args([
            "enqueue",
            "--redis-url",
            &redis_server.url(),
            "--active-job",
        ])
        .args(["Billing::InvoiceJob", r#"[7, "eur"]"#, "--in", "1"])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    // "enqueued Billing::InvoiceJob as JID (scheduled)"
    let said = String::from_utf8(cli.stdout).unwrap();
    let cli_jid = said
        .split(" as ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let _ = std::fs::remove_file(&ruby.out);
    let mut serve = ruby
        .command(&["serve", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while ruby.performed().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "Sidekiq {version} ran {:?}",
            ruby.performed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").arg(serve.id().to_string()).status();
    assert!(serve.wait().unwrap().success());
    let performed = ruby.performed();
    assert_eq!(performed.len(), 2, "{performed:?}");
    let ours = performed
        .iter()
        .find(|p| p["provider_job_id"] == pushed.as_str())
        .unwrap();
    assert_eq!(ours["job_class"], "AjEcho");
    assert_eq!(
        ours["args"],
        json!([42, "x", {"sku": "A1"}, "fast", "gid://app/User/3"])
    );
    assert_eq!(ours["arg_types"][3], "Symbol");
    assert_eq!(ours["arg_types"][4], "User");
    assert_eq!(ours["kwargs"], json!({"mode": "bulk"}));
    let from_cli = performed
        .iter()
        .find(|p| p["provider_job_id"] == cli_jid.as_str())
        .unwrap();
    assert_eq!(from_cli["job_class"], "Billing::InvoiceJob");
    assert_eq!(from_cli["args"], json!([7, "eur"]));
    let _ = std::fs::remove_file(&ruby.out);
    redis_server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rails_6_1_on_sidekiq_6_4_and_psychiq_run_each_others_active_jobs() {
    both_ways("6").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rails_6_1_on_sidekiq_7_3_and_psychiq_run_each_others_active_jobs() {
    both_ways("7").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rails_6_1_on_sidekiq_8_0_and_psychiq_run_each_others_active_jobs() {
    both_ways("8").await;
}

/// The payload Sidekiq 8 with Rails 7+ writes (`Sidekiq::ActiveJob::Wrapper`) runs too, and a
/// wrapper without ActiveJob's record goes to the dead set saying what it lacks.
#[tokio::test]
async fn sidekiq_8s_own_wrapper_runs_and_a_broken_record_says_what_it_lacks() {
    let ns = common::TestNs::new().await;
    let seen = Seen::default();
    let mut registry = Registry::new();
    registry.register(seen.clone());
    let server = RunningServer::start(ns.config(), registry);
    ns.lpush_raw(
        "default",
        r#"{"retry":true,"queue":"default","class":"Sidekiq::ActiveJob::Wrapper","wrapped":"AjEcho","args":[{"job_class":"AjEcho","job_id":"a1","arguments":[{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"s"}],"executions":0}],"jid":"s8wrapped","created_at":1796616016580,"enqueued_at":1796616016581}"#,
    )
    .await;
    ns.lpush_raw(
        "default",
        r#"{"retry":true,"queue":"default","class":"ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper","wrapped":"AjEcho","args":[42],"jid":"broken"}"#,
    )
    .await;
    let api = Api::connect(&ns.redis, &ns.namespace).await.unwrap();
    wait_until(
        Duration::from_secs(10),
        "both jobs to be handled",
        || async { seen.all().len() == 1 && api.set_size(SetKind::Dead).await.unwrap() == 1 },
    )
    .await;
    server.stop().await;
    assert_eq!(seen.all()[0]["args"], json!(["s"]));
    let dead = api
        .set_find(SetKind::Dead, "broken")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.error_class(), Some("Psychiq::InvalidPayload"));
    assert!(
        dead.error_message().unwrap().contains("job_class"),
        "{dead:?}"
    );
}
