//! Batches (`src/extensions/batch.rs`) against a real Redis and real servers: complete and
//! success once each over 10,000 jobs with failures and retries, death once, nested
//! batches and jobs adding to their own batch, and callbacks exactly once through three
//! `kill -9`s of the server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use psychiq::api::{Api, SetKind};
use psychiq::batch::{self, Batch};
use psychiq::{Client, Job, JobError, JobResult, NoArgs, Registry, Retry, Worker};
use serde_json::Value;

/// Records each callback it runs as `(event, bid)`. Class name `Callback`.
#[derive(Clone, Default)]
struct Callback(Arc<Mutex<Vec<(String, String)>>>);

impl Callback {
    fn events(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, event: &str, bid: &str) -> usize {
        self.events()
            .iter()
            .filter(|(e, b)| e == event && b == bid)
            .count()
    }
}

impl Worker for Callback {
    type Args = (String,);
    async fn perform(&self, (label,): (String,)) -> JobResult {
        let job = psychiq::context::current().unwrap();
        let event = job.field("batch_event").cloned().unwrap_or(Value::Null);
        // The callback's event is in its payload (the label may say more, "child-success").
        let said = event["event"].as_str().unwrap_or("?").to_string();
        assert!(label.ends_with(&said), "{label}: {event}");
        let bid = event["bid"].as_str().unwrap_or("").to_string();
        self.0.lock().unwrap().push((label, bid));
        Ok(())
    }
}

/// `(n, fail_once)`: fails on its first run when asked. Class name `Part`.
struct Part;

impl Worker for Part {
    type Args = (u32, bool);
    async fn perform(&self, (n, fail_once): (u32, bool)) -> JobResult {
        let job = psychiq::context::current().unwrap();
        if fail_once && job.field("retry_count").is_none() {
            return Err(JobError::msg(format!("part {n} fails once")));
        }
        Ok(())
    }

    /// An hour out: no retry comes due before the test makes them due, however slow the
    /// machine (Sidekiq's first backoff, 15 to 25 s, did on a loaded CI).
    fn retry_in(&self, _: u32, _: &JobError) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
}

/// Always fails; pushed with `retry: 0`, it dies at once. Class name `Boom`.
struct Boom;

impl Worker for Boom {
    type Args = NoArgs;
    async fn perform(&self, _: NoArgs) -> JobResult {
        Err(JobError::msg("boom"))
    }
}

/// Adds two `Part`s to its own batch and creates a child batch of three. Class name
/// `Spawner`.
struct Spawner {
    client: Client,
    callback_queue: String,
}

impl Worker for Spawner {
    type Args = NoArgs;
    async fn perform(&self, _: NoArgs) -> JobResult {
        let bid = batch::current_bid().expect("inside a batch");
        let parts = |n| Job::new("Part", (n, false)).unwrap();
        Batch::open(&self.client, &bid, vec![parts(1), parts(2)])
            .await
            .map_err(|e| JobError::msg(e.to_string()))?;
        Batch::new("child")
            .parent(bid)
            .on_success(callback("child-success", &self.callback_queue))
            .push(&self.client, vec![parts(3), parts(4), parts(5)])
            .await
            .map_err(|e| JobError::msg(e.to_string()))?;
        Ok(())
    }
}

fn callback(label: &str, queue: &str) -> Job {
    Job::new("Callback", (label,)).unwrap().queue(queue)
}

fn registry(callbacks: &Callback, client: &Client) -> Registry {
    let mut registry = Registry::new();
    registry
        .register(callbacks.clone())
        .register(Part)
        .register(Boom)
        .register(Spawner {
            client: client.clone(),
            callback_queue: "default".into(),
        });
    registry
}

