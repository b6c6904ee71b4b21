//! Nothing lost: real server processes killed with SIGKILL, a job that aborts every process
//! that runs it, killed Redis connections and a Redis restart.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use psychiq::Job;
use serde_json::Value;

/// Echo lines written so far: (total lines, distinct ids).
fn echo_ids(path: &Path) -> (usize, HashSet<i64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut total = 0;
    let mut ids = HashSet::new();
    // A last line without its newline is still being written (a line across a page
    // boundary lands in two steps): it is read next time.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let args: Value = serde_json::from_str(line).expect("whole lines only");
        total += 1;
        ids.insert(args[1].as_i64().unwrap());
    }
    (total, ids)
}

/// How many jobs the namespace's in-progress stores hold (hashes; lists of an earlier
/// Psychiq that a test planted).
async fn inprogress(ns: &TestNs) -> usize {
    let pattern = format!("{}:inprogress:*", ns.namespace);
    let keys: Vec<String> = ns.query(redis::cmd("KEYS").arg(&pattern)).await;
    let mut total = 0;
    for key in keys {
        let kind: String = ns.query(redis::cmd("TYPE").arg(&key)).await;
        let len: usize = match kind.as_str() {
            "list" => ns.query(redis::cmd("LLEN").arg(&key)).await,
            _ => ns.query(redis::cmd("HLEN").arg(&key)).await,
        };
        total += len;
    }
    total
}

async fn push_echo_jobs(
    ns: &TestNs,
    path: &str,
    count: i64,
    sleep_every: i64,
) -> psychiq::Result<()> {
    let mut jobs = Vec::new();
    for i in 0..count {
        jobs.push(Job::new("Echo", (path, i))?);
        if i % sleep_every == 0 {
            jobs.push(Job::new("Sleep", (20,))?);
        }
    }
    ns.client.push_bulk(jobs).await?;
    Ok(())
}

async fn drained(ns: &TestNs) -> bool {
    ns.lrange(&ns.keys().queue("default")).await.is_empty() && inprogress(ns).await == 0
}

#[tokio::test]
async fn kill_9_mid_drain_loses_nothing() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let out = std::env::temp_dir().join(format!("{}-echo.jsonl", ns.namespace));
    let path = out.to_string_lossy().to_string();
    const JOBS: i64 = 20_000;
    push_echo_jobs(&ns, &path, JOBS, 50).await?;

    let args = ["-s", "demo", "-c", "10"];
    let mut server = Spawned::start(&ns, &args);
    let mut in_flight_at_kills = 0;
    let mut recovery_ms = Vec::new();
    for kill in 1..=3 {
        let target = kill * 4_000;
        wait_until(
            Duration::from_secs(60),
            "progress before a kill",
            || async { echo_ids(&out).0 >= target },
        )
        .await;
        let owners: Vec<String> = ns
            .query(redis::cmd("SMEMBERS").arg(ns.keys().inprogress_owners()))
            .await;
        assert_eq!(owners.len(), 1);
        let dead_owner = owners[0].clone();
        server.kill9();
        // The process is gone: what its hashes hold now is exactly what was in flight
        // (running and prefetched).
        let in_flight = inprogress(&ns).await;
        in_flight_at_kills += in_flight;
        let restarted = Instant::now();
        server = Spawned::start(&ns, &args);
        wait_until(
            Duration::from_secs(30),
            "recovery of the killed process's jobs",
            || async {
                let owners: Vec<String> = ns
                    .query(redis::cmd("SMEMBERS").arg(ns.keys().inprogress_owners()))
                    .await;
                owners.len() == 1 && owners[0] != dead_owner
            },
        )
        .await;
        recovery_ms.push(restarted.elapsed().as_millis());
        eprintln!(
            "kill {kill}: {in_flight} jobs in flight, recovered {} ms after the restart",
            recovery_ms.last().unwrap()
        );
    }
    wait_until(Duration::from_secs(120), "the drain to finish", || async {
        echo_ids(&out).1.len() == JOBS as usize && drained(&ns).await
    })
    .await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);

    let (lines, ids) = echo_ids(&out);
    let _ = std::fs::remove_file(&out);
    assert_eq!(
        ids.len(),
        JOBS as usize,
        "every job performed at least once"
    );
    let duplicates = lines - JOBS as usize;
    eprintln!(
        "crash test: {JOBS} Echo jobs (+{} Sleep), 3 kills, lost 0, duplicates {duplicates}, in flight at the kills {in_flight_at_kills}, recovery after restart {recovery_ms:?} ms",
        JOBS / 50
    );
    assert!(
        duplicates <= in_flight_at_kills,
        "{duplicates} duplicates > {in_flight_at_kills} jobs in flight at the kills"
    );
    assert!(ns.zrange(&ns.keys().retry()).await.is_empty());
    assert!(ns.zrange(&ns.keys().dead()).await.is_empty());
    assert!(drained(&ns).await);
    Ok(())
}

