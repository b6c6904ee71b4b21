//! Rate limits (`src/extensions/limits.rs`) against a real Redis and real server processes:
//! a concurrent limit held across processes and freed after a `kill -9`, fixed and sliding
//! windows over ten seconds, snoozing and giving up, the listing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use psychiq::api::{Api, SetKind};
use psychiq::limits::{Acquired, Limiter, Limits};
use psychiq::{JobResult, Registry, Worker, WorkerOptions};

/// `(start, end)` seconds of each run in a log of `+ TIME` / `- TIME` lines.
fn most_at_once(log: &str) -> usize {
    let mut events: Vec<(f64, i32)> = log
        .lines()
        .filter_map(|line| {
            let (sign, time) = line.split_once(' ')?;
            let time: f64 = time.trim().parse().ok()?;
            Some((time, if sign == "+" { 1 } else { -1 }))
        })
        .collect();
    // Ends before starts at the same instant: a place freed and taken is not an overlap.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn a_concurrent_limit_holds_across_processes_and_a_killed_ones_places_lapse() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ns = runtime.block_on(TestNs::new());
    let dir = std::env::temp_dir().join(format!("{}-limits", ns.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("runs.log");
    let file = dir.join("system.toml");
    let script = format!(
        "echo \"+ $(date +%s.%N)\" >> {log}; sleep 0.3; echo \"- $(date +%s.%N)\" >> {log}",
        log = log.display()
    );
    std::fs::write(
        &file,
        format!(
            r#"
[workers.Call]
command = ["sh", "-c", {script:?}]
limit = "api"

[workers.Hold]
command = ["sleep", "30"]
limit = "api"

[limits.api]
kind = "concurrent"
size = 3
lease = 2
wait = 2
"#
        ),
    )
    .unwrap();
    let args = ["-s", file.to_str().unwrap(), "-c", "3"];
    let leases = ns.keys().key("limits:concurrent:api");
    let held =
        || -> usize { runtime.block_on(ns.query::<usize>(redis::cmd("ZCARD").arg(&leases))) };

    // One process takes all three places with long jobs, then dies holding them.
    // (Its jobs are on a queue the others do not serve, so when they recover them from
    // the dead process they stay there.)
    let mut first = Spawned::start(&ns, &[&args[..], &["-q", "hold"]].concat());
    for n in 0..3 {
        let hold = psychiq::Job::new("Hold", (n,)).unwrap().queue("hold");
        runtime.block_on(ns.client.push(hold)).unwrap();
    }
    let started = Instant::now();
    while held() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the places were never taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill9();
    let killed = Instant::now();

    // Two others: nothing of theirs runs until the dead one's leases lapse (2 s), then they
    // share the three places, never more, sampled every 20 ms from the leases set and
    // measured from the runs' own start and end times.
    let others: Vec<Spawned> = (0..2).map(|_| Spawned::start(&ns, &args)).collect();
    for n in 0..40 {
        runtime
            .block_on(ns.client.push(psychiq::Job::new("Call", (n,)).unwrap()))
            .unwrap();
    }
    let mut most_sampled = 0;
    let mut first_run_after = None;
    loop {
        most_sampled = most_sampled.max(held());
        let runs = std::fs::read_to_string(&log).unwrap_or_default();
        if first_run_after.is_none() && runs.contains('+') {
            first_run_after = Some(killed.elapsed());
        }
        if runs.matches('-').count() >= 40 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "40 runs did not finish; {} did",
            runs.matches('-').count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let runs = std::fs::read_to_string(&log).unwrap();
    eprintln!(
        "40 runs done {:?} after the kill; first run {first_run_after:?} after it",
        killed.elapsed()
    );
    assert!(most_sampled <= 3, "{most_sampled} leases held at once");
    let most = most_at_once(&runs);
    assert!(most <= 3, "{most} runs at once:\n{runs}");
    assert_eq!(most, 3, "the survivors got all three places back");
    let waited = first_run_after.unwrap();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "the first run after the kill came {waited:?} after it (leases last 2 s)"
    );
    for server in &others {
        server.signal("TERM");
    }
    drop(others);
    let _ = std::fs::remove_dir_all(dir);
}

/// Records when each of its jobs started (ms, by the local clock).
#[derive(Clone, Default)]
struct Starts(Arc<Mutex<Vec<f64>>>);

impl Starts {
    fn record(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            * 1000.0;
        self.0.lock().unwrap().push(now);
    }
    fn times(&self) -> Vec<f64> {
        let mut times = self.0.lock().unwrap().clone();
        times.sort_by(f64::total_cmp);
        times
    }
}

struct Fixed(Starts);
impl Worker for Fixed {
    type Args = (u32,);
    fn options() -> WorkerOptions {
        WorkerOptions::default().rate_limit(
            Limiter::window("fixed", 4, Duration::from_secs(1)).wait(Duration::from_secs(2)),
        )
    }
    async fn perform(&self, _: (u32,)) -> JobResult {
        self.0.record();
        Ok(())
    }
}

struct Sliding(Starts);
impl Worker for Sliding {
    type Args = (u32,);
    fn options() -> WorkerOptions {
        WorkerOptions::default().rate_limit(
            Limiter::sliding_window("sliding", 4, Duration::from_secs(1))
                .wait(Duration::from_secs(2)),
        )
    }
    async fn perform(&self, _: (u32,)) -> JobResult {
        self.0.record();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_and_sliding_windows_hold_over_ten_seconds() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let (fixed, sliding) = (Starts::default(), Starts::default());
    let mut registry = Registry::new();
    registry
        .register(Fixed(fixed.clone()))
        .register(Sliding(sliding.clone()));
    let jobs: Vec<psychiq::Job> = (0..200)
        .map(|n| {
            let class = if n % 2 == 0 { "Fixed" } else { "Sliding" };
            psychiq::Job::new(class, (n,)).unwrap()
        })
        .collect();
    ns.client.push_bulk(jobs).await?;
    let server = RunningServer::start(ns.config().concurrency(10), registry);
    tokio::time::sleep(Duration::from_secs(10)).await;
    server.stop().await;

    let fixed = fixed.times();
    let mut per_second = std::collections::BTreeMap::<u64, usize>::new();
    for t in &fixed {
        *per_second.entry((*t / 1000.0) as u64).or_default() += 1;
    }
    assert!(
        per_second.values().all(|&n| n <= 4),
        "more than 4 in a second: {per_second:?}"
    );
    let sliding = sliding.times();
    for (i, t) in sliding.iter().enumerate() {
        // The fifth start after this one must be a full second later (20 ms for clocks).
        if let Some(later) = sliding.get(i + 4) {
            assert!(later - t >= 980.0, "5 starts within {:.0} ms", later - t);
        }
    }
    // And the limits let work through at close to their rate.
    assert!(
        fixed.len() >= 30,
        "{} fixed-window runs in 10 s",
        fixed.len()
    );
    assert!(
        sliding.len() >= 30,
        "{} sliding-window runs in 10 s",
        sliding.len()
    );
    eprintln!(
        "10 s: {} fixed-window runs, {} sliding-window runs",
        fixed.len(),
        sliding.len()
    );

    // The listing shows both with their use, and how often they said no.
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let limits = api.limits().await?;
    let names: Vec<&str> = limits.iter().map(|l| l.limiter.name()).collect();
    assert_eq!(names, ["fixed", "sliding"]);
    assert!(limits.iter().all(|l| l.over > 0 && l.limiter.size() == 4));
    Ok(())
}

/// Calls `within` a limiter inside `perform`. Class name `Polite`.
struct Polite {
    limits: Limits,
    limiter: Limiter,
}

impl Worker for Polite {
    type Args = (u8,);
    async fn perform(&self, _: (u8,)) -> JobResult {
        self.limits.within(&self.limiter, async {}).await?;
        Ok(())
    }
}

#[tokio::test]
async fn over_the_limit_a_job_is_snoozed_then_fails_after_its_max_snooze() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let limits = Limits::for_client(&ns.client).unwrap();
    let limiter = Limiter::concurrent("one", 1).max_snooze(Duration::from_secs(2));
    // The only place is taken for the whole test.
    let Acquired::Granted(permit) = limits.acquire(&limiter).await? else {
        panic!("the place was free");
    };
    assert!(matches!(limits.acquire(&limiter).await?, Acquired::Over(_)));
    let mut registry = Registry::new();
    registry.register(Polite {
        limits: limits.clone(),
        limiter: limiter.clone(),
    });
    ns.client.push(psychiq::Job::new("Polite", (1,))?).await?;
    let server = RunningServer::start(ns.config(), registry);
    let api = Api::connect(&ns.redis, &ns.namespace).await?;

    // Snoozed: in the schedule, marked, not failed and not retried.
    wait_until(Duration::from_secs(5), "a snooze", || async {
        api.set_size(SetKind::Scheduled).await.unwrap() == 1
    })
    .await;
    let snoozed = &api.set_page(SetKind::Scheduled, 0, 1).await?[0];
    let fields = snoozed.item().unwrap();
    assert_eq!(fields["snoozed"], 1);
    assert!(fields.get("snoozed_at").is_some());
    assert!(fields.get("retry_count").is_none());
    assert_eq!(api.stats().await?.failed, 0);

    // Snoozed for longer than 2 s: it fails and follows the retry rules.
    wait_until(Duration::from_secs(30), "the give-up", || async {
        api.set_size(SetKind::Retry).await.unwrap() == 1
    })
    .await;
    let failed = &api.set_page(SetKind::Retry, 0, 1).await?[0];
    assert_eq!(failed.error_class(), Some("Psychiq::OverLimit"));
    assert!(failed.error_message().unwrap().contains("\"one\""));
    let fields = failed.item().unwrap();
    assert!(
        fields.get("snoozed").is_none(),
        "a failure ends the snoozes"
    );
    server.stop().await;

    // Released, the place is free again at once.
    permit.release().await;
    assert!(matches!(
        limits.acquire(&limiter).await?,
        Acquired::Granted(_)
    ));
    Ok(())
}

#[tokio::test]
async fn buckets_allow_their_burst_then_their_rate() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let limits = Limits::for_client(&ns.client).unwrap();
    let granted = |limiter: Limiter| {
        let limits = limits.clone();
        async move {
            let mut n = 0;
            for _ in 0..10 {
                if let Acquired::Granted(_) = limits.acquire(&limiter).await.unwrap() {
                    n += 1;
                }
            }
            n
        }
    };
    let minute = Duration::from_secs(60);
    // At once: a token bucket lets its whole size through, a leaky one its burst.
    assert_eq!(granted(Limiter::bucket("tokens", 5, minute)).await, 5);
    assert_eq!(granted(Limiter::leaky("drip", 5, minute)).await, 1);
    assert_eq!(
        granted(Limiter::leaky("drip2", 5, minute).burst(3)).await,
        3
    );
    // Refilled at its rate: 5 per second is one every 200 ms.
    let fast = Limiter::bucket("fast", 5, Duration::from_secs(1));
    assert_eq!(granted(fast.clone()).await, 5);
    let Acquired::Over(wait) = limits.acquire(&fast).await? else {
        panic!("empty");
    };
    assert!(wait <= Duration::from_millis(200), "{wait:?}");
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert!(matches!(limits.acquire(&fast).await?, Acquired::Granted(_)));

    // `psychiq limits` lists them with their use.
    let out = psychiq()
        .args(["--redis-url", &ns.url, "-n", &ns.namespace, "limits"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for shown in ["tokens", "bucket", "drip", "leaky", "5/5"] {
        assert!(listing.contains(shown), "{shown} in {listing}");
    }
    Ok(())
}

/// Window limit "burst": 50 a second, no waiting in the worker. Class name `Burst`.
struct Burst(Starts);
impl Worker for Burst {
    type Args = (u32,);
    fn options() -> WorkerOptions {
        WorkerOptions::default().rate_limit(Limiter::window("burst", 50, Duration::from_secs(1)))
    }
    async fn perform(&self, _: (u32,)) -> JobResult {
        self.0.record();
        Ok(())
    }
}

/// A burst far over a window limit is spread over the windows it needs: each job turned
/// away is told which later window has room for it, so the limit is used nearly in full
/// and jobs are not snoozed again and again (the probe's burst used 36% of its limit,
/// backing off blindly, with three snoozes a job).
#[tokio::test]
async fn a_burst_over_a_window_limit_fills_the_following_windows() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let starts = Starts::default();
    let mut registry = Registry::new();
    registry.register(Burst(starts.clone()));
    const JOBS: u32 = 300;
    let jobs: Vec<psychiq::Job> = (0..JOBS)
        .map(|n| psychiq::Job::new("Burst", (n,)).unwrap())
        .collect();
    ns.client.push_bulk(jobs).await?;
    let server = RunningServer::start(ns.config().concurrency(10), registry);
    wait_until(Duration::from_secs(20), "every job to run", || async {
        starts.times().len() == JOBS as usize
    })
    .await;
    server.stop().await;
    let times = starts.times();
    let seconds = (times[times.len() - 1] / 1000.0).floor() - (times[0] / 1000.0).floor() + 1.0;
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let over = api.limits().await?[0].over;
    let used = f64::from(JOBS) / (seconds * 50.0);
    eprintln!(
        "{JOBS} jobs at 50/s: {seconds} windows, {:.0}% of the limit used, {over} snoozes",
        used * 100.0
    );
    // 300 jobs need 6 windows; a window of slack for the poller and the spread.
    assert!(seconds <= 8.0, "{seconds} windows for {JOBS} jobs");
    assert!(
        over <= u64::from(JOBS) * 2,
        "{over} snoozes for {JOBS} jobs"
    );
    Ok(())
}
