//! The extensions (`src/extensions/`), against a real Redis and real servers.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use psychiq::extensions::UniqueUntil;
use psychiq::{Job, JobResult, Push, Registry, Worker, WorkerOptions};
use serde_json::Value;

/// Records its runs like `Record`, and declares an expiry of an hour. Class name `Digest`.
#[derive(Clone, Default)]
struct Digest(Record);

impl Worker for Digest {
    type Args = Vec<Value>;
    fn options() -> WorkerOptions {
        WorkerOptions::default().expires_in(Duration::from_secs(3600))
    }
    async fn perform(&self, args: Vec<Value>) -> JobResult {
        self.0.perform(args).await
    }
}

/// The `psychiq` binary on the test's Redis and namespace.
fn psychiq_on(ns: &TestNs) -> std::process::Command {
    let mut command = psychiq();
    command.args(["--redis-url", &ns.url, "-n", &ns.namespace]);
    command
}

fn an_hour_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

/// Jobs left in the namespace's queue and in-progress hashes.
async fn unfinished(ns: &TestNs) -> usize {
    let queued: usize = ns
        .query(redis::cmd("LLEN").arg(ns.keys().queue("default")))
        .await;
    let pattern = format!("{}:inprogress:*", ns.namespace);
    let hashes: Vec<String> = ns.query(redis::cmd("KEYS").arg(&pattern)).await;
    let mut held = 0;
    for hash in hashes {
        held += ns.query::<usize>(redis::cmd("HLEN").arg(&hash)).await;
    }
    queued + held
}

async fn stat(ns: &TestNs, name: &str) -> u64 {
    ns.get_u64(&ns.keys().stat(name)).await
}

#[tokio::test]
async fn expired_jobs_are_discarded_unrun_counted_and_never_retried() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let digest = Digest::default();
    let record = Record::default();
    let mut registry = Registry::new();
    registry.register(digest.clone()).register(record.clone());
    // Digest declares expires_in, so the server checks every job's expiry.
    let server = RunningServer::start(ns.config(), registry);
    let c = &ns.client;
    c.push(Job::of::<Digest>(&vec![Value::from("late")])?.expires_at(an_hour_ago()))
        .await?;
    // A class that declares nothing, with an expiry of its own per push.
    c.push(Job::new("Record", ("late too",))?.expires_at(an_hour_ago()))
        .await?;
    c.push(Job::new("Record", ("on time",))?.expires_in(Duration::from_secs(60)))
        .await?;
    // The worker's own hour, counted from now.
    c.enqueue::<Digest>(vec![Value::from("fresh")]).await?;
    wait_until(Duration::from_secs(10), "every job taken", || async {
        unfinished(&ns).await == 0 && digest.0.count() + record.count() >= 2
    })
    .await;
    server.stop().await; // flushes the counters
    assert_eq!(digest.0.seen(), vec![Value::from(vec!["fresh"])]);
    assert_eq!(record.seen(), vec![Value::from(vec!["on time"])]);
    assert_eq!(stat(&ns, "discarded").await, 2);
    // Shown by the API (and so by `psychiq stats`, the dashboard and /metrics).
    let api = psychiq::api::Api::connect(&ns.redis, &ns.namespace).await?;
    assert_eq!(api.stats().await?.discarded, 2);
    assert_eq!(stat(&ns, "processed").await, 4);
    assert_eq!(stat(&ns, "failed").await, 0);
    assert!(
        ns.zrange(&ns.keys().retry()).await.is_empty(),
        "not retried"
    );
    assert!(ns.zrange(&ns.keys().dead()).await.is_empty(), "not dead");
    Ok(())
}

/// A job's `expires_at` is obeyed by a server that was told nothing and whose workers
/// declare no expiry (the probe's job pushed with `--expires-in 1` ran hours later).
#[tokio::test]
async fn expiry_is_obeyed_by_every_server_without_being_told() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let record = Record::default();
    let mut registry = Registry::new();
    registry.register(record.clone());
    let server = RunningServer::start(ns.config(), registry);
    ns.client
        .push(Job::new("Record", ("late",))?.expires_at(an_hour_ago()))
        .await?;
    ns.client.push(Job::new("Record", ("marker",))?).await?;
    wait_until(Duration::from_secs(10), "both jobs taken", || async {
        unfinished(&ns).await == 0 && record.count() >= 1
    })
    .await;
    server.stop().await;
    assert_eq!(record.seen(), vec![Value::from(vec!["marker"])]);
    assert_eq!(stat(&ns, "discarded").await, 1);
    Ok(())
}

