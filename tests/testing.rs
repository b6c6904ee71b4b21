//! The test mode, as a user's suite uses it: no Redis anywhere in this file.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use psychiq::testing::{Fake, WentTo};
use psychiq::{Client, Error, Job, JobError, JobResult, NoArgs, Outcome, Registry, Retry, Worker};

struct Leaf {
    seen: Arc<AtomicUsize>,
}
impl Worker for Leaf {
    type Args = (u32,);
    async fn perform(&self, (n,): Self::Args) -> JobResult {
        let job = psychiq::context::current().expect("a job context in test mode too");
        assert_eq!(job.class(), "Leaf");
        self.seen.fetch_add(n as usize, Ordering::SeqCst);
        Ok(())
    }
}

/// Fails until it has been tried `fail_times` times.
struct Flaky {
    tries: Arc<AtomicUsize>,
    fail_times: usize,
}
impl Worker for Flaky {
    type Args = NoArgs;
    fn options() -> psychiq::WorkerOptions {
        psychiq::WorkerOptions::default()
            .retry(Retry::Max(2))
            .queue("flaky")
    }
    async fn perform(&self, _: NoArgs) -> JobResult {
        if self.tries.fetch_add(1, Ordering::SeqCst) < self.fail_times {
            return Err(std::io::Error::other("upstream down").into());
        }
        Ok(())
    }
}

struct Panics;
impl Worker for Panics {
    type Args = NoArgs;
    async fn perform(&self, _: NoArgs) -> JobResult {
        panic!("boom in a job")
    }
}

struct Snoozes;
impl Worker for Snoozes {
    type Args = NoArgs;
    async fn perform(&self, _: NoArgs) -> JobResult {
        Err(JobError::snooze(Duration::from_secs(60)))
    }
}

#[tokio::test]
async fn drain_runs_jobs_that_jobs_enqueue() {
    let seen = Arc::new(AtomicUsize::new(0));
    let fake_cell: Arc<std::sync::OnceLock<Client>> = Arc::default();
    // The worker reaches the fake's client through a cell filled once the fake exists.
    struct Fan(Arc<std::sync::OnceLock<Client>>);
    impl Worker for Fan {
        type Args = (Vec<u32>,);
        fn class_name() -> String {
            "Fanout".into()
        }
        async fn perform(&self, (items,): Self::Args) -> JobResult {
            let client = self.0.get().expect("client set");
            let many = items.into_iter().map(|n| (n,));
            client.enqueue_bulk::<Leaf>(many).await?;
            Ok(())
        }
    }
    let mut registry = Registry::new();
    registry
        .register(Leaf {
            seen: Arc::clone(&seen),
        })
        .register(Fan(Arc::clone(&fake_cell)));
    let fake = Fake::new(registry);
    fake_cell.set(fake.client()).ok();

    fake.client()
        .enqueue::<Fan>((vec![1, 2, 3],))
        .await
        .unwrap();
    fake.assert_enqueued::<Fan>(&(vec![1, 2, 3],));
    fake.refute_enqueued::<Leaf>();
    let drained = fake.drain().await.unwrap();
    assert_eq!(drained.performed, 4, "the fan-out and its three leaves");
    assert_eq!(seen.load(Ordering::SeqCst), 6);
    assert!(fake.jobs().is_empty());
}

