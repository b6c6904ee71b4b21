//! The core engine against a real Redis: payloads, order, retries, dead set, scheduler,
//! stats and bad input. Each test has its own namespace.

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use common::*;
use psychiq::__private::decode_backtrace;
use psychiq::__private::{now_secs, timestamp_secs};
use psychiq::{Job, Retry};
use serde_json::{Value, json};

fn parse(raw: &str) -> serde_json::Map<String, Value> {
    serde_json::from_str(raw).expect("stored payloads are JSON objects")
}

#[tokio::test]
async fn enqueue_writes_sidekiqs_payload_and_keys() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let jid = ns
        .client
        .enqueue::<Record>(vec![
            json!(1),
            json!("two"),
            json!({"three": 3.0, "n": null}),
        ])
        .await
        .unwrap();
    let stored = ns.lrange(&ns.keys().queue("default")).await;
    assert_eq!(stored.len(), 1);
    let raw = &stored[0];
    let job = parse(raw);
    let keys: Vec<&str> = job.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "retry",
            "queue",
            "args",
            "class",
            "jid",
            "created_at",
            "enqueued_at"
        ]
    );
    assert_eq!(job["class"], "Record");
    assert_eq!(job["jid"], jid.as_str());
    assert_eq!(job["args"], json!([1, "two", {"three": 3.0, "n": null}]));
    assert!(
        raw.contains(r#""three":3.0"#),
        "floats keep their fraction: {raw}"
    );
    // Timestamps are floats written with a decimal point, never bare integers.
    for field in ["created_at", "enqueued_at"] {
        assert!(job[field].is_f64(), "{field} is a float");
        let text = raw.split(&format!("\"{field}\":")).nth(1).unwrap();
        let number: String = text
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        assert!(number.contains('.'), "{field} written as {number}");
    }
    let queues: Vec<String> = ns
        .query(redis::cmd("SMEMBERS").arg(ns.keys().queues()))
        .await;
    assert_eq!(queues, ["default"]);
    assert!(
        ns.keys()
            .queue("default")
            .starts_with(&format!("{}:queue:", ns.namespace))
    );
    Ok(())
}

#[tokio::test]
async fn jobs_run_in_fifo_order_with_their_arguments() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    for i in 0..30 {
        ns.client
            .push(Job::new("Record", (i, "ünï ✓ \u{202e}rtl"))?)
            .await?;
    }
    let record = Record::default();
    let server = RunningServer::start(ns.config().concurrency(1), registry_with(&record));
    wait_until(Duration::from_secs(10), "30 jobs", || async {
        record.count() == 30
    })
    .await;
    server.stop().await;
    let expected: Vec<Value> = (0..30).map(|i| json!([i, "ünï ✓ \u{202e}rtl"])).collect();
    assert_eq!(record.seen(), expected);
    Ok(())
}

/// Naps, then notes its id as finished; counts how many ran at once.
#[derive(Clone, Default)]
struct Tracked {
    finished: std::sync::Arc<std::sync::Mutex<HashSet<u64>>>,
    running: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most_running: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl psychiq::Worker for Tracked {
    type Args = (u64, u64);
    async fn perform(&self, (id, ms): (u64, u64)) -> psychiq::JobResult {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most_running.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.running.fetch_sub(1, SeqCst);
        self.finished.lock().unwrap().insert(id);
        Ok(())
    }
}

#[tokio::test]
async fn a_server_holds_no_more_than_its_concurrency_plus_the_prefetch() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let tracked = Tracked::default();
    // Mostly quick, so the whole prefetch is used, with naps, so workers free up while
    // fetches are in flight.
    let jobs: Vec<Job> = (0..300u64)
        .map(|i| Job::new("Tracked", (i, if i % 10 == 0 { 3 } else { 0 })).unwrap())
        .collect();
    ns.client.push_bulk(jobs).await?;
    let mut registry = psychiq::Registry::new();
    registry.register(tracked.clone());
    let server = RunningServer::start(ns.config().concurrency(3).prefetch(2), registry);
    let identity = ns.registered_identity().await;
    let list = ns.keys().inprogress(&identity, "default");
    let queue = ns.keys().queue("default");
    let mut most = 0;
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "jobs left behind: most unfinished held at once was {most}"
        );
        let (held, waiting): (Vec<String>, usize) = redis::pipe()
            .hvals(&list)
            .llen(&queue)
            .query_async(&mut ns.conn())
            .await
            .unwrap();
        // Held and not finished: fetched (running or waiting for a worker) and not yet
        // done. Finished jobs whose acknowledgement is still on its way are left out.
        let finished = tracked.finished.lock().unwrap().clone();
        let unfinished = held
            .iter()
            .map(|raw| {
                serde_json::from_str::<Value>(raw).unwrap()["args"][0]
                    .as_u64()
                    .unwrap()
            })
            .filter(|id| !finished.contains(id))
            .count();
        most = most.max(unfinished);
        if waiting == 0 && held.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.stop().await;
    assert_eq!(tracked.finished.lock().unwrap().len(), 300);
    assert!(
        most <= 5,
        "held {most} unfinished jobs at once with concurrency 3 and prefetch 2"
    );
    assert!(most >= 2, "the test saw the server work ({most} at most)");
    let ran = tracked
        .most_running
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=3).contains(&ran),
        "{ran} jobs ran at once with concurrency 3"
    );
    Ok(())
}