#[tokio::test]
async fn a_job_that_kills_every_process_dies_after_three_recoveries() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let out = std::env::temp_dir().join(format!("{}-echo.jsonl", ns.namespace));
    let path = out.to_string_lossy().to_string();
    let poison = ns.client.push(Job::new("Abort", ("boom",))?).await?;
    push_echo_jobs(&ns, &path, 200, 1_000).await?;

    let dead_key = ns.keys().dead();
    let mut crashes = 0;
    for _ in 0..6 {
        let mut server = Spawned::start(&ns, &["-s", "demo", "-c", "5"]);
        let started = Instant::now();
        loop {
            if let Some(status) = server.wait_status(Duration::from_millis(100)) {
                assert_eq!(status, None, "only an abort ends this server");
                crashes += 1;
                break;
            }
            if ns.zrange(&dead_key).await.len() == 1
                && echo_ids(&out).1.len() == 200
                && drained(&ns).await
            {
                server.signal("TERM");
                assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "stuck; log:\n{}",
                server.log_text()
            );
        }
        if ns.zrange(&dead_key).await.len() == 1 && echo_ids(&out).1.len() == 200 {
            break;
        }
    }
    let _ = std::fs::remove_file(&out);
    assert_eq!(
        crashes, 3,
        "the poison job took three processes down, no more"
    );
    let dead = ns.zrange(&dead_key).await;
    assert_eq!(dead.len(), 1, "only the poison job is dead: {dead:?}");
    let job: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(job["jid"], poison.as_str());
    assert_eq!(job["error_class"], "Psychiq::ProcessCrashed");
    assert!(
        job["error_message"]
            .as_str()
            .unwrap()
            .contains("recovered 3 times from crashed processes")
    );
    Ok(())
}

#[tokio::test]
async fn killed_connections_and_a_redis_restart_lose_nothing() -> psychiq::Result<()> {
    let mut redis = OwnRedis::start();
    let ns = TestNs::on(&redis.url()).await;
    let out = std::env::temp_dir().join(format!("{}-echo.jsonl", ns.namespace));
    let path = out.to_string_lossy().to_string();
    const JOBS: i64 = 5_000;
    push_echo_jobs(&ns, &path, JOBS, 20).await?;
    let mut server = Spawned::start(&ns, &["-s", "demo", "-c", "10"]);

    wait_until(Duration::from_secs(30), "a first part done", || async {
        echo_ids(&out).0 >= 1_000
    })
    .await;
    let killed = redis.cli(&["client", "kill", "type", "normal"]);
    eprintln!("killed {} connections", killed.trim());
    wait_until(
        Duration::from_secs(30),
        "more done after the kill",
        || async { echo_ids(&out).0 >= 2_500 },
    )
    .await;

    redis.stop();
    // While Redis is down an enqueue fails with an error, within bounded time.
    let started = Instant::now();
    let err = ns
        .client
        .push(Job::new("Noop", ())?)
        .await
        .expect_err("Redis is down");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "enqueue gave up after {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("Redis at"), "{err}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.launch();

    wait_until(Duration::from_secs(60), "the drain to finish", || async {
        echo_ids(&out).1.len() == JOBS as usize && drained(&ns).await
    })
    .await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), 0);
    let log = server.log_text();
    assert!(log.contains("Cannot reach Redis"), "the outage is logged");
    assert!(log.contains("Redis is back"), "and the recovery");
    let (lines, ids) = echo_ids(&out);
    let _ = std::fs::remove_file(&out);
    assert_eq!(ids.len(), JOBS as usize, "nothing lost");
    eprintln!(
        "redis faults: {JOBS} jobs, lost 0, duplicates {}",
        lines - JOBS as usize
    );
    // Counters that could not be written during the outage were kept and written later.
    let processed = ns.get_u64(&ns.keys().stat("processed")).await;
    assert!(
        processed >= (JOBS + JOBS / 20) as u64,
        "processed {processed}"
    );
    Ok(())
}

