//! Know, await and stop any job: tracked status, typed results awaited without polling,
//! progress, cancelling waiting and running jobs, the event stream, and a `kill -9` of the
//! process running a tracked job.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use psychiq::api::Cancellation;
use psychiq::job_events::EventKind;
use psychiq::status::State;
use psychiq::{Error, Job, JobError, JobResult, NoArgs, Registry, Retry, Task, Worker};

struct Add;

impl Task for Add {
    type Args = (i64, i64);
    type Output = i64;
    async fn run(&self, (a, b): Self::Args) -> Result<i64, JobError> {
        Ok(a + b)
    }
}

/// Always fails, and has no retries.
struct Doomed;

impl Task for Doomed {
    type Args = NoArgs;
    type Output = String;
    fn options() -> psychiq::WorkerOptions {
        psychiq::WorkerOptions::default()
            .retry(Retry::Max(0))
            .track(Duration::from_secs(600))
    }
    async fn run(&self, _: NoArgs) -> Result<String, JobError> {
        Err(JobError::new("Billing::CardDeclined", "card 4242 declined"))
    }
}

/// Fails its first run, succeeds its second, retried after a second.
#[derive(Clone, Default)]
struct SecondTime {
    runs: Arc<AtomicUsize>,
}

impl Worker for SecondTime {
    type Args = NoArgs;
    fn retry_in(&self, _: u32, _: &JobError) -> Option<Duration> {
        Some(Duration::from_millis(300))
    }
    async fn perform(&self, _: NoArgs) -> JobResult {
        if self.runs.fetch_add(1, Ordering::SeqCst) == 0 {
            Err("first time unlucky")?;
        }
        Ok(())
    }
}

/// Reports progress 100,000 times in a tight loop, then once more after a pause.
struct Busy;

impl Worker for Busy {
    type Args = NoArgs;
    async fn perform(&self, _: NoArgs) -> JobResult {
        for i in 0..100_000 {
            psychiq::context::progress(i, 100_000, "counting");
        }
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        psychiq::context::progress(100_000, 100_000, "done counting");
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }
}

/// Stops when cancelled, else after an hour.
#[derive(Clone, Default)]
struct Polite {
    stopped: Arc<AtomicUsize>,
}

impl Worker for Polite {
    type Args = NoArgs;
    async fn perform(&self, _: NoArgs) -> JobResult {
        tokio::select! {
            _ = psychiq::context::cancelled() => {
                assert!(psychiq::context::is_cancelled());
                self.stopped.fetch_add(1, Ordering::SeqCst);
                Err("stopped early")?
            }
            _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok(()),
        }
    }
}

/// Ignores cancellation: sleeps an hour.
struct Stubborn;

impl Worker for Stubborn {
    type Args = NoArgs;
    async fn perform(&self, _: NoArgs) -> JobResult {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    }
}

async fn status(ns: &TestNs, jid: &str) -> Option<psychiq::status::JobStatus> {
    ns.jobs.api().await.unwrap().status(jid).await.unwrap()
}