#[tokio::test]
async fn prefetched_jobs_go_back_to_their_queue_in_order_when_the_server_goes_quiet()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let tracked = Tracked::default();
    // One slow job runs; with prefetch 5 the next five wait for the only worker.
    let jobs: Vec<Job> = (0..11u64)
        .map(|i| Job::new("Tracked", (i, if i == 0 { 800 } else { 0 })).unwrap())
        .collect();
    ns.client.push_bulk(jobs).await?;
    let mut registry = psychiq::Registry::new();
    registry.register(tracked.clone());
    let handle = psychiq::Server::new(ns.config().concurrency(1).prefetch(5), registry)
        .start()
        .await?;
    let queue = ns.keys().queue("default");
    wait_until(Duration::from_secs(5), "the slow job to start", || async {
        handle.running().len() == 1
    })
    .await;
    let waiting: usize = ns.query(redis::cmd("LLEN").arg(&queue)).await;
    assert_eq!(
        waiting, 5,
        "six jobs were taken: one running, five prefetched"
    );
    handle.quiet();
    wait_until(Duration::from_secs(5), "the slow job to finish", || async {
        tracked.finished.lock().unwrap().contains(&0)
    })
    .await;
    handle.stop();
    handle.stopped().await;
    assert_eq!(
        tracked.finished.lock().unwrap().len(),
        1,
        "no prefetched job ran"
    );
    let left: Vec<String> = ns.lrange(&queue).await;
    // LRANGE lists from the head; jobs are popped from the tail, so reverse for run order.
    let order: Vec<u64> = left
        .iter()
        .rev()
        .map(|raw| {
            serde_json::from_str::<Value>(raw).unwrap()["args"][0]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        order,
        (1..=10).collect::<Vec<u64>>(),
        "back in the order they were taken"
    );
    let held: Vec<String> = ns
        .query(redis::cmd("KEYS").arg(format!("{}:inprogress:*", ns.namespace)))
        .await;
    assert!(
        held.is_empty(),
        "nothing left in the in-progress hash: {held:?}"
    );
    Ok(())
}

#[tokio::test]
async fn bulk_enqueue_returns_jids_in_order_across_batches() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let jids = ns
        .client
        .enqueue_bulk::<Record>((0..2_500).map(|i| vec![json!(i)]))
        .await
        .unwrap();
    assert_eq!(jids.len(), 2_500);
    assert_eq!(jids.iter().collect::<HashSet<_>>().len(), 2_500);
    let stored = ns.lrange(&ns.keys().queue("default")).await;
    // LPUSH puts the newest at the head: the tail is the first job.
    let first = parse(stored.last().unwrap());
    assert_eq!(first["jid"], jids[0].as_str());
    assert_eq!(first["args"], json!([0]));
    Ok(())
}

