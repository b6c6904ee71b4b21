//! Reliable push: pushes that cannot reach Redis are kept (in memory and in a journal) and
//! pushed in order, each once, when it is back, across a `kill -9` of the pushing app.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use psychiq::{Client, Job, Push, RedisConfig, ReliablePush};

const CHILD_ENV: &str = "PSYCHIQ_SPOOL_CHILD";
const TOTAL: usize = 10_000;
const BULK: usize = 10;

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("psychiq-spool-{}", psychiq::__private::new_jid()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How many jobs the app says it has pushed (its progress file, a line per bulk).
fn progress(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count() * BULK)
        .unwrap_or(0)
}

/// Not a test on its own: the pushing app of the crash test, run by it as a child
/// process. It pushes jobs `job-00000` to `job-09999` in bulks of ten (every seventh bulk
/// scheduled a minute ahead) with reliable push on a journal, from where its last run
/// left off, then waits until everything is in Redis.
#[tokio::test]
async fn spool_child_app() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (url, namespace, dir, done_file) = (parts[0], parts[1], parts[2], Path::new(parts[3]));
    let config = RedisConfig::from_url(url.to_string()).unwrap();
    // Started again during the outage, it must start without Redis.
    let mut client = Client::connect_lazily(&config, namespace).await.unwrap();
    client.reliable_push(ReliablePush::journal(dir)).unwrap();
    let mut done = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(done_file)
        .unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(60);
    for bulk in progress(done_file) / BULK..TOTAL / BULK {
        let jobs: Vec<Job> = (bulk * BULK..(bulk + 1) * BULK)
            .map(|n| {
                let job = Job::new("Count", (n,)).unwrap().jid(format!("job-{n:05}"));
                if bulk % 7 == 0 { job.at(later) } else { job }
            })
            .collect();
        let pushes = client.try_push_bulk(jobs).await.unwrap();
        assert!(
            pushes
                .iter()
                .all(|p| matches!(p, Push::Pushed(_) | Push::Buffered(_))),
            "{pushes:?}"
        );
        writeln!(done, "{bulk}").unwrap();
        // An app doing other work between pushes (and time for the test to act).
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    client.flush_spool(Duration::from_secs(90)).await.unwrap();
}

fn start_app(redis: &OwnRedis, namespace: &str, dir: &Path, done: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["spool_child_app", "--exact", "--nocapture"])
        .env(
            CHILD_ENV,
            format!(
                "{}|{namespace}|{}|{}",
                redis.url(),
                dir.display(),
                done.display()
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_pushes_survive_a_redis_outage_and_a_kill_9_of_the_app() {
    // AOF fsynced each second, not each write: a clean shutdown still writes it all, and
    // the other tests running beside this one are spared a storm of fsyncs.
    let mut redis = OwnRedis::start_with(&["--appendfsync", "everysec"]);
    let namespace = format!("spool-{}", psychiq::__private::new_jid());
    let dir = tempdir();
    let done = dir.join("progress");
    let journals = dir.join("journals");
    let mut first = start_app(&redis, &namespace, &journals, &done);
    wait_for("2,000 pushes", Duration::from_secs(60), || {
        progress(&done) >= 2_000
    });
    // Redis goes away for 30 s; the app goes on pushing into its journal.
    redis.stop();
    let outage = Instant::now();
    wait_for("5,000 pushes", Duration::from_secs(60), || {
        progress(&done) >= 5_000
    });
    // The app dies in the middle of the outage, and is started again.
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = progress(&done);
    assert!(at_kill < TOTAL, "the app had finished before the kill");
    eprintln!(
        "killed after {at_kill} pushes, {:.1} s into the outage",
        outage.elapsed().as_secs_f64()
    );
    let mut second = start_app(&redis, &namespace, &journals, &done);
    wait_for("a few more pushes", Duration::from_secs(60), || {
        progress(&done) >= at_kill + 500
    });
    std::thread::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed()));
    redis.launch();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the app did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the app failed: {status}");

    // Every job once: in the queue, or in the schedule for the scheduled bulks.
    let ns = TestNs::on(&redis.url()).await;
    let keys = psychiq::Keys::new(&namespace);
    let mut jids: Vec<String> = Vec::new();
    let queued: Vec<String> = ns
        .query(
            redis::cmd("LRANGE")
                .arg(keys.queue("default"))
                .arg(0)
                .arg(-1),
        )
        .await;
    let scheduled: Vec<String> = ns
        .query(redis::cmd("ZRANGE").arg(keys.schedule()).arg(0).arg(-1))
        .await;
    for payload in queued.iter().chain(&scheduled) {
        let value: serde_json::Value = serde_json::from_str(payload).unwrap();
        jids.push(value["jid"].as_str().unwrap().to_string());
    }
    let total = jids.len();
    jids.sort();
    jids.dedup();
    assert_eq!(
        total,
        jids.len(),
        "{} jobs arrived twice",
        total - jids.len()
    );
    let expected: Vec<String> = (0..TOTAL).map(|n| format!("job-{n:05}")).collect();
    assert_eq!(jids, expected);
    assert_eq!(scheduled.len(), (TOTAL / BULK).div_ceil(7) * BULK);
    // Nothing is left to push.
    let output = psychiq()
        .args(["spool", "status"])
        .arg(&journals)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("nothing waits") || !said.contains("left by"),
        "{said}"
    );
}