fn no_args() -> Job {
    Job::new("Boom", ()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_once_after_every_run_and_success_once_after_the_retries() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let callbacks = Callback::default();
    const JOBS: u32 = 10_000;
    let jobs: Vec<Job> = (0..JOBS)
        .map(|n| Job::new("Part", (n, n % 10 == 0)).unwrap())
        .collect();
    let bid = Batch::new("ten thousand parts")
        .on_complete(callback("complete", "default"))
        .on_success(callback("success", "default"))
        .on_death(callback("death", "default"))
        .push(&ns.client, jobs)
        .await?;
    let status = api.batch(&bid).await?.unwrap();
    assert_eq!((status.total, status.pending), (10_000, 10_000));

    let server = RunningServer::start(
        ns.config().concurrency(25),
        registry(&callbacks, &ns.client),
    );
    wait_until(Duration::from_secs(60), "complete", || async {
        callbacks.count("complete", &bid) == 1
    })
    .await;
    // Every job ran once; a tenth failed and wait for their retries: not a success yet.
    let status = api.batch(&bid).await?.unwrap();
    assert_eq!(status.pending, 1_000);
    assert_eq!(status.failures, 1_000);
    assert!(status.complete_at.is_some() && status.success_at.is_none());
    assert_eq!(api.set_size(SetKind::Retry).await?, 1_000);
    assert_eq!(callbacks.count("success", &bid), 0);

    // The retries, made due now, succeed: success fires, once.
    api.retry_all(SetKind::Retry).await?;
    wait_until(Duration::from_secs(60), "success", || async {
        callbacks.count("success", &bid) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().await;
    assert_eq!(callbacks.count("complete", &bid), 1);
    assert_eq!(callbacks.count("success", &bid), 1);
    assert_eq!(callbacks.count("death", &bid), 0);
    let status = api.batch(&bid).await?.unwrap();
    assert_eq!((status.pending, status.failures, status.dead), (0, 0, 0));
    assert!(status.success_at.unwrap() >= status.complete_at.unwrap());
    // Done: its keys now expire (30 days).
    let ttl: i64 = ns
        .query(redis::cmd("TTL").arg(ns.keys().key(&format!("batch:{bid}"))))
        .await;
    assert!(ttl > 0 && ttl <= 30 * 86_400, "{ttl}");
    Ok(())
}

#[tokio::test]
async fn a_job_that_dies_fires_death_once_and_the_batch_completes_without_success()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let callbacks = Callback::default();
    let bid = Batch::new("with a dud")
        .expire_after(Duration::from_secs(3600))
        .on_complete(callback("complete", "default"))
        .on_success(callback("success", "default"))
        .on_death(callback("death", "default"))
        .push(
            &ns.client,
            vec![
                Job::new("Part", (1, false))?,
                no_args().retry(Retry::Max(0)),
                no_args().retry(Retry::Max(0)),
            ],
        )
        .await?;
    let server = RunningServer::start(ns.config(), registry(&callbacks, &ns.client));
    wait_until(Duration::from_secs(10), "complete and death", || async {
        callbacks.count("complete", &bid) == 1 && callbacks.count("death", &bid) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop().await;
    assert_eq!(
        callbacks.count("death", &bid),
        1,
        "two deaths, one callback"
    );
    assert_eq!(callbacks.count("success", &bid), 0);
    let status = api.batch(&bid).await?.unwrap();
    assert_eq!((status.dead, status.pending), (2, 0));
    assert!(status.death_at.is_some());
    // It did not succeed, so it keeps the 30 days of an unfinished batch, not its own hour.
    let ttl: i64 = ns
        .query(redis::cmd("TTL").arg(ns.keys().key(&format!("batch:{bid}"))))
        .await;
    assert!(ttl > 3600, "{ttl}");
    let dead = api.set_page(SetKind::Dead, 0, 5).await?;
    assert!(dead.iter().all(|j| j.error_message() == Some("boom")));
    Ok(())
}

#[tokio::test]
async fn a_parent_succeeds_after_its_child_and_jobs_add_to_their_own_batch() -> psychiq::Result<()>
{
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let callbacks = Callback::default();
    let bid = Batch::new("parent")
        .expire_after(Duration::from_secs(60))
        .on_complete(callback("complete", "default"))
        .on_success(callback("success", "default"))
        .push(&ns.client, vec![Job::new("Spawner", ())?])
        .await?;
    let server = RunningServer::start(ns.config(), registry(&callbacks, &ns.client));
    wait_until(Duration::from_secs(10), "the parent's success", || async {
        callbacks.count("success", &bid) == 1
    })
    .await;
    server.stop().await;
    let events: Vec<String> = callbacks.events().into_iter().map(|(e, _)| e).collect();
    let child = events
        .iter()
        .position(|e| e == "child-success")
        .expect("child success");
    let parent = events.iter().position(|e| e == "success").unwrap();
    assert!(child < parent, "the child's success first: {events:?}");
    let status = api.batch(&bid).await?.unwrap();
    assert_eq!(status.total, 3, "the spawner and the two parts it added");
    let ttl: i64 = ns
        .query(redis::cmd("TTL").arg(ns.keys().key(&format!("batch:{bid}"))))
        .await;
    assert!(ttl > 0 && ttl <= 60, "expire_after: {ttl}");
    assert_eq!((status.pending, status.children_pending), (0, 0));
    // Work added after its success would never be waited for: refused, as an empty batch.
    let late = Batch::open(&ns.client, &bid, vec![Job::new("Part", (9, false))?]).await;
    assert!(late.unwrap_err().to_string().contains("already succeeded"));
    let empty = Batch::new("nothing").push(&ns.client, vec![]).await;
    assert!(empty.unwrap_err().to_string().contains("at least one job"));
    // Both are listed, the child with its parent.
    let listed = api.batches(10).await?;
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|b| b.parent.as_deref() == Some(bid.as_str()))
    );
    Ok(())
}

#[tokio::test]
async fn callbacks_fire_exactly_once_through_three_kill_9s() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let out = std::env::temp_dir().join(format!("{}-batch.jsonl", ns.namespace));
    let path = out.to_string_lossy().to_string();
    const JOBS: usize = 5_000;
    // The demo system's Echo appends its args to a file: the jobs write "part", the
    // callbacks "complete" and "success".
    let jobs: Vec<Job> = (0..JOBS)
        .map(|n| Job::new("Echo", (&path, "part", n)).unwrap())
        .collect();
    let bid = Batch::new("through crashes")
        .on_complete(Job::new("Echo", (&path, "complete"))?)
        .on_success(Job::new("Echo", (&path, "success"))?)
        .push(&ns.client, jobs)
        .await?;
    let lines = |what: &str| {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("\"{what}\"")))
            .count()
    };
    let args = ["-s", "demo", "-c", "10"];
    let mut server = Spawned::start(&ns, &args);
    for kill in 1..=3 {
        wait_until(
            Duration::from_secs(60),
            "progress before a kill",
            || async { lines("part") >= kill * 1_200 },
        )
        .await;
        server.kill9();
        server = Spawned::start(&ns, &args);
    }
    wait_until(Duration::from_secs(60), "success", || async {
        lines("success") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
    let parts = lines("part");
    assert!(parts >= JOBS, "every part ran ({parts} lines)");
    assert_eq!(lines("complete"), 1, "complete once ({} part runs)", parts);
    assert_eq!(lines("success"), 1, "success once");
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let status = api.batch(&bid).await?.unwrap();
    assert_eq!((status.total, status.pending), (JOBS as u64, 0));
    eprintln!(
        "5,000 jobs, 3 kills: {} part runs ({} duplicates), complete once, success once",
        parts,
        parts - JOBS
    );
    let _ = std::fs::remove_file(&out);
    Ok(())
}

/// A `bid` is chosen by whoever pushes the job. One that names a key of another type (a
/// string, or an open batch's own `:pending` set) can never be counted: the job fails into
/// its retries with the cause named, or dies at once with `retry: 0`, and the worker slot
/// goes on to the next job instead of waiting forever for Redis to change its mind.
#[tokio::test]
async fn a_bid_naming_a_key_of_another_type_fails_the_job_and_frees_its_slot() -> psychiq::Result<()>
{
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let callbacks = Callback::default();
    let () = ns
        .query(redis::cmd("SET").arg(ns.keys().key("batch:bS")).arg("x"))
        .await;
    let open = Batch::new("open")
        .push(
            &ns.client,
            vec![Job::new("Part", (0, false))?.queue("later")],
        )
        .await?;
    let with_bid = |bid: &str| {
        Job::new("Part", (1, false))
            .unwrap()
            .option("bid", Value::String(bid.to_string()))
    };
    ns.client.push(with_bid("bS")).await?;
    ns.client.push(with_bid(&format!("{open}:pending"))).await?;
    ns.client.push(with_bid("bS").retry(Retry::Max(0))).await?;
    ns.client.push(Job::new("Part", (2, false))?).await?;
    // One worker: a wedged slot would stop everything after it.
    let server = RunningServer::start(ns.config().concurrency(1), registry(&callbacks, &ns.client));
    wait_until(
        Duration::from_secs(10),
        "two retries and one death",
        || async {
            api.set_size(SetKind::Retry).await.unwrap() == 2
                && api.set_size(SetKind::Dead).await.unwrap() == 1
        },
    )
    .await;
    server.stop().await;
    let retries = api.set_page(SetKind::Retry, 0, 5).await?;
    for job in &retries {
        assert_eq!(job.error_class(), Some("Psychiq::BatchError"));
        let message = job.error_message().unwrap_or_default();
        assert!(message.contains("WRONGTYPE"), "{message}");
    }
    assert_eq!(api.queue_size("default").await?, 0, "the plain job ran");
    // Nothing is left in progress, and the real batch was not touched.
    let status = api.batch(&open).await?.unwrap();
    assert_eq!((status.total, status.pending, status.dead), (1, 1, 0));
    let hashes: Vec<String> = ns
        .query(redis::cmd("KEYS").arg(ns.keys().key("*inprogress*")))
        .await;
    for hash in hashes {
        let held: u64 = ns.query(redis::cmd("HLEN").arg(&hash)).await;
        assert_eq!(held, 0, "{hash}");
    }
    Ok(())
}