#[tokio::test]
async fn strict_queues_starve_lower_ones() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    for i in 0..20 {
        ns.client
            .push(Job::new("Record", ("low", i))?.queue("low"))
            .await?;
        ns.client
            .push(Job::new("Record", ("high", i))?.queue("high"))
            .await?;
    }
    let record = Record::default();
    let config = ns.config().concurrency(1).queue("high").queue("low");
    let server = RunningServer::start(config, registry_with(&record));
    wait_until(Duration::from_secs(10), "40 jobs", || async {
        record.count() == 40
    })
    .await;
    server.stop().await;
    let order: Vec<String> = record
        .seen()
        .iter()
        .map(|a| a[0].as_str().unwrap().to_string())
        .collect();
    assert!(order[..20].iter().all(|q| q == "high"), "{order:?}");
    Ok(())
}

#[tokio::test]
async fn weighted_queues_share_by_weight() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let heavy: Vec<Job> = (0..400)
        .map(|i| Job::new("Record", ("heavy", i)).unwrap().queue("heavy"))
        .collect();
    let light: Vec<Job> = (0..400)
        .map(|i| Job::new("Record", ("light", i)).unwrap().queue("light"))
        .collect();
    ns.client.push_bulk(heavy).await.unwrap();
    ns.client.push_bulk(light).await.unwrap();
    let record = Record::default();
    let config = ns
        .config()
        .concurrency(1)
        .weighted_queue("heavy", 3)
        .weighted_queue("light", 1);
    let server = RunningServer::start(config, registry_with(&record));
    wait_until(Duration::from_secs(20), "300 jobs", || async {
        record.count() >= 300
    })
    .await;
    server.stop().await;
    let first: Vec<Value> = record.seen().into_iter().take(300).collect();
    let heavy = first.iter().filter(|a| a[0] == "heavy").count();
    // P(heavy first) = 3/4: 225 expected; the bounds are over 6 standard deviations wide.
    assert!(
        (180..=270).contains(&heavy),
        "heavy jobs among the first 300: {heavy}"
    );
    Ok(())
}

#[tokio::test]
async fn failures_follow_sidekiqs_retry_rules_and_keep_unknown_keys() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let jid = ns
        .client
        .push(
            Job::new("Flaky", (7,))?
                .retry(Retry::Max(1))
                .option("tags", json!(["alpha"]))
                .option("bid", json!("b-123"))
                .option("retry_queue", json!("retries")),
        )
        .await?;
    let record = Record::default();
    let config = ns.config().queue("default").queue("retries");
    let server = RunningServer::start(config, registry_with(&record));
    let retry_key = ns.keys().retry();
    wait_until(Duration::from_secs(5), "first failure", || async {
        ns.zrange(&retry_key).await.len() == 1
    })
    .await;

    let first_raw = ns.zrange(&retry_key).await.remove(0);
    let first = parse(&first_raw);
    assert_eq!(first["jid"], jid.as_str());
    assert_eq!(first["error_class"], "PaymentDeclined");
    assert_eq!(first["error_message"], "declined [7]");
    assert_eq!(first["retry_count"], 0);
    assert_eq!(first["queue"], "retries");
    assert_eq!(first["tags"], json!(["alpha"]));
    assert_eq!(first["bid"], "b-123");
    assert!(first["failed_at"].is_f64() && first.get("retried_at").is_none());
    let backtrace = decode_backtrace(first["error_backtrace"].as_str().unwrap()).unwrap();
    assert_eq!(backtrace, ["src/billing.rs:10", "src/jobs.rs:42"]);
    let score: f64 = ns
        .query(redis::cmd("ZSCORE").arg(&retry_key).arg(&first_raw))
        .await;
    let failed_at = first["failed_at"].as_f64().unwrap();
    assert!(
        (failed_at + 15.0..=failed_at + 24.0).contains(&score),
        "retry at +{}",
        score - failed_at
    );

    // Make it due now; the poller moves it to `retries`, it fails again and, with
    // `retry: 1` exhausted, dies.
    let () = ns
        .query(redis::cmd("ZADD").arg(&retry_key).arg(0).arg(&first_raw))
        .await;
    let dead_key = ns.keys().dead();
    wait_until(Duration::from_secs(5), "death", || async {
        ns.zrange(&dead_key).await.len() == 1
    })
    .await;
    server.stop().await;
    let dead = parse(&ns.zrange(&dead_key).await[0]);
    assert_eq!(dead["retry_count"], 1);
    assert_eq!(dead["failed_at"], first["failed_at"]);
    assert!(dead["retried_at"].as_f64().unwrap() >= failed_at);
    assert!(
        dead["enqueued_at"].as_f64().unwrap() > first["enqueued_at"].as_f64().unwrap(),
        "re-enqueue stamps enqueued_at"
    );
    assert_eq!(dead["tags"], json!(["alpha"]));
    assert_eq!(dead["bid"], "b-123");
    assert!(ns.zrange(&retry_key).await.is_empty());
    Ok(())
}