#[tokio::test]
async fn recorded_jobs_are_the_payloads_a_real_client_writes() {
    let fake = Fake::new(Registry::new());
    let client = fake.client();
    let jid = client
        .push(
            Job::new("Billing::InvoiceJob", (42, "eur"))
                .unwrap()
                .queue("billing")
                .option("tags", serde_json::json!(["q4"])),
        )
        .await
        .unwrap();
    client
        .enqueue_in::<Leaf>(Duration::from_secs(300), (7,))
        .await
        .unwrap();

    let invoice = &fake.jobs_of_class("Billing::InvoiceJob")[0];
    assert_eq!(invoice.jid(), jid);
    assert_eq!(invoice.queue(), "billing");
    assert_eq!(invoice.args::<(u64, String)>().unwrap(), (42, "eur".into()));
    assert_eq!(invoice.field("tags"), Some(&serde_json::json!(["q4"])));
    assert!(invoice.at().is_none());
    assert!(invoice.payload().starts_with(r#"{"retry":true,"queue":"billing","tags":["q4"],"args":[42,"eur"],"class":"Billing::InvoiceJob""#), "{}", invoice.payload());
    assert!(invoice.field("enqueued_at").is_some());
    fake.assert_enqueued_class("Billing::InvoiceJob", (42, "eur"));

    let later = &fake.jobs_for::<Leaf>()[0];
    let wait = later
        .at()
        .unwrap()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(wait > Duration::from_secs(290), "{wait:?}");
    assert!(
        later.field("enqueued_at").is_none(),
        "a scheduled job is not enqueued yet"
    );
    assert_eq!(fake.jobs_in_queue("billing").len(), 1);

    fake.clear_for::<Leaf>();
    assert_eq!(fake.jobs().len(), 1);
    fake.clear();
    assert!(fake.jobs().is_empty());
}

#[tokio::test]
async fn scheduled_jobs_wait_for_drain_all() {
    let seen = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    registry.register(Leaf {
        seen: Arc::clone(&seen),
    });
    let fake = Fake::new(registry);
    let client = fake.client();
    client
        .enqueue_in::<Leaf>(Duration::from_secs(3600), (5,))
        .await
        .unwrap();
    client.enqueue::<Leaf>((1,)).await.unwrap();
    assert_eq!(fake.drain().await.unwrap().performed, 1);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(fake.jobs().len(), 1, "the scheduled one waits");
    assert_eq!(fake.drain_all().await.unwrap().performed, 1);
    assert_eq!(seen.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn failures_follow_the_retry_rules_and_retries_are_driven_by_hand() {
    let tries = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    registry.register(Flaky {
        tries: Arc::clone(&tries),
        fail_times: 1,
    });
    let fake = Fake::new(registry);
    fake.client().enqueue::<Flaky>(NoArgs).await.unwrap();

    let failed = fake.drain().await.unwrap_err();
    assert_eq!(failed.went_to, WentTo::Retry);
    assert_eq!(failed.error.message(), "upstream down");
    assert!(failed.to_string().contains("Flaky"), "{failed}");
    let retry = &fake.retries()[0];
    assert_eq!(retry.retry_count(), Some(0));
    assert_eq!(retry.error_message(), Some("upstream down"));
    assert_eq!(retry.queue(), "flaky");
    assert!(retry.at().is_some(), "a retry is due later");
    assert!(fake.jobs().is_empty());

    fake.retry_all();
    assert!(fake.retries().is_empty());
    assert_eq!(fake.drain().await.unwrap().performed, 1);
    assert_eq!(tries.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn exhausted_retries_go_dead_and_bad_jobs_are_named() {
    let tries = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    registry.register(Flaky {
        tries: Arc::clone(&tries),
        fail_times: usize::MAX,
    });
    registry.register(Panics);
    let fake = Fake::new(registry);
    let client = fake.client();
    client.enqueue::<Flaky>(NoArgs).await.unwrap();
    // retry: 2 allows two retries: three runs, then dead.
    for attempt in 0..3 {
        let failed = fake.drain().await.unwrap_err();
        let expected = if attempt < 2 {
            WentTo::Retry
        } else {
            WentTo::Dead
        };
        assert_eq!(failed.went_to, expected, "attempt {attempt}");
        fake.retry_all();
    }
    assert_eq!(fake.dead()[0].retry_count(), Some(2));

    client.enqueue::<Panics>(NoArgs).await.unwrap();
    let failed = fake.drain().await.unwrap_err();
    assert_eq!(failed.error.class(), "Panic");
    assert!(failed.error.message().contains("boom in a job"));

    client
        .push(Job::new("Nobody::Home", ()).unwrap())
        .await
        .unwrap();
    let failed = fake.drain().await.unwrap_err();
    assert_eq!(failed.error.class(), "Psychiq::UnknownClass");
}

#[tokio::test]
async fn arguments_that_do_not_fit_die_at_once() {
    let mut registry = Registry::new();
    registry.register(Leaf {
        seen: Arc::default(),
    });
    let fake = Fake::new(registry);
    fake.client()
        .push(Job::new("Leaf", ("not a number",)).unwrap())
        .await
        .unwrap();
    let failed = fake.drain().await.unwrap_err();
    assert_eq!(failed.error.class(), "Psychiq::InvalidArguments");
    assert_eq!(failed.went_to, WentTo::Dead);
}

#[tokio::test]
async fn a_snoozed_job_waits_and_a_refused_push_is_not_recorded() {
    let mut registry = Registry::new();
    registry.register(Snoozes);
    let fake = Fake::new(registry);
    let mut client = fake.client();
    client.enqueue::<Snoozes>(NoArgs).await.unwrap();
    assert_eq!(fake.drain().await.unwrap().snoozed, 1);
    let waiting = fake.jobs_for::<Snoozes>();
    assert_eq!(waiting.len(), 1);
    assert!(waiting[0].at().is_some());
    assert!(
        waiting[0].retry_count().is_none(),
        "a snooze is not a failure"
    );

    struct NoGuests;
    impl psychiq::middleware::ClientMiddleware for NoGuests {
        async fn call(&self, job: &mut Job) -> Result<(), String> {
            if job.queue_name() == "guests" {
                return Err("guests are closed".into());
            }
            job.set_option("tenant", "acme".into());
            Ok(())
        }
    }
    client.middleware().add(NoGuests);
    let refused = client
        .push(Job::new("X", ()).unwrap().queue("guests"))
        .await;
    assert!(
        matches!(refused, Err(Error::NotPushed { .. })),
        "{refused:?}"
    );
    client.push(Job::new("X", ()).unwrap()).await.unwrap();
    let x = &fake.jobs_of_class("X")[0];
    assert_eq!(x.field("tenant"), Some(&serde_json::json!("acme")));
}

#[tokio::test]
async fn inline_performs_at_once_and_returns_the_failure() {
    let seen = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    registry
        .register(Leaf {
            seen: Arc::clone(&seen),
        })
        .register(Panics);
    let client = psychiq::testing::inline(registry);
    client.enqueue::<Leaf>((4,)).await.unwrap();
    client
        .enqueue_in::<Leaf>(Duration::from_secs(600), (5,))
        .await
        .unwrap();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        9,
        "scheduled jobs run at once too"
    );
    let err = client.enqueue::<Panics>(NoArgs).await.unwrap_err();
    assert!(matches!(&err, Error::JobFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("boom in a job"), "{err}");
    assert!(client.redis_connection().is_none());
}

#[tokio::test]
async fn perform_runs_one_job_without_enqueueing() {
    let mut registry = Registry::new();
    registry.register(Snoozes).register(Panics);
    let fake = Fake::new(registry);
    assert!(matches!(
        fake.perform::<Snoozes>(NoArgs).await,
        Outcome::Snoozed(_)
    ));
    assert!(
        matches!(fake.perform::<Panics>(NoArgs).await, Outcome::Failed(e) if e.class() == "Panic")
    );
    assert!(fake.jobs().is_empty());
}

#[tokio::test]
#[should_panic(expected = "no Leaf job with args [9] is enqueued; waiting: \n  Leaf [1]")]
async fn assert_enqueued_says_what_is_waiting() {
    let fake = Fake::new(Registry::new());
    fake.client().enqueue::<Leaf>((1,)).await.unwrap();
    fake.assert_enqueued::<Leaf>(&(9,));
}

/// A struct (or map) as `Args` is the job's one argument, `[{…}]`, both ways: written so by
/// `enqueue`, and read so from a payload another client (a Ruby `perform(order)`) wrote.
#[tokio::test]
async fn a_struct_is_the_jobs_one_argument() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
        sku: String,
    }
    struct Ship(Arc<std::sync::Mutex<Vec<Order>>>);
    impl Worker for Ship {
        type Args = Order;
        async fn perform(&self, order: Order) -> JobResult {
            self.0.lock().unwrap().push(order);
            Ok(())
        }
    }
    struct Tally(Arc<AtomicUsize>);
    impl Worker for Tally {
        type Args = std::collections::HashMap<String, u32>;
        async fn perform(&self, counts: Self::Args) -> JobResult {
            self.0
                .fetch_add(counts.values().sum::<u32>() as usize, Ordering::SeqCst);
            Ok(())
        }
    }
    let shipped = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tallied = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    registry
        .register(Ship(Arc::clone(&shipped)))
        .register(Tally(Arc::clone(&tallied)));
    let fake = Fake::new(registry);
    let order = Order {
        id: 7,
        sku: "A1".into(),
    };
    fake.client().enqueue::<Ship>(order).await.unwrap();
    let waiting = fake.jobs_for::<Ship>();
    assert_eq!(
        waiting[0].args_json(),
        &serde_json::json!([{"id": 7, "sku": "A1"}])
    );
    assert_eq!(
        waiting[0].args::<Order>().unwrap(),
        Order {
            id: 7,
            sku: "A1".into()
        }
    );
    fake.assert_enqueued::<Ship>(&Order {
        id: 7,
        sku: "A1".into(),
    });
    // As Ruby's `Ship.perform_async({"id" => 8, "sku" => "B2"})` writes it.
    fake.client()
        .push(Job::new("Ship", serde_json::json!([{"id": 8, "sku": "B2"}])).unwrap())
        .await
        .unwrap();
    fake.client()
        .push(Job::new("Tally", serde_json::json!({"a": 2, "b": 3})).unwrap())
        .await
        .unwrap();
    // A struct written as the list of its fields (0.1's shape, a Ruby `perform(9, "C3")`)
    // still reads.
    fake.client()
        .push(Job::new("Ship", (9, "C3")).unwrap())
        .await
        .unwrap();
    fake.drain().await.unwrap();
    let shipped = shipped.lock().unwrap();
    let order = |id: u64, sku: &str| Order {
        id,
        sku: sku.into(),
    };
    assert_eq!(shipped[1..], [order(8, "B2"), order(9, "C3")]);
    assert_eq!(tallied.load(Ordering::SeqCst), 5);
}

/// An enum argument, which `Job::new` writes as one object, reads back.
#[tokio::test]
async fn an_enum_is_the_jobs_one_argument() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Command {
        Refund { order: u64 },
    }
    struct Act(Arc<std::sync::Mutex<Vec<Command>>>);
    impl Worker for Act {
        type Args = Command;
        async fn perform(&self, command: Command) -> JobResult {
            self.0.lock().unwrap().push(command);
            Ok(())
        }
    }
    let done = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut registry = Registry::new();
    registry.register(Act(Arc::clone(&done)));
    let fake = Fake::new(registry);
    fake.client()
        .enqueue::<Act>(Command::Refund { order: 7 })
        .await
        .unwrap();
    fake.drain().await.unwrap();
    assert_eq!(*done.lock().unwrap(), [Command::Refund { order: 7 }]);
}

/// Two workers for one class name are refused when registered, naming both.
#[test]
#[should_panic(expected = "class \"Leaf\" is registered twice")]
fn two_workers_for_one_class_are_refused() {
    mod other {
        pub struct Leaf;
        impl psychiq::Worker for Leaf {
            type Args = psychiq::NoArgs;
            async fn perform(&self, _: psychiq::NoArgs) -> psychiq::JobResult {
                Ok(())
            }
        }
    }
    let mut registry = Registry::new();
    registry
        .register(Leaf {
            seen: Arc::default(),
        })
        .register(other::Leaf);
}

/// The test mode refuses a unique job's twin as Redis does, answering with the waiting jid.
#[tokio::test]
async fn a_unique_jobs_twin_is_refused_in_the_fake_too() {
    let seen = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    registry.register(Leaf {
        seen: Arc::clone(&seen),
    });
    let fake = Fake::new(registry);
    let unique = || {
        Job::of::<Leaf>(&(3,))
            .unwrap()
            .unique_for(Duration::from_secs(60))
    };
    let first = fake.client().try_push(unique()).await.unwrap();
    let psychiq::Push::Pushed(jid) = first else {
        panic!("{first:?}")
    };
    let twin = fake.client().try_push(unique()).await.unwrap();
    assert!(
        matches!(&twin, psychiq::Push::Duplicate(j) if *j == jid),
        "{twin:?}"
    );
    assert_eq!(fake.jobs().len(), 1);
    // Another argument is another job; once the first has run, it may be pushed again.
    fake.client()
        .push(
            Job::of::<Leaf>(&(4,))
                .unwrap()
                .unique_for(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(fake.jobs().len(), 2);
    fake.drain().await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 7);
    assert!(matches!(
        fake.client().try_push(unique()).await.unwrap(),
        psychiq::Push::Pushed(_)
    ));
}

/// Records the class, args and `batch_event` of every job it runs; fails the job whose
/// argument is "fail" (its retries set by the job), as a batch's member or callback.
#[derive(Clone, Default)]
struct Member {
    ran: Arc<std::sync::Mutex<Vec<String>>>,
}
impl psychiq::RawWorker for Member {
    fn start(&self, job: &psychiq::RawJob<'_>) -> Result<psychiq::JobFuture, serde_json::Error> {
        let args: serde_json::Value = serde_json::from_str(job.args())?;
        let ran = Arc::clone(&self.ran);
        let class = job.class().to_string();
        Ok(Box::pin(async move {
            let event = psychiq::context::current()
                .and_then(|c| c.field("batch_event").cloned())
                .map(|e| format!(" {}", e["event"].as_str().unwrap_or("?")))
                .unwrap_or_default();
            ran.lock().unwrap().push(format!("{class}{event} {args}"));
            if args[0] == "fail" {
                return Err(JobError::new("Member::Failed", "asked to"));
            }
            Ok(())
        }))
    }
    fn options(&self) -> &psychiq::WorkerOptions {
        static OPTIONS: std::sync::LazyLock<psychiq::WorkerOptions> =
            std::sync::LazyLock::new(psychiq::WorkerOptions::default);
        &OPTIONS
    }
}

fn member_registry(member: &Member) -> Registry {
    let mut registry = Registry::new();
    for class in ["Row", "Done", "Good", "Dead"] {
        registry.register_raw(class, member.clone());
    }
    registry
}

#[tokio::test]
async fn a_batchs_callbacks_fire_in_the_drain_as_on_a_server() -> psychiq::Result<()> {
    use psychiq::batch::Batch;
    let member = Member::default();
    let fake = Fake::new(member_registry(&member));
    let client = fake.client();
    let bid = Batch::new("import")
        .on_complete(Job::new("Done", ("import",))?)
        .on_success(Job::new("Good", ("import",))?)
        .on_death(Job::new("Dead", ("import",))?)
        .push(
            &client,
            vec![
                Job::new("Row", (1,))?,
                Job::new("Row", ("fail",))?.retry(Retry::Max(1)),
            ],
        )
        .await?;
    assert_eq!(fake.jobs_of_class("Row").len(), 2);
    assert_eq!(fake.jobs_of_class("Row")[0].field("bid").unwrap(), &bid);

    // Row 2 fails: every job has run, so "complete" fires; "success" waits for the retry.
    let failed = fake.drain().await.unwrap_err();
    assert_eq!(failed.went_to, WentTo::Retry);
    fake.drain().await.unwrap();
    let ran = member.ran.lock().unwrap().clone();
    assert_eq!(
        ran,
        ["Row [1]", "Row [\"fail\"]", "Done complete [\"import\"]"]
    );

    // Its last retry fails too: it dies, and "death" fires; "success" never does.
    fake.retry_all();
    assert_eq!(fake.drain().await.unwrap_err().went_to, WentTo::Dead);
    fake.drain().await.unwrap();
    let ran = member.ran.lock().unwrap().clone();
    assert_eq!(ran[3..], ["Row [\"fail\"]", "Dead death [\"import\"]"]);
    assert!(fake.jobs().is_empty());

    // A job of a class no worker serves fails before any middleware runs, so, as on a
    // server, it is not counted as run: its batch does not complete.
    member.ran.lock().unwrap().clear();
    Batch::new("unserved")
        .on_complete(Job::new("Done", ("unserved",))?)
        .push(&client, vec![Job::new("Nobody", (1,))?])
        .await?;
    assert_eq!(fake.drain().await.unwrap_err().went_to, WentTo::Retry);
    fake.drain().await.unwrap();
    assert!(member.ran.lock().unwrap().is_empty(), "no callback fired");
    fake.clear();

    // A child batch: the parent succeeds only after it, and jobs added while the parent is
    // open count.
    member.ran.lock().unwrap().clear();
    let parent = Batch::new("parent")
        .on_success(Job::new("Good", ("parent",))?)
        .push(&client, vec![Job::new("Row", (10,))?])
        .await?;
    Batch::new("child")
        .parent(&parent)
        .on_success(Job::new("Good", ("child",))?)
        .push(&client, vec![Job::new("Row", (11,))?])
        .await?;
    Batch::open(&client, &parent, vec![Job::new("Row", (12,))?]).await?;
    fake.drain().await.unwrap();
    let ran = member.ran.lock().unwrap().clone();
    assert_eq!(
        ran,
        [
            "Row [10]",
            "Row [11]",
            "Row [12]",
            "Good success [\"child\"]",
            "Good success [\"parent\"]",
        ]
    );
    // A succeeded batch takes no more work, as on a server.
    let late = Batch::open(&client, &parent, vec![Job::new("Row", (13,))?]).await;
    assert!(late.unwrap_err().to_string().contains("already succeeded"));
    // The inline mode has no drain to wait in, and says so.
    let inline = psychiq::testing::inline(member_registry(&member));
    let refused = Batch::new("x")
        .push(&inline, vec![Job::new("Row", (1,))?])
        .await;
    assert!(refused.unwrap_err().to_string().contains("testing::Fake"));
    Ok(())
}

/// Counts to its argument, a number a step; records its hooks.
#[derive(Clone, Default)]
struct Counter {
    hooks: Arc<std::sync::Mutex<Vec<String>>>,
}
impl psychiq::iteration::IterableWorker for Counter {
    type Args = (u64,);
    type Cursor = u64;
    async fn step(&self, (to,): &(u64,), at: Option<u64>) -> Result<Option<u64>, JobError> {
        let next = at.unwrap_or(0) + 1;
        Ok((next < *to).then_some(next))
    }
    async fn on_start(&self, _: &(u64,)) {
        self.hooks.lock().unwrap().push("start".into());
    }
    async fn on_resume(&self, _: &(u64,)) {
        self.hooks.lock().unwrap().push("resume".into());
    }
    async fn on_stop(&self, _: &(u64,)) {
        self.hooks.lock().unwrap().push("stop".into());
    }
    async fn on_cancel(&self, _: &(u64,)) {
        self.hooks.lock().unwrap().push("cancel".into());
    }
    async fn on_complete(&self, _: &(u64,)) {
        self.hooks.lock().unwrap().push("complete".into());
    }
}

#[tokio::test]
async fn an_iterable_job_is_stepped_resumed_and_cancelled() -> psychiq::Result<()> {
    let counter = Counter::default();
    let mut registry = Registry::new();
    registry.register_iterable(counter.clone());
    let fake = Fake::new(registry).steps_per_run(2);
    let jid = fake.client().push(Job::new("Counter", (6,))?).await?;

    // Runs of two steps: the cursor is saved after each, and the job goes back to its
    // queue between runs.
    for expected in [2, 4] {
        let run = fake.run_one().await.unwrap();
        assert_eq!(run.snoozed, 1, "a run ends early, not as a failure");
        assert_eq!(fake.cursor(&jid), Some(serde_json::json!(expected)));
        assert!(!fake.iteration_done(&jid));
    }
    assert_eq!(fake.run_one().await.unwrap().performed, 1);
    assert!(fake.iteration_done(&jid));
    assert_eq!(
        *counter.hooks.lock().unwrap(),
        ["start", "stop", "resume", "stop", "resume", "complete"]
    );

    // Cancelled between runs: the next run ends before its first step.
    counter.hooks.lock().unwrap().clear();
    let jid = fake.client().push(Job::new("Counter", (100,))?).await?;
    fake.run_one().await.unwrap();
    fake.cancel_iteration(&jid);
    assert_eq!(fake.drain().await.unwrap().performed, 1);
    assert_eq!(fake.cursor(&jid), Some(serde_json::json!(2)));
    assert!(fake.iteration_done(&jid));
    assert_eq!(*counter.hooks.lock().unwrap(), ["start", "stop", "cancel"]);
    Ok(())
}

#[tokio::test]
async fn a_periodic_entry_ticks_by_hand() -> psychiq::Result<()> {
    use psychiq::periodic::{PeriodicJob, Schedule};
    let member = Member::default();
    let mut registry = member_registry(&member);
    registry.periodic(PeriodicJob::new(
        "hourly-import",
        Schedule::cron("0 * * * *")?,
        Job::new("Row", ("hourly",))?.queue("imports"),
    )?);
    let fake = Fake::new(registry);
    let jid = fake.tick("hourly-import")?;
    let job = &fake.jobs_in_queue("imports")[0];
    assert_eq!(job.jid(), jid);
    let tick = job.field("periodic_at").and_then(|t| t.as_i64()).unwrap();
    assert_eq!(tick % 3600, 0, "the entry's next tick, on the hour");
    assert_eq!(fake.drain().await.unwrap().performed, 1);
    let unknown = fake.tick("hourly").unwrap_err().to_string();
    assert!(unknown.contains("it has: hourly-import"), "{unknown}");
    Ok(())
}

#[tokio::test]
async fn batches_and_periodic_entries_refuse_what_a_push_refuses() -> psychiq::Result<()> {
    use psychiq::batch::Batch;
    use psychiq::periodic::{PeriodicJob, Schedule};
    let fake = Fake::new(Registry::new());
    let no_queue = Job::new("Row", (1,))?.queue("");
    let refused = Batch::new("x")
        .push(
            &fake.client(),
            vec![Job::new("Row", (0,))?, no_queue.clone()],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("empty queue name"), "{refused}");
    assert!(
        fake.jobs().is_empty(),
        "nothing of a refused batch is pushed"
    );
    let bad_tags = Job::new("Row", (1,))?.option("tags", "q4".into());
    let refused = PeriodicJob::new("nightly", Schedule::cron("@daily")?, bad_tags)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("periodic \"nightly\"") && refused.contains("tags must be a list"),
        "{refused}"
    );
    Ok(())
}

/// Doubles its argument; fails on 13.
struct Double;
impl psychiq::Task for Double {
    type Args = (i64,);
    type Output = i64;
    async fn run(&self, (n,): Self::Args) -> Result<i64, JobError> {
        if n == 13 {
            return Err(JobError::new("Unlucky", "thirteen"));
        }
        Ok(n * 2)
    }
}

#[tokio::test]
async fn a_tasks_result_is_awaited_in_the_test_mode_once_it_ran() -> psychiq::Result<()> {
    // Inline: performed at the push, so the result is there at once.
    let mut registry = Registry::new();
    registry.register(Double);
    let inline = psychiq::testing::inline(registry);
    let doubled = inline
        .enqueue_and_wait::<Double>((21,), Duration::from_secs(1))
        .await?;
    assert_eq!(doubled, 42);

    // A fake: nothing runs until it is drained, and the wait says so.
    let mut registry = Registry::new();
    registry.register(Double);
    let fake = Fake::new(registry);
    let client = fake.client();
    let handle = client.enqueue_tracked::<Double>((5,)).await?;
    let early = handle.result().await.unwrap_err();
    assert!(early.to_string().contains("drain"), "{early}");
    let unlucky = client.enqueue_tracked::<Double>((13,)).await?;
    let _ = fake.drain().await;
    assert_eq!(handle.result().await?, 10);
    let status = handle.status().await?.expect("tracked");
    assert_eq!(status.result.as_deref(), Some("10"));
    // The failure went to its retries, as a server would send it.
    let failed = unlucky.status().await?.expect("tracked");
    assert_eq!(failed.state, psychiq::status::State::Retrying);
    assert_eq!(failed.error.as_deref(), Some("Unlucky: thirteen"));
    assert!(matches!(
        unlucky.result().await.unwrap_err(),
        Error::WaitTimedOut { .. }
    ));
    Ok(())
}