#[tokio::test]
async fn a_tasks_typed_result_is_awaited_and_kept_in_its_status() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut registry = Registry::new();
    registry.register(Add).register(Doomed);
    let server = RunningServer::start(ns.config(), registry);

    let sum = ns
        .client
        .enqueue_and_wait::<Add>((2, 3), Duration::from_secs(10))
        .await?;
    assert_eq!(sum, 5);

    let handle = ns.client.enqueue_tracked::<Add>((40, 2)).await?;
    assert_eq!(handle.result().await?, 42);
    let done = handle.status().await?.expect("tracked");
    assert_eq!(done.state, State::Succeeded);
    assert_eq!(done.result.as_deref(), Some("42"));
    assert_eq!(done.class.as_deref(), Some("Add"));
    assert!(done.duration.is_some() && done.finished_at.is_some());
    assert!(done.process.is_some(), "the process that ran it is named");
    let ttl: i64 = ns
        .query(redis::cmd("TTL").arg(ns.keys().status(handle.jid())))
        .await;
    assert!(
        ttl > 86_000 && ttl <= 86_400,
        "kept a day by default: {ttl}"
    );

    // A job that dies gives the waiter its error.
    let error = ns
        .client
        .enqueue_and_wait::<Doomed>(NoArgs, Duration::from_secs(10))
        .await
        .unwrap_err();
    match error {
        Error::JobFailed { error, .. } => {
            assert_eq!(error.class(), "Billing::CardDeclined");
            assert_eq!(error.message(), "card 4242 declined");
        }
        other => panic!("expected the job's error, got {other}"),
    }

    // A wait with a deadline ends with the state it saw.
    let jid = ns
        .client
        .push(Job::new("NobodyServesThis", ())?.queue("elsewhere").track())
        .await?;
    let waited = ns
        .client
        .handle::<serde_json::Value>(&jid)
        .result_within(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(&waited, Error::WaitTimedOut { state, .. } if state == "enqueued"),
        "{waited}"
    );
    let queued = status(&ns, &jid).await.unwrap();
    assert_eq!((queued.state, queued.position), (State::Enqueued, Some(0)));

    // An untracked job cannot be waited for, and says how to make it so.
    let plain = ns.client.push(Job::new("Add", (1, 1))?).await?;
    let refused = ns.client.handle::<i64>(&plain).result().await.unwrap_err();
    assert!(refused.to_string().contains("track"), "{refused}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_retried_job_shows_its_failure_then_its_success() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let worker = SecondTime::default();
    let mut registry = Registry::new();
    registry.register(worker.clone());
    let handle = ns
        .client
        .push_tracked(Job::of::<SecondTime>(&NoArgs)?)
        .await?;
    assert_eq!(
        handle.status().await?.map(|s| s.state),
        Some(State::Enqueued)
    );
    let server = RunningServer::start(ns.config(), registry);
    wait_until(Duration::from_secs(10), "the first failure", || async {
        worker.runs.load(Ordering::SeqCst) >= 1
    })
    .await;
    let result = handle.result_within(Duration::from_secs(15)).await?;
    assert_eq!(result, serde_json::Value::Null);
    let done = handle.status().await?.unwrap();
    assert_eq!(done.state, State::Succeeded);
    assert_eq!(done.retry_count, Some(0), "its one failure stays on record");
    assert!(done.error.unwrap().contains("first time unlucky"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn progress_is_throttled_shown_while_running_and_kept() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut registry = Registry::new();
    registry.register(Busy);
    let server = RunningServer::start(ns.config().events(1_000), registry);
    let handle = ns.client.push_tracked(Job::of::<Busy>(&NoArgs)?).await?;
    let api = ns.jobs.api().await?;
    let jid = handle.jid().to_string();
    wait_until(
        Duration::from_secs(10),
        "progress while running",
        || async {
            let status = api.status(&jid).await.unwrap().unwrap();
            status.state == State::Running && status.progress.is_some()
        },
    )
    .await;
    let shown = api.progress_of(&[&jid]).await?;
    assert_eq!(shown[&jid].total, 100_000);
    handle.wait_within(Duration::from_secs(10)).await?;
    let last = handle.status().await?.unwrap().progress.unwrap();
    assert_eq!(
        (last.done, last.message.as_str()),
        (100_000, "done counting")
    );
    let entries: Vec<(String, Vec<String>)> = ns
        .query(
            redis::cmd("XRANGE")
                .arg(ns.keys().events())
                .arg("-")
                .arg("+"),
        )
        .await;
    let progress_writes = entries
        .iter()
        .filter(|(_, fields)| fields.get(1).map(String::as_str) == Some("progress"))
        .count();
    assert!(
        (2..=6).contains(&progress_writes),
        "100,001 calls in ~1.5 s are written a few times, not each: {progress_writes}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn cancelling_waiting_jobs_removes_them_and_tells_their_waiters() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = ns.jobs.api().await?;
    let queued = ns
        .client
        .push_tracked(Job::new("Report", ())?.queue("reports"))
        .await?;
    let later = ns
        .client
        .push_tracked(Job::new("Report", ())?.delay(Duration::from_secs(600)))
        .await?;
    let untracked = ns.client.push(Job::new("Report", ())?).await?;

    assert_eq!(
        api.cancel(queued.jid()).await?,
        Cancellation::Removed(State::Enqueued)
    );
    assert_eq!(
        api.cancel(later.jid()).await?,
        Cancellation::Removed(State::Scheduled)
    );
    assert_eq!(
        api.cancel(&untracked).await?,
        Cancellation::Removed(State::Enqueued)
    );
    assert_eq!(api.queue_size("reports").await?, 0);
    assert_eq!(api.queue_size("default").await?, 0);
    assert_eq!(api.scheduled().size().await?, 0);
    assert!(matches!(
        queued.result().await.unwrap_err(),
        Error::Cancelled { .. }
    ));
    assert_eq!(
        later.status().await?.map(|s| s.state),
        Some(State::Cancelled)
    );
    // Over already: nothing to do, said so.
    assert_eq!(
        api.cancel(queued.jid()).await?,
        Cancellation::AlreadyFinished(State::Cancelled)
    );
    Ok(())
}

#[tokio::test]
async fn a_running_job_is_cancelled_within_a_second_and_never_retried() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let polite = Polite::default();
    let mut registry = Registry::new();
    registry.register(polite.clone()).register(Stubborn);
    let config = ns
        .config()
        .concurrency(4)
        .cancel_grace(Duration::from_millis(500));
    let server = RunningServer::start(config, registry);
    let api = ns.jobs.api().await?;

    for job in [Job::of::<Polite>(&NoArgs)?, Job::of::<Stubborn>(&NoArgs)?] {
        let handle = ns.client.push_tracked(job).await?;
        let jid = handle.jid().to_string();
        wait_until(Duration::from_secs(10), "the job running", || async {
            handle.status().await.unwrap().map(|s| s.state) == Some(State::Running)
        })
        .await;
        let asked = Instant::now();
        assert!(matches!(
            api.cancel(&jid).await?,
            Cancellation::Signalled { .. }
        ));
        let end = handle.wait_within(Duration::from_secs(10)).await?;
        let took = asked.elapsed();
        assert_eq!(end.state, State::Cancelled, "{jid}");
        // Learned within the poll (0.5 s); a stubborn job also waits out its grace.
        assert!(took < Duration::from_secs(3), "cancelled in {took:?}");
    }
    assert_eq!(polite.stopped.load(Ordering::SeqCst), 1);
    assert_eq!(
        api.retries().size().await?,
        0,
        "a cancelled job is never retried"
    );
    assert_eq!(api.dead().size().await?, 0);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_cancelled_jid_that_turns_up_later_ends_unrun() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let record = Record::default();
    let api = ns.jobs.api().await?;
    // Not anywhere yet (a push still on its way): marked.
    assert_eq!(api.cancel("late-jid-1").await?, Cancellation::NotFound);
    let handle = ns
        .client
        .push_tracked(Job::new("Record", (1,))?.jid("late-jid-1"))
        .await?;
    let server = RunningServer::start(ns.config(), registry_with(&record));
    let end = handle.wait_within(Duration::from_secs(10)).await?;
    assert_eq!(end.state, State::Cancelled);
    ns.client.push(Job::new("Record", (2,))?).await?;
    wait_until(Duration::from_secs(10), "the other job", || async {
        record.count() == 1
    })
    .await;
    assert_eq!(record.seen(), vec![serde_json::json!([2])]);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_event_stream_tells_a_jobs_life_in_order() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut client = ns.client.clone();
    client.emit_events(1_000);
    let mut registry = Registry::new();
    registry.register(Add).register(Doomed);
    let server = RunningServer::start(ns.config().events(1_000), registry);
    // Opened before the pushes: it reads what comes after.
    let mut events = client.events().await?;
    let ok = client.enqueue_tracked::<Add>((1, 2)).await?;
    ok.result().await?;
    let bad = client.enqueue_tracked::<Doomed>(NoArgs).await?;
    assert!(bad.result().await.is_err());
    let mut seen = Vec::new();
    while seen.len() < 7 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("events in time")
            .expect("an open stream")?;
        seen.push((event.jid.clone(), event.kind));
    }
    let of = |jid: &str| -> Vec<EventKind> {
        seen.iter()
            .filter(|(j, _)| j == jid)
            .map(|(_, kind)| *kind)
            .collect()
    };
    assert_eq!(
        of(ok.jid()),
        [
            EventKind::Enqueued,
            EventKind::Started,
            EventKind::Succeeded
        ]
    );
    assert_eq!(
        of(bad.jid()),
        [
            EventKind::Enqueued,
            EventKind::Started,
            EventKind::Failed,
            EventKind::Dead
        ]
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn kill_9_of_the_process_running_a_tracked_job_ends_with_the_rerun() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let handle = ns.client.push_tracked(Job::new("Sleep", (1_500,))?).await?;
    let args = ["-s", "demo", "-c", "2"];
    let mut first = Spawned::start(&ns, &args);
    wait_until(Duration::from_secs(20), "the job running", || async {
        handle.status().await.unwrap().map(|s| s.state) == Some(State::Running)
    })
    .await;
    let killed = handle.status().await?.unwrap().process;
    first.kill9();
    // The caller waits across the crash; a second server recovers and reruns the job.
    let waiter = tokio::spawn({
        let handle = handle.clone();
        async move { handle.wait_within(Duration::from_secs(60)).await }
    });
    let _second = Spawned::start(&ns, &args);
    let end = waiter.await.expect("waiter")?;
    assert_eq!(end.state, State::Succeeded);
    assert_ne!(end.process, killed, "the rerun ran elsewhere");
    Ok(())
}

#[tokio::test]
async fn psychiq_cancel_stops_a_command_workers_program_with_term_then_kill() -> psychiq::Result<()>
{
    let ns = TestNs::new().await;
    let dir = std::env::temp_dir().join(format!("{}-cancel", ns.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let marks = dir.join("marks");
    let toml = format!(
        r#"
[workers."Shell::Patient"]
command = ["sh", "-c", 'trap "echo term >> {marks}" TERM; echo started >> {marks}; while true; do sleep 0.1; done']

[workers."Shell::Deaf"]
command = ["sh", "-c", 'trap "" TERM; echo started >> {marks}; while true; do sleep 0.1; done']
"#,
        marks = marks.display()
    );
    let file = dir.join("workers.toml");
    std::fs::write(&file, toml).unwrap();
    let mut server = Spawned::start(
        &ns,
        &[
            "-s",
            file.to_str().unwrap(),
            "-c",
            "2",
            "--cancel-grace",
            "1",
            "--events",
        ],
    );
    let patient = ns
        .client
        .push_tracked(Job::new("Shell::Patient", ())?)
        .await?;
    let deaf = ns.client.push_tracked(Job::new("Shell::Deaf", ())?).await?;
    wait_until(Duration::from_secs(10), "both programs started", || async {
        std::fs::read_to_string(&marks).is_ok_and(|s| s.matches("started").count() == 2)
    })
    .await;
    for handle in [&patient, &deaf] {
        let output = psychiq_on(&ns, &["cancel", handle.jid()]);
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{said}");
        assert!(said.contains("cancelling"), "{said}");
    }
    for handle in [&patient, &deaf] {
        let end = handle.wait_within(Duration::from_secs(10)).await?;
        assert_eq!(end.state, State::Cancelled);
    }
    // The patient one heard TERM; the deaf one was killed after its grace. Neither runs on.
    let written = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(written.matches("term").count(), 1, "{written}");
    let shown = psychiq_on(&ns, &["job", patient.jid()]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("cancelled (tracked)"), "{shown}");
    let events = psychiq_on(&ns, &["events", "--json", "--class", "Shell::Deaf"]);
    let kinds: Vec<String> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(kinds, ["\"started\"", "\"cancelled\""]);
    // Nothing left running in the process group.
    let ps = std::process::Command::new("pgrep")
        .args(["-f", &marks.display().to_string()])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&ps.stdout)
    );
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
    let unknown = psychiq_on(&ns, &["cancel", "no-such-jid"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("marked"));
    Ok(())
}

#[tokio::test]
async fn a_job_tracked_by_its_worker_alone_records_its_death_and_a_cancelled_batch_job_dies()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let polite = Polite::default();
    let mut registry = Registry::new();
    registry.register(Doomed).register(polite.clone());
    let server = RunningServer::start(
        ns.config().cancel_grace(Duration::from_millis(500)),
        registry,
    );
    let api = ns.jobs.api().await?;

    // Pushed as Ruby would, without the track field: its worker asks for tracking.
    let jid = ns
        .client
        .push(Job::new("Doomed", ())?.retry(Retry::Max(0)))
        .await?;
    wait_until(Duration::from_secs(10), "its death recorded", || async {
        api.tracked_status(&jid).await.unwrap().map(|s| s.state) == Some(State::Dead)
    })
    .await;
    let ttl: i64 = ns
        .query(redis::cmd("TTL").arg(ns.keys().status(&jid)))
        .await;
    assert!(
        ttl > 0 && ttl <= 600,
        "kept for the worker's retention: {ttl}"
    );

    // A batch job that stops cleanly when cancelled dies for its batch; it never succeeds.
    let batch = psychiq::batch::Batch::new("cancel me");
    let bid = batch.bid().to_string();
    let jid = psychiq::__private::new_jid();
    batch
        .push(
            &ns.client,
            vec![Job::of::<Polite>(&NoArgs)?.track().jid(&jid)],
        )
        .await?;
    let handle = ns.client.handle::<serde_json::Value>(&jid);
    wait_until(Duration::from_secs(10), "the batch job running", || async {
        handle.status().await.unwrap().map(|s| s.state) == Some(State::Running)
    })
    .await;
    api.cancel(handle.jid()).await?;
    assert_eq!(
        handle.wait_within(Duration::from_secs(10)).await?.state,
        State::Cancelled
    );
    wait_until(Duration::from_secs(10), "the batch counted it", || async {
        let status = api.batch(&bid).await.unwrap().unwrap();
        status.pending == 0 && status.dead == 1
    })
    .await;
    let status = api.batch(&bid).await?.unwrap();
    assert!(status.success_at.is_none(), "{status:?}");
    assert_eq!(polite.stopped.load(Ordering::SeqCst), 1);
    server.stop().await;
    Ok(())
}
