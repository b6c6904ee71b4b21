//! Periodic jobs (`src/extensions/periodic.rs`) against a real Redis and real server
//! processes: each tick enqueued once by several processes, on time, through a `kill -9`;
//! pause, resume, "enqueue now" and the listing; ticks missed while no server ran.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use psychiq::api::Api;
use psychiq::periodic::{Missed, PeriodicJob, Schedule};
use psychiq::{Job, Registry};
use serde_json::Value;

/// The jobs in queue `queue`, oldest first, as JSON.
async fn queued(ns: &TestNs, queue: &str) -> Vec<Value> {
    let mut jobs: Vec<Value> = ns
        .lrange(&ns.keys().queue(queue))
        .await
        .iter()
        .map(|raw| serde_json::from_str(raw).unwrap())
        .collect();
    jobs.reverse();
    jobs
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A TOML system in a directory of the test's own: a no-op worker, and an entry that
/// enqueues `Tick("hello")` each second into "ticks", a queue none of the servers serves,
/// so every enqueued tick stays to count.
fn ticking_system(ns: &TestNs, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{}-{name}", ns.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("system.toml");
    std::fs::write(
        &file,
        r#"
[workers.Noop]
command = ["true"]

[periodic."every-second"]
cron = "* * * * * *"
class = "Tick"
args = ["hello"]
queue = "ticks"
"#,
    )
    .unwrap();
    (dir, file)
}

#[test]
fn three_processes_enqueue_each_tick_once_on_time_through_a_kill_9() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ns = runtime.block_on(TestNs::new());
    let (dir, file) = ticking_system(&ns, "periodic");
    let args = ["-s", file.to_str().unwrap(), "-q", "default", "-c", "2"];
    let mut servers: Vec<Spawned> = (0..3).map(|_| Spawned::start(&ns, &args)).collect();
    let started = now_secs();
    std::thread::sleep(Duration::from_secs(10));
    // No process is special (no leader): the one killed is whichever came first.
    servers[0].kill9();
    let killed_at = now_secs();
    std::thread::sleep(Duration::from_secs(10));
    let ended = now_secs();
    for server in &servers[1..] {
        server.signal("TERM");
    }
    for server in &mut servers[1..] {
        assert_eq!(server.wait_exit(Duration::from_secs(15)), 0);
    }

    let jobs = runtime.block_on(queued(&ns, "ticks"));
    let mut per_tick: BTreeMap<i64, usize> = BTreeMap::new();
    let mut latest_lateness: f64 = 0.0;
    for job in &jobs {
        assert_eq!(job["class"], "Tick");
        assert_eq!(job["args"], serde_json::json!(["hello"]));
        assert_eq!(job["periodic"], "every-second");
        let tick = job["periodic_at"].as_i64().unwrap();
        *per_tick.entry(tick).or_default() += 1;
        let late = job["enqueued_at"].as_f64().unwrap() - tick as f64;
        assert!(
            (0.0..1.0).contains(&late),
            "tick {tick} enqueued {late:.3} s after it"
        );
        latest_lateness = latest_lateness.max(late);
    }
    let twice: Vec<_> = per_tick.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ticks enqueued more than once: {twice:?}");
    // From the first second all three run to the last second before the stop: no gap,
    // including around the kill.
    let first = *per_tick.keys().next().expect("some ticks");
    let last = *per_tick.keys().last().unwrap();
    assert!(
        first as f64 <= started + 3.0,
        "first tick {first}, started {started}"
    );
    assert!(
        last as f64 >= ended - 2.0,
        "last tick {last}, ended {ended}"
    );
    let missing: Vec<i64> = (first..=last)
        .filter(|t| !per_tick.contains_key(t))
        .collect();
    assert!(
        missing.is_empty(),
        "ticks missed: {missing:?} (killed at {killed_at:.1})"
    );
    assert!(per_tick.len() >= 17, "{} ticks in 20 s", per_tick.len());
    eprintln!(
        "{} ticks, each once; latest enqueued {:.0} ms after its tick",
        per_tick.len(),
        latest_lateness * 1000.0
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Periodic ticks follow Redis's clock, not a server's: a server an hour fast (faketime)
/// claims no tick early, so it neither enqueues the next hour's ticks now nor silences the
/// entry for the servers whose clocks are right; a server 30 s fast enqueues on time.
#[test]
fn a_server_whose_clock_is_wrong_claims_no_tick_early() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ns = runtime.block_on(TestNs::new());
    let (dir, file) = ticking_system(&ns, "clock");
    let args = ["-s", file.to_str().unwrap(), "-q", "default", "-c", "1"];
    let mut fast = Spawned::start_with_clock(&ns, &args, "+3600s");
    let mut ahead = Spawned::start_with_clock(&ns, &args, "+30s");
    std::thread::sleep(Duration::from_secs(4));
    fast.kill9();
    let mut right = Spawned::start(&ns, &args);
    std::thread::sleep(Duration::from_secs(4));
    let ended = now_secs();
    for server in [&mut ahead, &mut right] {
        server.signal("TERM");
        assert_eq!(server.wait_exit(Duration::from_secs(15)), 0);
    }
    let jobs = runtime.block_on(queued(&ns, "ticks"));
    let ticks: Vec<i64> = jobs
        .iter()
        .map(|job| job["periodic_at"].as_i64().unwrap())
        .collect();
    assert!(
        ticks.iter().all(|&tick| tick as f64 <= ended + 1.0),
        "ticks claimed early: {ticks:?} (ended {ended:.1})"
    );
    let mut unique = ticks.clone();
    unique.dedup();
    assert_eq!(unique, ticks, "each tick once, in order");
    assert!(
        ticks.iter().filter(|&&t| t as f64 >= ended - 3.0).count() >= 2,
        "the entry was silenced: {ticks:?} (ended {ended:.1})"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn every_second(name: &str, missed: Missed) -> PeriodicJob {
    PeriodicJob::new(
        name,
        Schedule::cron("* * * * * *").unwrap(),
        Job::new("Tick", (name,)).unwrap().queue("ticks"),
    )
    .unwrap()
    .missed(missed)
}

#[tokio::test]
async fn entries_are_listed_paused_resumed_and_run_now() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let record = Record::default();
    let mut registry = registry_with(&record);
    registry.periodic(every_second("pulse", Missed::Skip));
    let server = RunningServer::start(ns.config(), registry);
    wait_until(Duration::from_secs(5), "two ticks", || async {
        queued(&ns, "ticks").await.len() >= 2
    })
    .await;

    let entries = api.periodic_jobs().await?;
    assert_eq!(entries.len(), 1);
    let pulse = &entries[0];
    assert_eq!(
        (pulse.name.as_str(), pulse.cron.as_str()),
        ("pulse", "* * * * * *")
    );
    assert_eq!(
        (pulse.class.as_str(), pulse.queue.as_str()),
        ("Tick", "ticks")
    );
    assert!(pulse.is_live() && !pulse.paused);
    assert!(pulse.last_at.unwrap() < pulse.next_at.unwrap());

    // Paused: no server enqueues its ticks, even several seconds of them.
    assert!(api.pause_periodic("pulse").await?);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = queued(&ns, "ticks").await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        queued(&ns, "ticks").await.len(),
        before,
        "ticks while paused"
    );
    assert!(api.periodic_jobs().await?[0].paused);

    // "Enqueue now" works while paused, outside the schedule.
    let jid = api.run_periodic("pulse").await?;
    let jobs = queued(&ns, "ticks").await;
    let now = jobs.last().unwrap();
    assert_eq!(now["jid"], jid.as_str());
    assert_eq!(now["args"], serde_json::json!(["pulse"]));
    assert!(now.get("periodic_at").is_none());

    // Resumed: ticks again from the next one.
    assert!(api.resume_periodic("pulse").await?);
    let resumed = jobs.len();
    wait_until(Duration::from_secs(3), "a tick after resuming", || async {
        queued(&ns, "ticks").await.len() > resumed
    })
    .await;

    // Unknown names say how to list the known ones.
    let error = api.pause_periodic("nope").await.unwrap_err().to_string();
    assert!(error.contains("psychiq periodic list"), "{error}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_missed_tick_runs_once_at_start_only_when_asked() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    // Hourly at a minute half an hour from now: its last tick is far outside the grace a
    // starting server gives a tick it may have just missed.
    let minute = (now_secs() as i64 / 60 + 30) % 60;
    let cron = format!("{minute} * * * *");
    let hourly = |name: &str, missed| {
        PeriodicJob::new(
            name,
            Schedule::cron(&cron)
                .unwrap()
                .in_zone("Europe/Berlin")
                .unwrap(),
            Job::new("Tick", (name,)).unwrap().queue("ticks"),
        )
        .unwrap()
        .missed(missed)
    };
    // Servers last ran three hours ago; "fresh" has never ticked at all.
    let three_hours_ago = now_secs() as i64 - 3 * 3600;
    let last_key = ns.keys().key("periodic:last");
    for name in ["catch-up", "skipper"] {
        let () = ns
            .query(
                redis::cmd("HSET")
                    .arg(&last_key)
                    .arg(name)
                    .arg(three_hours_ago),
            )
            .await;
    }
    let mut registry = Registry::new();
    registry.merge(&registry_with(&Record::default()));
    registry.periodic(hourly("catch-up", Missed::RunLast));
    registry.periodic(hourly("skipper", Missed::Skip));
    registry.periodic(hourly("fresh", Missed::RunLast));
    // Two servers start at once: the missed tick still runs once.
    let servers = [
        RunningServer::start(ns.config(), registry.clone()),
        RunningServer::start(ns.config(), registry),
    ];
    let started = Instant::now();
    wait_until(Duration::from_secs(5), "the catch-up", || async {
        !queued(&ns, "ticks").await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500).saturating_sub(started.elapsed())).await;
    let jobs = queued(&ns, "ticks").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["args"], serde_json::json!(["catch-up"]));
    let tick = jobs[0]["periodic_at"].as_i64().unwrap();
    // The last tick before now: later than the last run, at most an hour ago.
    assert_eq!(tick % 3600, minute * 60);
    assert!(tick > three_hours_ago && now_secs() as i64 - tick <= 3600);
    for server in servers {
        server.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn the_cli_lists_runs_and_pauses_entries() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut registry = registry_with(&Record::default());
    // 03:00 on 29 February only: no tick falls while the test runs.
    registry.periodic(PeriodicJob::new(
        "nightly-report",
        Schedule::cron("0 3 29 2 *")?.in_zone("Europe/Berlin")?,
        Job::new("Reports::Nightly", (1, "full"))?.queue("reports"),
    )?);
    let server = RunningServer::start(ns.config(), registry);
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    wait_until(Duration::from_secs(5), "the entry declared", || async {
        !api.periodic_jobs().await.unwrap().is_empty()
    })
    .await;
    let cli = |args: &[&str]| {
        output_of(
            psychiq()
                .args(["--redis-url", &ns.url, "-n", &ns.namespace, "periodic"])
                .args(args),
        )
    };
    let (code, listing, _) = cli(&[]);
    assert_eq!(code, Some(0));
    for shown in [
        "nightly-report",
        "0 3 29 2 *",
        "Europe/Berlin",
        "Reports::Nightly",
        "ticking",
    ] {
        assert!(listing.contains(shown), "{shown} in {listing}");
    }
    assert!(
        listing.contains("03:00:00 CE"),
        "next run in Berlin time: {listing}"
    );
    let (code, said, _) = cli(&["pause", "nightly-report"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(cli(&["list"]).1.contains("paused"));
    let (code, said, _) = cli(&["run", "nightly-report"]);
    assert_eq!(code, Some(0));
    assert!(said.contains("enqueued nightly-report"), "{said}");
    let reports = queued(&ns, "reports").await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["args"], serde_json::json!([1, "full"]));
    assert_eq!(cli(&["resume", "nightly-report"]).0, Some(0));
    let (code, _, error) = cli(&["run", "weekly"]);
    assert_eq!(code, Some(1));
    assert!(error.contains("no periodic entry \"weekly\""), "{error}");
    server.stop().await;
    Ok(())
}