#[tokio::test]
async fn job_timeouts_cancel_the_job_and_follow_the_retry_rules() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    ns.client
        .push(Job::new("Sleep", (10_000,))?.jid("slow"))
        .await?;
    ns.client
        .push(Job::new("Sleep", (10,))?.jid("fast"))
        .await?;
    let mut server = Spawned::start(&ns, &["-s", "demo", "--job-timeout", "0.5"]);
    let retry_key = ns.keys().retry();
    wait_until(Duration::from_secs(10), "the timeout", || async {
        ns.zrange(&retry_key).await.len() == 1
    })
    .await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
    let job: Value = serde_json::from_str(&ns.zrange(&retry_key).await[0]).unwrap();
    assert_eq!(job["jid"], "slow");
    assert_eq!(job["error_class"], "Psychiq::JobTimeout");
    assert_eq!(ns.get_u64(&ns.keys().stat("processed")).await, 2);
    Ok(())
}

#[tokio::test]
async fn live_servers_recover_an_expired_process_once_and_leave_live_ones_alone()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let keys = ns.keys();
    let (gone, alive) = (
        "far-away-host:42:0123456789ab",
        "other-live-host:7:ba9876543210",
    );
    let mut pipe = redis::pipe();
    for (owner, label) in [(gone, "orphan"), (alive, "busy elsewhere")] {
        pipe.sadd(keys.inprogress_owners(), owner).ignore();
        for i in 0..3 {
            let raw = format!(
                r#"{{"retry":true,"queue":"default","class":"Record","args":["{label}",{i}],"jid":"{label}-{i}"}}"#
            );
            pipe.lpush(keys.inprogress(owner, "default"), raw).ignore();
        }
    }
    // Only the live one has a heartbeat.
    pipe.hset(keys.key(alive), "info", "{}").ignore();
    pipe.expire(keys.key(alive), 60).ignore();
    let () = pipe.query_async(&mut ns.conn()).await.unwrap();

    let (a, b) = (Record::default(), Record::default());
    let server_a = RunningServer::start(ns.config(), registry_with(&a));
    let server_b = RunningServer::start(ns.config(), registry_with(&b));
    wait_until(Duration::from_secs(15), "the orphan's jobs", || async {
        a.count() + b.count() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    server_a.stop().await;
    server_b.stop().await;

    let mut seen: Vec<String> = a
        .seen()
        .iter()
        .chain(b.seen().iter())
        .map(|args| args.to_string())
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [r#"["orphan",0]"#, r#"["orphan",1]"#, r#"["orphan",2]"#],
        "each orphan job once, nothing else"
    );
    let left: Vec<String> = ns
        .query(
            redis::cmd("LRANGE")
                .arg(keys.inprogress(alive, "default"))
                .arg(0)
                .arg(-1),
        )
        .await;
    assert_eq!(left.len(), 3, "a live process's jobs stay where they are");
    let owners: Vec<String> = ns
        .query(redis::cmd("SMEMBERS").arg(keys.inprogress_owners()))
        .await;
    assert!(!owners.iter().any(|o| o == gone));
    Ok(())
}

#[tokio::test]
async fn jobs_stranded_by_a_lost_fetch_reply_are_pushed_back() -> psychiq::Result<()> {
    // Its own Redis: CLIENT KILL must not touch anyone else's connections.
    let redis = OwnRedis::start();
    let ns = TestNs::on(&redis.url()).await;
    let record = Record::default();
    let server = RunningServer::start(ns.config(), registry_with(&record));
    let identity = ns.registered_identity().await;
    // As if Redis had moved this job for a fetch whose reply was then lost.
    let raw =
        r#"{"retry":true,"queue":"default","class":"Record","args":["stranded"],"jid":"stranded"}"#;
    let () = ns
        .query(
            redis::cmd("HSET")
                .arg(ns.keys().inprogress(&identity, "default"))
                .arg(1_000_000)
                .arg(raw),
        )
        .await;
    redis.cli(&["client", "kill", "type", "normal"]);
    wait_until(
        Duration::from_secs(15),
        "the stranded job to run",
        || async { record.count() == 1 },
    )
    .await;
    server.stop().await;
    assert_eq!(record.seen(), vec![serde_json::json!(["stranded"])]);
    Ok(())
}
