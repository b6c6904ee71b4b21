//! Flow control: debounced pushes (a burst becomes one job, atomically, on Redis's clock;
//! a burst that never pauses is bounded by its longest wait), also in the test mode.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use psychiq::{Job, JobResult, Push, Registry, Worker};
use serde_json::Value;

/// Records each run's arguments and when it ran.
#[derive(Clone, Default)]
struct Tally {
    runs: Arc<Mutex<Vec<(Value, Instant)>>>,
}

impl Worker for Tally {
    type Args = Value;
    async fn perform(&self, args: Value) -> JobResult {
        self.runs.lock().unwrap().push((args, Instant::now()));
        Ok(())
    }
}

fn serve(ns: &TestNs) -> (Tally, RunningServer) {
    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.register(tally.clone());
    let config = ns.config().poll_interval(Duration::from_millis(100));
    (tally, RunningServer::start(config, registry))
}

#[tokio::test]
async fn a_burst_of_a_thousand_concurrent_pushes_runs_once() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut tasks = Vec::new();
    for task in 0..10 {
        let client = ns.client.clone();
        tasks.push(tokio::spawn(async move {
            let mut pushes = Vec::new();
            for n in 0..100 {
                let job = Job::new("Tally", (task * 100 + n,))?
                    .debounce("reindex-42", Duration::from_secs(1));
                pushes.push(client.try_push(job).await?);
            }
            psychiq::Result::Ok(pushes)
        }));
    }
    let mut pushes = Vec::new();
    for task in tasks {
        pushes.extend(task.await.unwrap()?);
    }
    // One job waits, and every push answered with its jid: the first wrote it, the others
    // replaced its arguments.
    let scheduled = ns.zrange(&ns.keys().schedule()).await;
    assert_eq!(scheduled.len(), 1, "{scheduled:?}");
    let waiting: Value = serde_json::from_str(&scheduled[0]).unwrap();
    let jid = waiting["jid"].as_str().unwrap();
    assert!(pushes.iter().all(|p| p.jid() == Some(jid)), "{pushes:?}");
    assert_eq!(
        pushes
            .iter()
            .filter(|p| matches!(p, Push::Pushed(_)))
            .count(),
        1,
        "one push wrote the job, the rest debounced into it"
    );
    assert_eq!(waiting["debounce"], "reindex-42");

    let (tally, server) = serve(&ns);
    wait_until(Duration::from_secs(10), "the debounced job", || async {
        !tally.runs.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs = tally.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, waiting["args"], "with the last push's arguments");

    // Once it ran, the next push starts a new one.
    let next = ns
        .client
        .try_push(Job::new("Tally", ("again",))?.debounce("reindex-42", Duration::from_millis(200)))
        .await?;
    assert!(matches!(&next, Push::Pushed(j) if j != jid), "{next:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_burst_that_never_pauses_runs_within_its_longest_wait() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let (tally, server) = serve(&ns);
    let began = Instant::now();
    // A push every 100 ms for 2.5 s, each asking for 500 ms of quiet: without a longest
    // wait nothing would run until the burst ends.
    while began.elapsed() < Duration::from_millis(2500) {
        let job = Job::new("Tally", (began.elapsed().as_millis() as u64,))?
            .debounce("busy", Duration::from_millis(500))
            .debounce_max_wait(Duration::from_secs(1));
        ns.client.push(job).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = tally
        .runs
        .lock()
        .unwrap()
        .first()
        .map(|(_, at)| *at - began);
    let first = first.expect("a run during the burst");
    assert!(
        first >= Duration::from_millis(900) && first < Duration::from_millis(1800),
        "the first run came {first:?} after the burst began"
    );
    wait_until(Duration::from_secs(5), "the last burst's job", || async {
        ns.zrange(&ns.keys().schedule()).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = tally.runs.lock().unwrap().len();
    assert!((2..=4).contains(&runs), "{runs} runs for 25 pushes");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_test_mode_debounces_too_and_debounce_refuses_unique() {
    let fake = psychiq::testing::Fake::new(Registry::new());
    let client = fake.client();
    let push = |n: u32| {
        Job::new("Tally", (n,))
            .unwrap()
            .debounce("k", Duration::from_secs(60))
    };
    let first = client.try_push(push(1)).await.unwrap();
    let second = client.try_push(push(2)).await.unwrap();
    assert!(matches!(&second, Push::Debounced(j) if Some(j.as_str()) == first.jid()));
    let jobs = fake.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].args_json(), &serde_json::json!([2]));

    let both = client
        .push(push(3).unique_for(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(
        both.to_string().contains("both unique and debounced"),
        "{both}"
    );
}

/// Sleeps its milliseconds, counting per queue how many run at once, the most that did,
/// and how many finished.
#[derive(Clone, Default)]
struct Nap {
    now: Arc<Mutex<std::collections::HashMap<String, Counts>>>,
}

/// Running now, the most at once, finished.
type Counts = (usize, usize, usize);

impl Worker for Nap {
    type Args = (u64,);
    async fn perform(&self, (ms,): (u64,)) -> JobResult {
        let queue = psychiq::context::current().unwrap().queue().to_string();
        {
            let mut now = self.now.lock().unwrap();
            let (running, most, _) = now.entry(queue.clone()).or_default();
            *running += 1;
            *most = (*most).max(*running);
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let mut now = self.now.lock().unwrap();
        let counts = now.get_mut(&queue).unwrap();
        counts.0 -= 1;
        counts.2 += 1;
        Ok(())
    }
}

#[tokio::test]
async fn capsules_run_their_queues_at_their_own_concurrency() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let nap = Nap::default();
    let mut registry = Registry::new();
    registry.register(nap.clone());
    let config = ns
        .config()
        .queue("slow")
        .concurrency(1)
        .capsule(psychiq::Capsule::new("fast", 3).queue("fast"));
    let server = RunningServer::start(config, registry);
    for _ in 0..3 {
        ns.client
            .push(Job::new("Nap", (400,))?.queue("slow"))
            .await?;
    }
    for _ in 0..12 {
        ns.client
            .push(Job::new("Nap", (100,))?.queue("fast"))
            .await?;
    }
    let api = ns.jobs.api().await?;
    // The fast capsule drains while the slow one has its single worker busy.
    wait_until(
        Duration::from_secs(5),
        "the fast queue to drain",
        || async { api.queue_size("fast").await.unwrap() == 0 },
    )
    .await;
    let slow_done = nap.now.lock().unwrap()["slow"].2;
    assert!(
        slow_done < 3,
        "{slow_done} slow jobs done: the fast ones waited for them"
    );
    let process = api.processes().await?.pop().expect("the process");
    assert_eq!(process.info["concurrency"], 4);
    assert_eq!(process.info["capsules"]["fast"]["concurrency"], 3);
    assert_eq!(process.info["capsules"]["default"]["weights"]["slow"], 0);
    assert_eq!(process.queues_text(), "default (1): slow · fast (3): fast");
    wait_until(Duration::from_secs(5), "the slow jobs", || async {
        nap.now.lock().unwrap()["slow"].2 == 3
    })
    .await;
    server.stop().await;
    let most = nap.now.lock().unwrap().clone();
    assert_eq!((most["slow"].1, most["fast"].1), (1, 3), "{most:?}");

    // A queue in two capsules, or two capsules of one name, is refused at the start.
    let twice = psychiq::Server::new(
        ns.config()
            .queue("a")
            .capsule(psychiq::Capsule::new("b", 1).queue("a")),
        Registry::new(),
    )
    .start()
    .await
    .err()
    .expect("refused");
    assert!(twice.to_string().contains("in two capsules"), "{twice}");
    Ok(())
}

#[tokio::test]
async fn a_process_with_capsules_killed_loses_no_job_of_either() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let out = std::env::temp_dir().join(format!("{}-naps.jsonl", ns.namespace));
    let path = out.to_str().unwrap();
    for queue in ["slow", "fast", "fast"] {
        ns.client
            .push(Job::new("Sleep", (1500, path))?.queue(queue))
            .await?;
    }
    let mut first = Spawned::start(
        &ns,
        &[
            "-s",
            "demo",
            "-q",
            "slow",
            "-c",
            "1",
            "--capsule",
            "fast:fast:2",
        ],
    );
    let api = ns.jobs.api().await?;
    // Taken by both capsules (the slow one runs its one, the fast one its two), then killed
    // while they run.
    wait_until(Duration::from_secs(10), "both queues taken", || async {
        api.queue_size("slow").await.unwrap() + api.queue_size("fast").await.unwrap() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill9();
    let mut second = Spawned::start(&ns, &["-s", "demo", "-q", "slow", "-q", "fast", "-c", "5"]);
    wait_until(
        Duration::from_secs(20),
        "the three recovered and run",
        || async { std::fs::read_to_string(&out).is_ok_and(|s| s.lines().count() >= 3) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
    second.signal("TERM");
    assert_eq!(second.wait_exit(Duration::from_secs(10)), 0);
    let _ = std::fs::remove_file(&out);
    Ok(())
}

/// Records each chunk's jobs; `"retry"` fails (and is retried), `"die"` fails (its job has
/// no retries), the rest succeed.
#[derive(Clone, Default)]
struct Rows {
    chunks: Arc<Mutex<Vec<Vec<Row>>>>,
}

/// A row's number and kind.
type Row = (u32, String);

impl psychiq::ChunkWorker for Rows {
    type Args = (u32, String);
    const SIZE: usize = 5;
    const MAX_WAIT: Duration = Duration::from_millis(300);
    async fn perform_chunk(&self, jobs: Vec<psychiq::Chunked<(u32, String)>>) -> Vec<JobResult> {
        self.chunks
            .lock()
            .unwrap()
            .push(jobs.iter().map(|j| j.args.clone()).collect());
        jobs.iter()
            .map(|job| match job.args.1.as_str() {
                "retry" | "die" => Err(psychiq::JobError::new("RowError", "bad row")),
                _ => Ok(()),
            })
            .collect()
    }
}

#[tokio::test]
async fn chunks_take_up_to_their_size_and_give_each_job_its_outcome() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let rows = Rows::default();
    let mut registry = Registry::new();
    registry.register_chunked(rows.clone());
    for n in 0..12 {
        let kind = match n {
            3 => "retry",
            7 => "die",
            _ => "ok",
        };
        let mut job = Job::new("Rows", (n, kind))?;
        if kind == "die" {
            job = job.retry(psychiq::Retry::Max(0));
        }
        ns.client.push(job).await?;
    }
    // An expired one: the expiry middleware discards it before it can join a chunk.
    ns.client
        .push(Job::new("Rows", (99, "expired"))?.option("expires_at", serde_json::json!(1.0)))
        .await?;
    let server = RunningServer::start(ns.config().concurrency(10), registry);
    wait_until(Duration::from_secs(10), "the twelve rows", || async {
        rows.chunks
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .sum::<usize>()
            == 12
    })
    .await;
    let api = ns.jobs.api().await?;
    wait_until(Duration::from_secs(5), "their outcomes", || async {
        api.retries().size().await.unwrap() == 1 && api.dead().size().await.unwrap() == 1
    })
    .await;
    server.stop().await;
    let chunks = rows.chunks.lock().unwrap().clone();
    assert!(chunks.iter().all(|c| c.len() <= 5), "{chunks:?}");
    assert!(
        chunks.iter().flatten().all(|(n, _)| *n != 99),
        "the expired job was performed: {chunks:?}"
    );
    assert!(
        chunks.len() <= 4 && chunks.iter().any(|c| c.len() > 1),
        "{chunks:?}"
    );
    let retried = api.retries().page(0, 1).await?;
    assert_eq!(retried[0].args(), &serde_json::json!([3, "retry"]));
    let dead = api.dead().page(0, 1).await?;
    assert_eq!(dead[0].args(), &serde_json::json!([7, "die"]));
    let stats = api.stats().await?;
    assert_eq!(
        (stats.processed, stats.failed),
        (13, 2),
        "Sidekiq counts failures (and the discarded one) as processed"
    );
    Ok(())
}

/// Records the order its jobs ran in, by their one argument; naps its milliseconds.
#[derive(Clone, Default)]
struct Order {
    ran: Arc<Mutex<Vec<String>>>,
}

impl Worker for Order {
    type Args = (String, u64);
    async fn perform(&self, (name, ms): (String, u64)) -> JobResult {
        self.ran.lock().unwrap().push(name);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}

#[tokio::test]
async fn urgent_jobs_pass_the_backlog_higher_first_and_keep_their_priority_when_due()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let plain: Vec<Job> = (0..30)
        .map(|n| Job::new("Order", (format!("plain-{n}"), 40)))
        .collect::<psychiq::Result<_>>()?;
    ns.client.push_bulk(plain).await?;
    ns.client
        .push(Job::new("Order", ("p5", 0))?.priority(5))
        .await?;
    ns.client
        .push(Job::new("Order", ("p9", 0))?.priority(9))
        .await?;
    // Due in half a second, while the backlog is still running: it goes to its priority
    // list, not to the back of the queue.
    ns.client
        .push(
            Job::new("Order", ("later-p7", 0))?
                .priority(7)
                .delay(Duration::from_millis(500)),
        )
        .await?;
    // The queue's size counts them; clearing a queue takes its priority lists too.
    let api = ns.jobs.api().await?;
    assert_eq!(api.queue_size("default").await?, 32);
    ns.client
        .push(
            Job::new("Order", ("elsewhere", 0))?
                .queue("other")
                .priority(4),
        )
        .await?;
    assert_eq!(api.queue_size("other").await?, 1);
    assert_eq!(api.clear_queue("other").await?, 1);
    assert_eq!(api.queue_size("other").await?, 0);
    let order = Order::default();
    let mut registry = Registry::new();
    registry.register(order.clone());
    let config = ns
        .config()
        .concurrency(1)
        .prefetch(0)
        .poll_interval(Duration::from_millis(100));
    let server = RunningServer::start(config, registry);
    wait_until(Duration::from_secs(10), "all 33", || async {
        order.ran.lock().unwrap().len() == 33
    })
    .await;
    server.stop().await;
    let ran = order.ran.lock().unwrap().clone();
    assert_eq!(&ran[..3], ["p9", "p5", "plain-0"], "{ran:?}");
    let later = ran.iter().position(|n| n == "later-p7").unwrap();
    assert!(
        later < 25,
        "the scheduled urgent job ran {later}th: {ran:?}"
    );
    // Plain jobs in their order.
    let plain: Vec<&String> = ran.iter().filter(|n| n.starts_with("plain")).collect();
    let expected: Vec<String> = (0..30).map(|n| format!("plain-{n}")).collect();
    assert_eq!(plain, expected.iter().collect::<Vec<_>>());
    Ok(())
}

/// A grouped job's run: its group, its number, and how many of its group ran at once.
#[derive(Clone, Default)]
struct Member {
    ran: Arc<Mutex<Vec<(String, u32)>>>,
    started: Arc<Mutex<Vec<(String, std::time::Instant)>>>,
    running: Arc<Mutex<std::collections::HashMap<String, (usize, usize)>>>,
}

impl Worker for Member {
    type Args = (String, u32, u64);
    async fn perform(&self, (group, n, ms): (String, u32, u64)) -> JobResult {
        self.started
            .lock()
            .unwrap()
            .push((group.clone(), std::time::Instant::now()));
        {
            let mut running = self.running.lock().unwrap();
            let (now, most) = running.entry(group.clone()).or_default();
            *now += 1;
            *most = (*most).max(*now);
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.running.lock().unwrap().get_mut(&group).unwrap().0 -= 1;
        self.ran.lock().unwrap().push((group, n));
        Ok(())
    }
}

impl Member {
    fn of(&self, group: &str) -> Vec<u32> {
        let ran = self.ran.lock().unwrap();
        ran.iter()
            .filter(|(g, _)| g == group)
            .map(|(_, n)| *n)
            .collect()
    }
    fn starts(&self, group: &str) -> Vec<std::time::Instant> {
        let started = self.started.lock().unwrap();
        started
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, at)| *at)
            .collect()
    }
    fn most(&self, group: &str) -> usize {
        self.running
            .lock()
            .unwrap()
            .get(group)
            .map_or(0, |(_, most)| *most)
    }
}

fn member(group: &str, n: u32, ms: u64) -> Job {
    Job::new("Member", (group, n, ms)).unwrap().group(group)
}

fn serve_members(ns: &TestNs, concurrency: usize) -> (Member, RunningServer) {
    let worker = Member::default();
    let mut registry = Registry::new();
    registry.register(worker.clone());
    let config = ns
        .config()
        .concurrency(concurrency)
        .poll_interval(Duration::from_millis(100));
    (worker, RunningServer::start(config, registry))
}

#[tokio::test]
async fn a_tenants_backlog_does_not_delay_anothers_jobs() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    // Tenant A's 2,000 jobs arrive first, then tenant B's 10; four of each at once.
    let a: Vec<Job> = (0..2000)
        .map(|n| member("tenant-a", n, 5).group_limit(4))
        .collect();
    ns.client.push_bulk(a).await?;
    let b: Vec<Job> = (0..10)
        .map(|n| member("tenant-b", n, 5).group_limit(4))
        .collect();
    ns.client.push_bulk(b).await?;
    let (worker, server) = serve_members(&ns, 8);
    wait_until(Duration::from_secs(20), "tenant B's ten", || async {
        worker.of("tenant-b").len() == 10
    })
    .await;
    let a_done = worker.of("tenant-a").len();
    assert!(a_done < 300, "B waited for {a_done} of A's jobs");
    assert!(worker.most("tenant-a") <= 4 && worker.most("tenant-b") <= 4);
    let api = ns.jobs.api().await?;
    let groups = api.groups("default", 10).await?;
    let a = groups
        .iter()
        .find(|g| g.name == "tenant-a")
        .expect("tenant A listed");
    assert_eq!(a.limit, 4);
    assert!(a.backlog > 0, "{a:?}");
    // A limit set by hand outlasts later pushes that name another.
    api.set_group_limit("default", "tenant-a", 2).await?;
    ns.client
        .push(member("tenant-a", 9_999, 0).group_limit(8))
        .await?;
    let a = api.groups("default", 10).await?;
    assert_eq!(a.iter().find(|g| g.name == "tenant-a").unwrap().limit, 2);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_busy_group_does_not_starve_the_queues_other_jobs() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    // A group that could fill every worker, then a job of no group.
    let busy: Vec<Job> = (0..300)
        .map(|n| member("wide", n, 20).group_limit(50))
        .collect();
    ns.client.push_bulk(busy).await?;
    ns.client.push(Job::new("Member", ("none", 0, 0))?).await?;
    let (worker, server) = serve_members(&ns, 6);
    wait_until(Duration::from_secs(10), "the job of no group", || async {
        !worker.of("none").is_empty()
    })
    .await;
    let wide_done = worker.of("wide").len();
    assert!(
        wide_done < 150,
        "it waited for {wide_done} of the group's 300"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_sequence_runs_in_order_one_at_a_time_and_pauses() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = ns.jobs.api().await?;
    let jobs: Vec<Job> = (0..30)
        .flat_map(|n| [member("cus_1", n, 10), member("cus_2", n, 10)])
        .collect();
    ns.client.push_bulk(jobs).await?;
    api.pause_group("default", "cus_3").await?;
    ns.client.push(member("cus_3", 0, 0)).await?;
    let (worker, server) = serve_members(&ns, 6);
    wait_until(Duration::from_secs(15), "both sequences", || async {
        worker.of("cus_1").len() == 30 && worker.of("cus_2").len() == 30
    })
    .await;
    let expected: Vec<u32> = (0..30).collect();
    assert_eq!(worker.of("cus_1"), expected);
    assert_eq!(worker.of("cus_2"), expected);
    assert_eq!((worker.most("cus_1"), worker.most("cus_2")), (1, 1));
    assert!(worker.of("cus_3").is_empty(), "a paused group ran");
    let output = psychiq_on(&ns, &["groups", "list", "default"]);
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        listed.contains("cus_3") && listed.contains("paused"),
        "{listed}"
    );
    let output = psychiq_on(&ns, &["groups", "resume", "default", "cus_3"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_until(Duration::from_secs(5), "the resumed group", || async {
        worker.of("cus_3").len() == 1
    })
    .await;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_groups_rate_spaces_its_starts_and_can_be_lifted() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    // 9 jobs of a group allowed 3 at once and 3 starts a second, beside a group without a
    // rate: the rated one takes at least two seconds, the other is not held by it.
    let rated: Vec<Job> = (0..9)
        .map(|n| {
            member("quota", n, 0)
                .group_limit(3)
                .group_rate(3, Duration::from_secs(1))
        })
        .collect();
    ns.client.push_bulk(rated).await?;
    let free: Vec<Job> = (0..6)
        .map(|n| member("free", n, 0).group_limit(3))
        .collect();
    ns.client.push_bulk(free).await?;
    let (worker, server) = serve_members(&ns, 6);
    wait_until(
        Duration::from_secs(5),
        "the group without a rate",
        || async { worker.of("free").len() == 6 },
    )
    .await;
    assert!(
        worker.of("quota").len() <= 6,
        "the rated group ran {} before the other finished",
        worker.of("quota").len()
    );
    let api = ns.jobs.api().await?;
    let listed = api.groups("default", 10).await?;
    let quota = listed.iter().find(|g| g.name == "quota").expect("listed");
    assert_eq!(quota.rate.map(|r| (r.count, r.per_secs)), Some((3, 1.0)));
    assert!(quota.started_in_window <= 3, "{quota:?}");
    wait_until(Duration::from_secs(10), "the rated group", || async {
        worker.of("quota").len() == 9
    })
    .await;
    // Any 4 consecutive starts span a window: the rate is kept on Redis's clock, these
    // instants are taken a little after each fetch, hence the margin.
    let starts = worker.starts("quota");
    for pair in starts.windows(4) {
        let gap = pair[3] - pair[0];
        assert!(gap >= Duration::from_millis(900), "4 starts within {gap:?}");
    }
    // Lifted from the CLI: the next 9 start as fast as the limit allows.
    let output = psychiq_on(&ns, &["groups", "rate", "default", "quota", "none"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bad = psychiq_on(&ns, &["groups", "rate", "default", "quota", "3 a second"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("COUNT/SECONDS"));
    let again: Vec<Job> = (9..18)
        .map(|n| {
            member("quota", n, 0)
                .group_limit(3)
                .group_rate(3, Duration::from_secs(1))
        })
        .collect();
    ns.client.push_bulk(again).await?;
    wait_until(Duration::from_secs(10), "the unrated run", || async {
        worker.of("quota").len() == 18
    })
    .await;
    let starts = worker.starts("quota");
    let span = starts[17] - starts[9];
    assert!(span < Duration::from_millis(900), "still rated: {span:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_sequence_keeps_its_order_through_a_kill_9() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let out = std::env::temp_dir().join(format!("{}-sequence.jsonl", ns.namespace));
    let path = out.to_str().unwrap();
    // The demo Sleep writes [ms, path, started, finished]: its ms names it.
    let jobs: Vec<Job> = (0..8)
        .map(|n| Job::new("Sleep", (300 + n, path)).map(|j| j.group("cus_9")))
        .collect::<psychiq::Result<_>>()?;
    ns.client.push_bulk(jobs).await?;
    let mut first = Spawned::start(&ns, &["-s", "demo", "-c", "5"]);
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()[0]
                    .as_u64()
                    .unwrap()
            })
            .collect::<Vec<u64>>()
    };
    wait_until(Duration::from_secs(10), "two of the sequence", || async {
        lines().len() >= 2
    })
    .await;
    // The third is running (it naps 302 ms): the kill interrupts it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.kill9();
    let mut second = Spawned::start(&ns, &["-s", "demo", "-c", "5"]);
    wait_until(Duration::from_secs(90), "the whole sequence", || async {
        lines().len() >= 8
    })
    .await;
    second.signal("TERM");
    assert_eq!(second.wait_exit(Duration::from_secs(10)), 0);
    let ran = lines();
    eprintln!("the sequence through the kill ran as {ran:?}");
    let mut all = ran.clone();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, (300..308).collect::<Vec<u64>>(), "{ran:?}");
    // In order: the job the kill interrupted went back to the front of its group (it may
    // appear twice, had it finished before the kill and not been acknowledged).
    assert!(ran.windows(2).all(|w| w[0] <= w[1]), "{ran:?}");
    let _ = std::fs::remove_file(&out);
    Ok(())
}