#[tokio::test]
async fn psychiq_enqueue_writes_an_expiry_and_refuses_a_bad_one() {
    let ns = TestNs::new().await;
    let enqueue = |extra: &[&str]| {
        psychiq_on(&ns)
            .args(["enqueue", "Report"])
            .args(extra)
            .output()
            .expect("psychiq runs")
    };
    let out = enqueue(&["[1]", "--in", "60", "--expires-in", "30"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scheduled = ns.zrange(&ns.keys().schedule()).await;
    let job: Value = serde_json::from_str(&scheduled[0]).unwrap();
    let now = psychiq::__private::now_secs();
    let expires_at = job["expires_at"].as_f64().expect("expires_at written");
    // Due in 60 s, expiring 30 s after that.
    assert!(
        (now + 85.0..now + 95.0).contains(&expires_at),
        "{expires_at} vs now {now}"
    );
    let out = enqueue(&["[1]", "--expires-in", "0"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--expires-in takes a number of seconds"),
        "{stderr}"
    );
}

async fn queue_len(ns: &TestNs, queue: &str) -> usize {
    ns.query(redis::cmd("LLEN").arg(ns.keys().queue(queue)))
        .await
}

fn ran(record: &Record, what: &str) -> bool {
    record.seen().iter().any(|args| args[0] == what)
}

#[tokio::test]
async fn a_paused_queue_keeps_its_jobs_for_every_server_until_resumed_even_across_restarts()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = psychiq::api::Api::connect(&ns.redis, &ns.namespace).await?;
    let record = Record::default();
    let config = || ns.config().queue("default").queue("other");
    let server = RunningServer::start(config(), registry_with(&record));
    let c = &ns.client;
    c.push(Job::new("Record", ("warm-up",))?).await?;
    wait_until(Duration::from_secs(10), "the warm-up job", || async {
        ran(&record, "warm-up")
    })
    .await;

    assert!(api.pause_queue("default").await?, "newly paused");
    assert!(!api.pause_queue("default").await?, "paused already");
    for _ in 0..3 {
        c.push(Job::new("Record", ("held",))?).await?;
    }
    // The other queue goes on: once its job has run, a fetch has looked at both.
    c.push(Job::new("Record", ("probe",))?.queue("other"))
        .await?;
    wait_until(Duration::from_secs(5), "the other queue's job", || async {
        ran(&record, "probe")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        queue_len(&ns, "default").await,
        3,
        "the paused queue keeps its jobs"
    );
    assert!(!ran(&record, "held"));
    let shown = api.queues().await?;
    assert!(
        shown
            .iter()
            .any(|q| q.name == "default" && q.paused && q.size == 3)
    );
    assert!(shown.iter().any(|q| q.name == "other" && !q.paused));

    // A restarted server finds the queue still paused.
    server.stop().await;
    let server = RunningServer::start(config(), registry_with(&record));
    c.push(Job::new("Record", ("probe 2",))?.queue("other"))
        .await?;
    wait_until(Duration::from_secs(10), "the restarted server", || async {
        ran(&record, "probe 2")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(queue_len(&ns, "default").await, 3);

    // The CLI lists it as paused and resumes it.
    let cli = |args: &[&str]| psychiq_on(&ns).args(args).output().expect("psychiq runs");
    let listed = cli(&["--json", "queues"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let default = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .expect("default listed");
    assert_eq!(default["paused"], true, "{listed}");
    let resumed = cli(&["queues", "unpause", "default"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    wait_until(
        Duration::from_secs(5),
        "the held jobs, once resumed",
        || async { record.seen().iter().filter(|a| a[0] == "held").count() == 3 },
    )
    .await;
    assert!(api.paused_queues().await?.is_empty());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_server_whose_only_queue_is_paused_waits_with_either_fetch() -> psychiq::Result<()> {
    for mode in [psychiq::FetchMode::Reliable, psychiq::FetchMode::Basic] {
        let ns = TestNs::new().await;
        let api = psychiq::api::Api::connect(&ns.redis, &ns.namespace).await?;
        api.pause_queue("default").await?;
        let record = Record::default();
        let server = RunningServer::start(ns.config().fetch(mode), registry_with(&record));
        ns.client.push(Job::new("Record", ("held",))?).await?;
        ns.registered_identity().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(record.count(), 0, "{mode:?}: nothing taken while paused");
        assert_eq!(queue_len(&ns, "default").await, 1);
        api.unpause_queue("default").await?;
        wait_until(Duration::from_secs(3), "the job, once resumed", || async {
            record.count() == 1
        })
        .await;
        server.stop().await;
    }
    Ok(())
}

fn unique(args: Value) -> Job {
    Job::new("Record", args)
        .unwrap()
        .unique_for(Duration::from_secs(60))
}

#[tokio::test]
async fn racing_pushes_of_a_unique_job_from_clients_and_processes_write_it_once()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    // Ten `psychiq enqueue` processes, started together, race two clients of their own.
    let cli: Vec<_> = (0..10)
        .map(|_| {
            psychiq_on(&ns)
                .args(["--json", "enqueue"])
                .args(["Record", r#"["same",{"a":2,"b":1}]"#, "--unique-for", "60"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("psychiq runs")
        })
        .collect();
    let mut racers = Vec::new();
    for racer in 0..2 {
        // A connection of its own, as another process would have.
        let client = psychiq::Client::connect(&ns.redis, &ns.namespace).await?;
        racers.push(tokio::spawn(async move {
            let mut pushes = Vec::new();
            for i in 0..500 {
                // The same job, its object's keys in either order (canonical JSON).
                let args = if (i + racer) % 2 == 0 {
                    serde_json::json!(["same", {"a": 2, "b": 1}])
                } else {
                    serde_json::json!(["same", {"b": 1, "a": 2}])
                };
                pushes.push(client.try_push(unique(args)).await?);
            }
            Ok::<_, psychiq::Error>(pushes)
        }));
    }
    // A bulk push of the same job, twice over, and an unrelated one.
    let bulk = ns
        .client
        .try_push_bulk(vec![
            unique(serde_json::json!(["same", {"a": 2, "b": 1}])),
            unique(serde_json::json!(["same", {"a": 2, "b": 1}])),
            unique(serde_json::json!(["other"])),
        ])
        .await?;
    let mut pushes = bulk[..2].to_vec();
    for racer in racers {
        pushes.extend(racer.await.expect("racer")?);
    }
    let mut cli_jids = Vec::new();
    let mut cli_written = 0;
    for child in cli {
        let out = child.wait_with_output().expect("psychiq ran");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        cli_jids.push(said["jid"].as_str().unwrap().to_string());
        cli_written += usize::from(said["duplicate"] != true);
    }
    let written = pushes
        .iter()
        .filter(|p| matches!(p, Push::Pushed(_)))
        .count();
    assert_eq!(
        written + cli_written,
        1,
        "one of 1,012 pushes wrote the job"
    );
    let jid = pushes[0].jid().unwrap().to_string();
    assert!(
        pushes.iter().all(|p| p.jid() == Some(jid.as_str())),
        "every push answered with its jid"
    );
    assert!(cli_jids.iter().all(|j| *j == jid));
    assert!(
        matches!(bulk[2], Push::Pushed(_)),
        "another job is not a twin"
    );
    assert_eq!(queue_len(&ns, "default").await, 2);
    Ok(())
}

#[tokio::test]
async fn a_unique_lock_always_expires_and_covers_a_scheduled_wait() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let once = || {
        Job::new("Report", ("daily",))
            .unwrap()
            .unique_for(Duration::from_secs(1))
    };
    let first = ns.client.try_push(once()).await?;
    assert!(matches!(first, Push::Pushed(_)));
    assert_eq!(
        ns.client.try_push(once()).await?,
        Push::Duplicate(first.jid().unwrap().into())
    );
    // The job is lost (no server ever runs it): the lock still goes with its TTL.
    let _: () = ns
        .query(redis::cmd("DEL").arg(ns.keys().queue("default")))
        .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(ns.client.try_push(once()).await?, Push::Pushed(_)));

    // Scheduled 3 s ahead, unique for 1 s: the lock covers the wait and then some.
    let later = || {
        Job::new("Report", ("later",))
            .unwrap()
            .delay(Duration::from_secs(3))
            .unique_for(Duration::from_secs(1))
    };
    assert!(matches!(
        ns.client.try_push(later()).await?,
        Push::Pushed(_)
    ));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(
        ns.client.try_push(later()).await?,
        Push::Duplicate(_)
    ));
    Ok(())
}

#[tokio::test]
async fn unique_locks_go_on_success_at_start_or_by_expiry() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let record = Record::default();
    // No worker declares unique_for and the server is told nothing: it obeys the job.
    let server = RunningServer::start(ns.config(), registry_with(&record));
    let c = &ns.client;
    let pushed = |push: &Push| matches!(push, Push::Pushed(_));

    // On success (the default): once it has run, the same job may be pushed again.
    assert!(pushed(&c.try_push(unique(serde_json::json!(["a"]))).await?));
    wait_until(Duration::from_secs(5), "the first run", || async {
        record.count() == 1
    })
    .await;
    wait_until(Duration::from_secs(5), "the lock to go", || async {
        pushed(&c.try_push(unique(serde_json::json!(["a"]))).await.unwrap())
    })
    .await;

    // A failure keeps it while the job waits for its retry.
    let flaky = || {
        Job::new("Flaky", ("x",))
            .unwrap()
            .unique_for(Duration::from_secs(60))
    };
    let first = c.try_push(flaky()).await?;
    wait_until(
        Duration::from_secs(5),
        "the failure in the retry set",
        || async { !ns.zrange(&ns.keys().retry()).await.is_empty() },
    )
    .await;
    assert_eq!(
        c.try_push(flaky()).await?,
        Push::Duplicate(first.jid().unwrap().into())
    );

    // At start: a second copy may be pushed while the first still runs (a 2 s nap).
    let nap = || {
        Job::new("Nap", (2_000,))
            .unwrap()
            .unique_for(Duration::from_secs(60))
            .unique_until(UniqueUntil::Start)
    };
    assert!(pushed(&c.try_push(nap()).await?));
    let started = std::time::Instant::now();
    wait_until(
        Duration::from_secs(2),
        "the lock to go at start",
        || async { pushed(&c.try_push(nap()).await.unwrap()) },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1_900),
        "before the nap ended"
    );

    // By expiry only: it stays after a successful run.
    let kept = || unique(serde_json::json!(["kept"])).unique_until(UniqueUntil::Expiry);
    let first = c.try_push(kept()).await?;
    wait_until(Duration::from_secs(5), "the kept job's run", || async {
        record.seen().iter().any(|a| a[0] == "kept")
    })
    .await;
    assert_eq!(
        c.try_push(kept()).await?,
        Push::Duplicate(first.jid().unwrap().into())
    );
    server.stop().await;
    Ok(())
}

/// The probe's unique job: pushed with `psychiq enqueue --unique-for 3600` to a server
/// started with no flags, its lock goes when it has run, so the next push is written. A
/// lock held by a job nobody runs is listed, named in the refusal, and let go by hand.
#[tokio::test]
async fn a_unique_push_is_obeyed_by_a_server_told_nothing_and_its_lock_can_be_let_go() {
    let ns = TestNs::new().await;
    let out_file = std::env::temp_dir().join(format!("{}-unique.jsonl", ns.namespace));
    let path = out_file.to_string_lossy().to_string();
    let args = serde_json::json!([path, "once"]).to_string();
    let enqueue = |queue: &str| {
        let out = psychiq_on(&ns)
            .args([
                "enqueue",
                "Echo",
                &args,
                "--queue",
                queue,
                "--unique-for",
                "3600",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let mut server = Spawned::start(&ns, &["-s", "demo", "-c", "2"]);
    assert!(!enqueue("default").contains("not enqueued"));
    let runs = || {
        std::fs::read_to_string(&out_file)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_until(Duration::from_secs(10), "the first run", || async {
        runs() == 1
    })
    .await;
    wait_until(Duration::from_secs(5), "its lock to go", || async {
        !enqueue("default").contains("not enqueued")
    })
    .await;
    wait_until(Duration::from_secs(10), "the second run", || async {
        runs() == 2
    })
    .await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);

    // A queue no server reads: the lock stays, is listed, and named when a push is refused.
    assert!(!enqueue("nowhere").contains("not enqueued"));
    let refused = enqueue("nowhere");
    assert!(
        refused.contains("locked by jid") && refused.contains("may have finished"),
        "{refused}"
    );
    let listed = psychiq_on(&ns).args(["unique", "--json"]).output().unwrap();
    let locks: Value = serde_json::from_slice(&listed.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&listed.stdout)));
    assert_eq!(locks.as_array().map(Vec::len), Some(1), "{locks}");
    let key = locks[0]["key"].as_str().unwrap().to_string();
    let queued = ns.lrange(&ns.keys().queue("nowhere")).await;
    assert!(queued[0].contains(locks[0]["jid"].as_str().unwrap()));
    let unlock = psychiq_on(&ns)
        .args(["unique", "unlock", &key])
        .output()
        .unwrap();
    assert!(
        unlock.status.success(),
        "{}",
        String::from_utf8_lossy(&unlock.stderr)
    );
    assert!(
        !enqueue("nowhere").contains("not enqueued"),
        "pushed again once let go"
    );
    let again = psychiq_on(&ns)
        .args(["unique", "show", "nope"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "a missing lock is an error");
    let _ = std::fs::remove_file(&out_file);
}

/// Every path that takes a job away for good has the same farewell: killed from its queue
/// or the retry set, deleted, or cleared with its queue, a unique job's lock goes and a
/// batch job dies for its batch (whose death callback fires once).
#[tokio::test]
async fn kill_delete_and_clear_let_locks_go_and_count_batch_deaths() -> psychiq::Result<()> {
    use psychiq::api::{Api, SetKind};
    use psychiq::batch::Batch;
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let c = &ns.client;
    let lock_count = || async {
        let locks: Vec<String> = ns
            .query(redis::cmd("KEYS").arg(ns.keys().key("unique:*")))
            .await;
        locks.len()
    };
    let idle = |n: u32| unique(serde_json::json!([n])).queue("idle");
    for n in 0..3 {
        c.push(idle(n)).await?;
    }
    c.push(idle(3).at(SystemTime::now() + Duration::from_secs(600)))
        .await?;
    assert_eq!(lock_count().await, 4);
    let queued = api.queue_jobs("idle", 0, 10).await?;
    assert!(api.kill(None, &queued[0]).await?);
    assert_eq!(lock_count().await, 3, "killed let go");
    assert!(api.delete_from_queue(&queued[1]).await?);
    assert_eq!(lock_count().await, 2, "deleted let go");
    assert_eq!(api.clear_queue("idle").await?, 1);
    assert_eq!(api.clear(SetKind::Scheduled).await?, 1);
    assert_eq!(lock_count().await, 0, "cleared let go");

    let bid = Batch::new("killed by hand")
        .on_death(Job::new("Record", ("death",))?.queue("callbacks"))
        .push(
            c,
            vec![
                Job::new("Record", ("a",))?.queue("idle"),
                Job::new("Record", ("b",))?.queue("idle"),
            ],
        )
        .await?;
    let queued = api.queue_jobs("idle", 0, 10).await?;
    assert!(api.kill(None, &queued[0]).await?);
    assert!(api.kill(None, &queued[1]).await?);
    let status = api.batch(&bid).await?.unwrap();
    assert_eq!((status.dead, status.pending), (2, 0));
    assert!(status.death_at.is_some() && status.complete_at.is_some());
    assert_eq!(queue_len(&ns, "callbacks").await, 1, "death fired once");
    Ok(())
}