#[tokio::test]
async fn a_journal_left_behind_is_pushed_by_the_cli_and_unique_jobs_are_not_kept() {
    let mut redis = OwnRedis::start();
    let ns = TestNs::on(&redis.url()).await;
    let dir = tempdir();
    redis.stop();
    let config = RedisConfig::from_url(redis.url()).unwrap();
    // Connected while Redis was up: the client exists, then Redis goes.
    redis.launch();
    let mut client = Client::connect(&config, &ns.namespace).await.unwrap();
    client.reliable_push(ReliablePush::journal(&dir)).unwrap();
    redis.stop();
    let kept = client
        .try_push(Job::new("Mail", ("a",)).unwrap())
        .await
        .unwrap();
    assert!(matches!(kept, Push::Buffered(_)), "{kept:?}");
    let jids = client
        .push_bulk(vec![
            Job::new("Mail", ("b",)).unwrap(),
            Job::new("Mail", ("c",))
                .unwrap()
                .at(std::time::SystemTime::now() + Duration::from_secs(60)),
        ])
        .await
        .unwrap();
    assert_eq!(jids.len(), 2);
    let unique = client
        .push(
            Job::new("Mail", ("d",))
                .unwrap()
                .unique_for(Duration::from_secs(60)),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(unique.contains("unique"), "{unique}");
    assert_eq!(client.spool_status().unwrap().jobs, 3);
    let status = psychiq()
        .args(["spool", "status"])
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("3 jobs") && said.contains("in use"), "{said}");
    // The app stops while Redis is away: its journal stays, nobody holds it.
    drop(client);
    let status = psychiq()
        .args(["spool", "status"])
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("left by"), "{said}");
    // Without Redis, pushing it fails and keeps it.
    let failed = psychiq()
        .args(["spool", "push", "--wait", "1", "--redis-url", &redis.url()])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!failed.status.success());
    redis.launch();
    let pushed = psychiq()
        .args([
            "spool",
            "push",
            "--redis-url",
            &redis.url(),
            "-n",
            &ns.namespace,
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let queued = ns.lrange(&ns.keys().queue("default")).await;
    let scheduled = ns.zrange(&ns.keys().schedule()).await;
    assert_eq!((queued.len(), scheduled.len()), (2, 1), "{queued:?}");
    // In order: a before b.
    assert!(queued[1].contains("\"a\"") && queued[0].contains("\"b\""));
}