#[tokio::test]
async fn retry_zero_dies_at_once_retry_false_is_dropped_and_both_count() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    ns.client
        .push(Job::new("Flaky", ("zero",))?.retry(Retry::Max(0)))
        .await?;
    ns.client
        .push(Job::new("Flaky", ("off",))?.retry(Retry::Off))
        .await?;
    ns.client.push(Job::new("Record", ("ok",))?).await?;
    let record = Record::default();
    let server = RunningServer::start(ns.config(), registry_with(&record));
    let dead_key = ns.keys().dead();
    wait_until(Duration::from_secs(5), "the dead job", || async {
        ns.zrange(&dead_key).await.len() == 1
    })
    .await;
    wait_until(Duration::from_secs(5), "the good job", || async {
        record.count() == 1
    })
    .await;
    server.stop().await;
    let dead = ns.zrange(&dead_key).await;
    assert_eq!(parse(&dead[0])["args"], json!(["zero"]));
    assert!(ns.zrange(&ns.keys().retry()).await.is_empty());
    assert!(ns.lrange(&ns.keys().queue("default")).await.is_empty());
    // Flushed at shutdown: every run counts as processed, both failures as failed.
    assert_eq!(ns.get_u64(&ns.keys().stat("processed")).await, 3);
    assert_eq!(ns.get_u64(&ns.keys().stat("failed")).await, 2);
    let today = psychiq::__private::utc_date(SystemTime::now());
    assert_eq!(
        ns.get_u64(&ns.keys().stat_daily("processed", &today)).await,
        3
    );
    assert_eq!(ns.get_u64(&ns.keys().stat_daily("failed", &today)).await, 2);
    let ttl: i64 = ns
        .query(redis::cmd("TTL").arg(ns.keys().stat_daily("processed", &today)))
        .await;
    assert!(ttl > psychiq::__private::STATS_TTL_SECS - 60, "ttl {ttl}");
    Ok(())
}

#[tokio::test]
async fn dead_set_is_trimmed_to_180_days_and_under_10000_jobs() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let dead_key = ns.keys().dead();
    let now = now_secs();
    let mut pipe = redis::pipe();
    pipe.zadd(&dead_key, "ancient", now - 181.0 * 86_400.0)
        .ignore();
    for i in 0..10_000 {
        pipe.zadd(
            &dead_key,
            format!("old-{i}"),
            now - 1_000.0 + i as f64 * 0.01,
        )
        .ignore();
    }
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();
    ns.client
        .push(Job::new("Flaky", ("newest",))?.retry(Retry::Max(0)))
        .await?;
    let record = Record::default();
    let server = RunningServer::start(ns.config(), registry_with(&record));
    wait_until(Duration::from_secs(5), "the newest death", || async {
        let top: Vec<String> = ns
            .query(redis::cmd("ZRANGE").arg(&dead_key).arg(-1).arg(-1))
            .await;
        top.first().is_some_and(|j| j.contains("newest"))
    })
    .await;
    server.stop().await;
    let size: usize = ns.query(redis::cmd("ZCARD").arg(&dead_key)).await;
    assert_eq!(size, 9_999, "Sidekiq's trim keeps at most 9,999");
    let ancient: Option<f64> = ns
        .query(redis::cmd("ZSCORE").arg(&dead_key).arg("ancient"))
        .await;
    assert_eq!(ancient, None);
    Ok(())
}

#[tokio::test]
async fn scheduler_moves_each_due_job_once_when_pollers_race() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let keys = ns.keys();
    let now = now_secs();
    let mut pipe = redis::pipe();
    for i in 0..1_000 {
        let raw = format!(
            r#"{{"retry":true,"queue":"default","args":[{i}],"class":"Record","jid":"j{i}","created_at":{now:?}}}"#
        );
        pipe.zadd(keys.schedule(), raw, now - 1.0).ignore();
    }
    // A Sidekiq 8 retry entry (integer milliseconds) and a member that is not JSON.
    pipe.zadd(keys.retry(), r#"{"queue":"default","class":"Record","args":["ms"],"jid":"ms","created_at":1795714853365,"enqueued_at":1795714853365,"retry_count":0}"#, now - 1.0).ignore();
    pipe.zadd(keys.schedule(), "{broken", now - 1.0).ignore();
    // Not due yet: stays.
    pipe.zadd(
        keys.schedule(),
        r#"{"class":"Record","args":["later"]}"#,
        now + 3_600.0,
    )
    .ignore();
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();

    let mut racers = Vec::new();
    for _ in 0..4 {
        let mut conn = ns.redis.connect().await.unwrap();
        let keys = keys.clone();
        racers.push(tokio::spawn(async move {
            psychiq::__private::enqueue_due(&mut conn, &keys)
                .await
                .unwrap()
        }));
    }
    let mut moved = 0;
    for racer in racers {
        moved += racer.await.unwrap();
    }
    assert_eq!(moved, 1_002);
    let queued = ns.lrange(&keys.queue("default")).await;
    assert_eq!(queued.len(), 1_001);
    let jids: HashSet<String> = queued
        .iter()
        .map(|raw| parse(raw)["jid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(jids.len(), 1_001, "no job enqueued twice");
    for raw in &queued {
        let job = parse(raw);
        let enqueued = timestamp_secs(&job["enqueued_at"]).unwrap();
        assert!(
            enqueued >= now - 1.0 && job["enqueued_at"].is_f64(),
            "{raw}"
        );
        if job["jid"] == "ms" {
            assert_eq!(
                job["created_at"],
                json!(1795714853365u64),
                "Sidekiq 8 fields are left as written"
            );
            assert_eq!(timestamp_secs(&job["created_at"]), Some(1_795_714_853.365));
        }
    }
    let dead = ns.zrange(&keys.dead()).await;
    assert_eq!(dead.len(), 1);
    let dead = parse(&dead[0]);
    assert_eq!(dead["args"], json!(["{broken"]));
    assert!(dead["error_message"].as_str().unwrap().contains("not JSON"));
    let left: usize = ns.query(redis::cmd("ZCARD").arg(keys.schedule())).await;
    assert_eq!(left, 1);
    Ok(())
}

#[tokio::test]
async fn two_servers_run_each_scheduled_job_once_and_on_time() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let at = SystemTime::now() + Duration::from_secs(1);
    let jobs: Vec<Job> = (0..200)
        .map(|i| Job::new("Record", (i,)).unwrap().at(at))
        .collect();
    ns.client.push_bulk(jobs).await?;
    let (a, b) = (Record::default(), Record::default());
    let server_a = RunningServer::start(ns.config(), registry_with(&a));
    let server_b = RunningServer::start(ns.config(), registry_with(&b));
    // Generous bound: the poll interval here is 0.2 s, the point is "not seconds late".
    wait_until(Duration::from_secs(6), "200 scheduled jobs", || async {
        a.count() + b.count() >= 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server_a.stop().await;
    server_b.stop().await;
    let mut all: Vec<i64> = a
        .seen()
        .iter()
        .chain(b.seen().iter())
        .map(|args| args[0].as_i64().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (0..200).collect::<Vec<_>>(), "each job exactly once");
    Ok(())
}

#[tokio::test]
async fn bad_input_is_reported_never_dropped_and_never_stops_the_server() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let bad = [
        "this is not json",
        r#"["Record", []]"#,
        r#"{"args":[1],"jid":"noclass"}"#,
        r#"{"class":"Record","jid":"noargs"}"#,
        r#"{"class":"Typed","args":["not a number"],"jid":"shape","retry":true}"#,
    ];
    for (i, raw) in bad.iter().enumerate() {
        ns.client.push(Job::new("Record", ("good", i))?).await?;
        ns.lpush_raw("default", raw).await;
    }
    ns.client
        .push(Job::new("Billing::Unknown", (1,))?.jid("unknown"))
        .await?;
    ns.client
        .push(Job::new("Panicky", ())?.jid("panic"))
        .await?;
    ns.client
        .push(Job::new("Record", ("good", "last"))?)
        .await?;

    let record = Record::default();
    let server = RunningServer::start(ns.config(), registry_with(&record));
    let (dead_key, retry_key) = (ns.keys().dead(), ns.keys().retry());
    wait_until(Duration::from_secs(5), "every job handled", || async {
        record.count() == 6
            && ns.zrange(&dead_key).await.len() == 5
            && ns.zrange(&retry_key).await.len() == 2
    })
    .await;
    server.stop().await;

    let dead: Vec<_> = ns
        .zrange(&dead_key)
        .await
        .iter()
        .map(|r| parse(r))
        .collect();
    let find = |pred: &dyn Fn(&serde_json::Map<String, Value>) -> bool| {
        dead.iter().find(|j| pred(j)).cloned().expect("dead entry")
    };
    let not_json = find(&|j| j["args"] == json!(["this is not json"]));
    assert_eq!(not_json["error_class"], "Psychiq::InvalidPayload");
    assert!(
        not_json["error_message"]
            .as_str()
            .unwrap()
            .contains("not a JSON object")
    );
    let array = find(&|j| j["args"] == json!([r#"["Record", []]"#]));
    assert_eq!(array["error_class"], "Psychiq::InvalidPayload");
    let no_class = find(&|j| j["jid"] == "noclass");
    assert!(
        no_class["error_message"]
            .as_str()
            .unwrap()
            .contains("no \"class\"")
    );
    let no_args = find(&|j| j["jid"] == "noargs");
    assert!(
        no_args["error_message"]
            .as_str()
            .unwrap()
            .contains("no \"args\"")
    );
    let shape = find(&|j| j["jid"] == "shape");
    assert_eq!(shape["error_class"], "Psychiq::InvalidArguments");
    assert!(
        shape["error_message"].as_str().unwrap().contains("Typed"),
        "{}",
        shape["error_message"]
    );

    let retries: Vec<_> = ns
        .zrange(&retry_key)
        .await
        .iter()
        .map(|r| parse(r))
        .collect();
    let unknown = retries.iter().find(|j| j["jid"] == "unknown").unwrap();
    assert_eq!(unknown["error_class"], "Psychiq::UnknownClass");
    assert!(
        unknown["error_message"]
            .as_str()
            .unwrap()
            .contains("Billing::Unknown")
    );
    let panic = retries.iter().find(|j| j["jid"] == "panic").unwrap();
    assert_eq!(panic["error_class"], "Panic");
    assert_eq!(panic["error_message"], "worker exploded");
    Ok(())
}

#[tokio::test]
async fn unreachable_redis_is_one_clear_error() -> psychiq::Result<()> {
    let redis = psychiq::RedisConfig::from_parts("127.0.0.1", 1, None);
    let err = psychiq::Client::connect(&redis, "x")
        .await
        .err()
        .expect("nothing listens on port 1");
    let message = err.to_string();
    assert!(message.contains("redis://127.0.0.1:1"), "{message}");
    assert!(
        message.contains("Check that redis-server is running"),
        "{message}"
    );
    // `fn main() -> psychiq::Result<()>` prints Debug: the same sentence, not a struct dump.
    assert_eq!(format!("{err:?}"), message);
    let config = psychiq::ServerConfig::default().redis(redis);
    let result = psychiq::Server::new(config, psychiq::Registry::new())
        .run_until(std::future::pending())
        .await;
    assert!(result.is_err());
    Ok(())
}

/// Fails; asks for a 100 s delay and counts `retries_exhausted` calls. Class name `Hooked`.
#[derive(Clone, Default)]
struct Hooked {
    exhausted: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl psychiq::Worker for Hooked {
    type Args = Vec<Value>;
    async fn perform(&self, _: Vec<Value>) -> psychiq::JobResult {
        Err(psychiq::JobError::msg("always"))
    }
    fn retry_in(&self, count: u32, _: &psychiq::JobError) -> Option<Duration> {
        Some(Duration::from_secs(100 * (u64::from(count) + 1)))
    }
    fn retries_exhausted(&self, job: &psychiq::JobMap, error: &psychiq::JobError) {
        let jid = job["jid"].as_str().unwrap_or_default();
        self.exhausted
            .lock()
            .unwrap()
            .push(format!("{jid}: {}", error.message()));
    }
}

#[tokio::test]
async fn worker_hooks_set_the_delay_and_see_exhaustion() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    ns.client.push(Job::new("Hooked", ())?.jid("later")).await?;
    ns.client
        .push(Job::new("Hooked", ())?.jid("dies").retry(Retry::Max(0)))
        .await?;
    let hooked = Hooked::default();
    let mut registry = registry_with(&Record::default());
    registry.register(hooked.clone());
    let server = RunningServer::start(ns.config(), registry);
    let (retry_key, dead_key) = (ns.keys().retry(), ns.keys().dead());
    wait_until(
        Duration::from_secs(5),
        "one retry and one death",
        || async {
            ns.zrange(&retry_key).await.len() == 1 && ns.zrange(&dead_key).await.len() == 1
        },
    )
    .await;
    server.stop().await;
    let raw = ns.zrange(&retry_key).await.remove(0);
    let score: f64 = ns
        .query(redis::cmd("ZSCORE").arg(&retry_key).arg(&raw))
        .await;
    let failed_at = parse(&raw)["failed_at"].as_f64().unwrap();
    // retry_in's 100 s replaces count^4 + 15 and its jitter: exactly 100 s.
    assert!(
        (score - failed_at - 100.0).abs() < 0.01,
        "delay {}",
        score - failed_at
    );
    assert_eq!(*hooked.exhausted.lock().unwrap(), ["dies: always"]);
    Ok(())
}

/// What Sidekiq's client refuses is refused here too, before anything is written.
#[tokio::test]
async fn pushes_sidekiq_refuses_are_refused_with_what_to_do() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let refused = [
        (Job::new("X", ())?.queue(""), "empty queue"),
        (
            Job::new("X", ())?.option("tags", serde_json::json!("q4")),
            "tags must be a list",
        ),
        (
            Job::new("X", ())?.option("retry_for", serde_json::json!(2e9)),
            "retry_for must be",
        ),
        (
            Job::new("X", ())?.option("retry_for", serde_json::json!("1h")),
            "retry_for must be",
        ),
    ];
    for (job, says) in refused {
        let error = ns.client.push(job).await.unwrap_err().to_string();
        assert!(error.contains(says), "{error}");
    }
    assert!(ns.lrange(&ns.keys().queue("default")).await.is_empty());
    ns.client
        .push(
            Job::new("X", ())?
                .option("retry_for", serde_json::json!(3600))
                .option("tags", serde_json::json!(["q4"])),
        )
        .await?;
    Ok(())
}

/// A fetch names 64 queues a call and looks further only when those were empty: a server
/// reading 150 queues finds jobs in its last ones, in strict order.
#[tokio::test]
async fn a_server_reading_more_queues_than_one_fetch_names_finds_the_last_ones()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let jobs: Vec<Job> = (0..6)
        .map(|i| {
            let queue = if i < 3 { "q149" } else { "q100" };
            Job::new("Record", (queue, i)).unwrap().queue(queue)
        })
        .collect();
    ns.client.push_bulk(jobs).await?;
    let record = Record::default();
    let mut config = ns.config().concurrency(1);
    for q in 0..150 {
        config = config.queue(format!("q{q}"));
    }
    let server = RunningServer::start(config, registry_with(&record));
    wait_until(Duration::from_secs(10), "six jobs", || async {
        record.count() >= 6
    })
    .await;
    server.stop().await;
    let seen: Vec<String> = record
        .seen()
        .iter()
        .map(|a| a[0].as_str().unwrap().to_string())
        .collect();
    // Strict order: q100's (the earlier window) before q149's.
    assert_eq!(seen, ["q100", "q100", "q100", "q149", "q149", "q149"]);
    Ok(())
}
