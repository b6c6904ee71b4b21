//! The job's path and its one seam: server middleware around `perform`, outcomes richer than
//! ok/error (snooze, discard, skip), the job's context inside `perform`, lifecycle events and
//! failure handlers, each checked in what a real server writes to Redis.

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use psychiq::context::JobContext;
use psychiq::events::Event;
use psychiq::middleware::{BoxFuture, Next, ServerMiddleware};
use psychiq::{Job, JobError, JobResult, Outcome, Registry, Server, Worker};
use serde_json::Value;

type Log = Arc<Mutex<Vec<String>>>;

/// Logs "NAME before CLASS" and "NAME after CLASS: OUTCOME" around the rest of the chain.
struct Around {
    name: &'static str,
    log: Log,
}

impl ServerMiddleware for Around {
    async fn call(&self, job: &JobContext, next: Next<'_>) -> Outcome {
        self.log
            .lock()
            .unwrap()
            .push(format!("{} before {}", self.name, job.class()));
        let outcome = next.run().await;
        let shown = match &outcome {
            Outcome::Done => "done".to_string(),
            Outcome::Failed(e) => format!("failed {}", e.class()),
            other => format!("{other:?}"),
        };
        self.log
            .lock()
            .unwrap()
            .push(format!("{} after {}: {shown}", self.name, job.class()));
        outcome
    }
}

// A second type, so the chain holds two (a type appears once in a chain).
struct Outer(Around);
impl ServerMiddleware for Outer {
    async fn call(&self, job: &JobContext, next: Next<'_>) -> Outcome {
        self.0.call(job, next).await
    }
}

/// Skips `Skipme`, fails `Refuse`, panics on `Explode`, forgives `Forgiven`'s failure.
struct Gate;
impl ServerMiddleware for Gate {
    async fn call(&self, job: &JobContext, next: Next<'_>) -> Outcome {
        match job.class() {
            "Skipme" => Outcome::Skipped("not today".into()),
            "Refuse" => Outcome::Failed(JobError::new("Gate::Refused", "no entry")),
            "Explode" => panic!("middleware boom"),
            "Forgiven" => match next.run().await {
                Outcome::Failed(_) => Outcome::Done,
                other => other,
            },
            _ => next.run().await,
        }
    }
}

/// Records what its context says. Class name `Seer`.
#[derive(Clone, Default)]
struct Seer {
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Worker for Seer {
    type Args = (u32,);
    async fn perform(&self, (n,): (u32,)) -> JobResult {
        let job = psychiq::context::current().expect("a context inside perform");
        self.seen.lock().unwrap().push(serde_json::json!({
            "n": n,
            "jid": job.jid(),
            "queue": job.queue(),
            "class": job.class(),
            "tenant": job.field("tenant_id"),
            "retry_count": job.retry_count(),
            "enqueued": job.enqueued_at().is_some(),
        }));
        Ok(())
    }
}

/// Asks for another outcome by its argument: "snooze", "discard", or fails.
struct Wish;
impl Worker for Wish {
    type Args = (String,);
    async fn perform(&self, (what,): (String,)) -> JobResult {
        match what.as_str() {
            "snooze" => Err(JobError::snooze(Duration::from_secs(600))),
            "discard" => Err(JobError::discard("order cancelled")),
            _ => Err(JobError::new("Wish::Failed", "as asked")),
        }
    }
}

/// Fails with its name. Served under several class names.
struct Alias(&'static str);
impl psychiq::Worker for Alias {
    type Args = Vec<Value>;
    async fn perform(&self, _: Vec<Value>) -> JobResult {
        Err(JobError::new("Alias::Failed", self.0))
    }
}

fn registry(seer: &Seer) -> Registry {
    let mut registry = Registry::new();
    registry.register(seer.clone()).register(Wish);
    registry
}

async fn drained(ns: &TestNs) {
    wait_until(Duration::from_secs(10), "the queue drained", || async {
        let waiting: usize = ns
            .query(redis::cmd("LLEN").arg(ns.keys().queue("default")))
            .await;
        let held: Vec<String> = ns
            .query(redis::cmd("KEYS").arg(format!("{}:inprogress:*", ns.namespace)))
            .await;
        waiting == 0 && held.is_empty()
    })
    .await;
}

#[tokio::test]
async fn middleware_run_in_order_around_a_job_that_reads_its_context() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let log: Log = Log::default();
    let seer = Seer::default();
    let mut server = Server::new(ns.config(), registry(&seer));
    server
        .middleware()
        .add(Around {
            name: "inner",
            log: Arc::clone(&log),
        })
        .insert_before::<Around, _>(Outer(Around {
            name: "outer",
            log: Arc::clone(&log),
        }));
    assert_eq!(server.middleware().len(), 2);
    let running = RunningServer::start_server(server);
    let jid = ns
        .client
        .push(Job::new("Seer", (7,))?.option("tenant_id", "acme".into()))
        .await?;
    wait_until(Duration::from_secs(10), "the job", || async {
        !seer.seen.lock().unwrap().is_empty()
    })
    .await;
    drained(&ns).await;
    running.stop().await;
    assert_eq!(
        *log.lock().unwrap(),
        [
            "outer before Seer",
            "inner before Seer",
            "inner after Seer: done",
            "outer after Seer: done"
        ]
    );
    let seen = seer.seen.lock().unwrap()[0].clone();
    assert_eq!(seen["jid"], jid.as_str());
    assert_eq!(seen["queue"], "default");
    assert_eq!(seen["tenant"], "acme");
    assert_eq!(seen["retry_count"], Value::Null);
    assert_eq!(seen["enqueued"], true);
    assert!(
        psychiq::context::current().is_none(),
        "no context outside a job"
    );
    Ok(())
}

#[tokio::test]
async fn skip_fail_panic_and_forgive_from_a_middleware() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut registry = Registry::new();
    for class in ["Skipme", "Refuse", "Explode", "Forgiven"] {
        registry.register_as(class, Alias(class));
    }
    let seer = Seer::default();
    registry.register(seer.clone());
    let mut server = Server::new(ns.config(), registry);
    server.middleware().add(Gate);
    let running = RunningServer::start_server(server);
    for class in ["Skipme", "Refuse", "Explode", "Forgiven"] {
        ns.client.push(Job::new(class, ())?).await?;
    }
    ns.client.push(Job::new("Seer", (1,))?).await?;
    drained(&ns).await;
    wait_until(Duration::from_secs(10), "two failures recorded", || async {
        ns.zrange(&ns.keys().retry()).await.len() == 2
    })
    .await;
    running.stop().await;
    assert_eq!(
        seer.seen.lock().unwrap().len(),
        1,
        "the server went on after a panic"
    );
    let mut errors: Vec<(String, String)> = ns
        .zrange(&ns.keys().retry())
        .await
        .iter()
        .map(|raw| {
            let job: Value = serde_json::from_str(raw).unwrap();
            (
                job["class"].as_str().unwrap().into(),
                job["error_class"].as_str().unwrap().into(),
            )
        })
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            ("Explode".into(), "Panic".into()),
            ("Refuse".into(), "Gate::Refused".into())
        ]
    );
    assert!(ns.zrange(&ns.keys().dead()).await.is_empty());
    assert_eq!(ns.get_u64(&ns.keys().stat("processed")).await, 5);
    assert_eq!(ns.get_u64(&ns.keys().stat("failed")).await, 2);
    Ok(())
}

#[tokio::test]
async fn snoozed_and_discarded_jobs_are_not_failures() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let running = RunningServer::start(ns.config(), registry(&Seer::default()));
    let snoozed = Job::new("Wish", ("snooze",))?;
    ns.client.push(snoozed).await?;
    ns.client.push(Job::new("Wish", ("discard",))?).await?;
    drained(&ns).await;
    wait_until(
        Duration::from_secs(10),
        "the snoozed job scheduled",
        || async { !ns.zrange(&ns.keys().schedule()).await.is_empty() },
    )
    .await;
    running.stop().await;
    let scheduled: Vec<(String, f64)> = ns
        .query(
            redis::cmd("ZRANGE")
                .arg(ns.keys().schedule())
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )
        .await;
    assert_eq!(scheduled.len(), 1);
    let (raw, at) = &scheduled[0];
    let job: Value = serde_json::from_str(raw).unwrap();
    assert_eq!(job["args"][0], "snooze");
    assert!(
        job.get("retry_count").is_none(),
        "its retry count is unchanged: {raw}"
    );
    assert!(job.get("error_class").is_none(), "{raw}");
    let due = psychiq::__private::now_secs() + 600.0;
    assert!((due - 10.0..=due + 1.0).contains(at), "{at}");
    assert!(ns.zrange(&ns.keys().retry()).await.is_empty());
    assert!(ns.zrange(&ns.keys().dead()).await.is_empty());
    // The discarded one ran to an end; the snoozed one has not yet.
    assert_eq!(ns.get_u64(&ns.keys().stat("processed")).await, 1);
    assert_eq!(ns.get_u64(&ns.keys().stat("failed")).await, 0);
    Ok(())
}

#[tokio::test]
async fn lifecycle_events_fire_in_order_and_handlers_see_failures() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let log: Log = Log::default();
    let mut server = Server::new(ns.config(), registry(&Seer::default()));
    for event in [
        Event::Startup,
        Event::Quiet,
        Event::Shutdown,
        Event::Stopped,
    ] {
        let log = Arc::clone(&log);
        server.on(event, move || {
            let log = Arc::clone(&log);
            async move { log.lock().unwrap().push(format!("{event:?}")) }
        });
    }
    let errors = Arc::clone(&log);
    server.on_error(move |job| {
        let errors = Arc::clone(&errors);
        async move {
            errors
                .lock()
                .unwrap()
                .push(format!("error {} {}", job.class(), job.error.class()))
        }
    });
    let deaths = Arc::clone(&log);
    server.on_death(move |job| {
        let deaths = Arc::clone(&deaths);
        async move {
            deaths.lock().unwrap().push(format!(
                "death {} {}",
                job.jid(),
                job.payload["error_message"]
            ))
        }
    });
    server.on(Event::Startup, || async {
        panic!("a hook that panics is logged")
    });
    let running = RunningServer::start_server(server);
    let retried = ns.client.push(Job::new("Wish", ("fail",))?).await?;
    let dead = ns
        .client
        .push(Job::new("Wish", ("fail",))?.retry(psychiq::Retry::Max(0)))
        .await?;
    drained(&ns).await;
    wait_until(Duration::from_secs(10), "both handled", || async {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("error"))
            .count()
            == 2
    })
    .await;
    running.stop().await;
    let log = log.lock().unwrap().clone();
    let events: Vec<&str> = log
        .iter()
        .filter(|l| !l.contains(' '))
        .map(String::as_str)
        .collect();
    assert_eq!(events, ["Startup", "Quiet", "Shutdown", "Stopped"]);
    assert_eq!(
        log.iter()
            .filter(|l| *l == "error Wish Wish::Failed")
            .count(),
        2
    );
    let death: Vec<&String> = log.iter().filter(|l| l.starts_with("death")).collect();
    assert_eq!(death, [&format!("death {dead} \"as asked\"")]);
    assert!(
        !log.iter()
            .any(|l| l.contains(&retried) && l.starts_with("death"))
    );
    Ok(())
}

/// Fails its first two runs, then runs until told to stop. Counts its starts.
struct Flappy {
    starts: Arc<std::sync::atomic::AtomicUsize>,
}

impl psychiq::plugins::Plugin for Flappy {
    fn name(&self) -> &str {
        "flappy"
    }
    fn run(
        self: Arc<Self>,
        mut ctx: psychiq::plugins::PluginContext,
    ) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let n = self
                .starts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match n {
                0 => Err("first run fails".to_string()),
                1 => panic!("second run panics"),
                _ => {
                    ctx.stopping().await;
                    Ok(())
                }
            }
        })
    }
}

#[tokio::test]
async fn a_host_app_starts_watches_and_stops_the_server_from_code() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let log: Log = Log::default();
    let mut registry = Registry::new();
    registry.register(Nap);
    let mut server = Server::new(ns.config(), registry);
    for event in [
        Event::Startup,
        Event::Quiet,
        Event::Shutdown,
        Event::Stopped,
    ] {
        let log = Arc::clone(&log);
        server.on(event, move || {
            let log = Arc::clone(&log);
            async move { log.lock().unwrap().push(format!("{event:?}")) }
        });
    }
    let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    server.plugin(Flappy {
        starts: Arc::clone(&starts),
    });
    let handle = server.start().await?;
    assert_eq!(*log.lock().unwrap(), ["Startup"], "started and registered");
    assert_eq!(ns.registered_identity().await, handle.identity());
    ns.client.push(Job::new("Nap", (800,))?).await?;
    wait_until(Duration::from_secs(10), "the job running", || async {
        handle.running().len() == 1
    })
    .await;
    assert!(handle.running()[0].payload.contains("\"Nap\""));
    // Restarted after an error (1 s) and a panic (2 s), with backoff.
    wait_until(
        Duration::from_secs(10),
        "the plugin's third start",
        || async { starts.load(std::sync::atomic::Ordering::SeqCst) == 3 },
    )
    .await;
    handle.stop();
    handle.stopped().await;
    assert_eq!(
        *log.lock().unwrap(),
        ["Startup", "Quiet", "Shutdown", "Stopped"]
    );
    assert_eq!(
        ns.get_u64(&ns.keys().stat("processed")).await,
        1,
        "the running job finished"
    );
    let processes: Vec<String> = ns
        .query(redis::cmd("SMEMBERS").arg(ns.keys().key("processes")))
        .await;
    assert!(processes.is_empty(), "deregistered");
    Ok(())
}

/// Stamps `tenant_id`; refuses jobs for the `blocked` queue; sends `Slow` to queue `slow`.
struct Tenant;
impl psychiq::middleware::ClientMiddleware for Tenant {
    async fn call(&self, job: &mut Job) -> Result<(), String> {
        if job.queue_name() == "blocked" {
            return Err("the blocked queue takes no jobs".into());
        }
        if job.class() == "Slow" {
            job.set_queue("slow");
        }
        job.set_option("tenant_id", "acme".into());
        Ok(())
    }
}

#[tokio::test]
async fn client_middleware_changes_and_refuses_every_kind_of_push() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let mut client = ns.client.clone();
    client.middleware().add(Tenant);
    let keys = ns.keys();
    client.push(Job::new("Seer", (1,))?).await?;
    client
        .push(Job::new("Seer", (2,))?.delay(Duration::from_secs(3600)))
        .await?;
    client
        .push_bulk(vec![Job::new("Seer", (3,))?, Job::new("Slow", ())?])
        .await?;
    let refused = client
        .try_push(Job::new("Seer", (4,))?.queue("blocked"))
        .await?;
    assert_eq!(
        refused,
        psychiq::Push::Refused("the blocked queue takes no jobs".into())
    );
    let err = client
        .push(Job::new("Seer", (5,))?.queue("blocked"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not pushed: the blocked queue"),
        "{err}"
    );
    let bulk = client
        .try_push_bulk(vec![
            Job::new("Seer", (6,))?.queue("blocked"),
            Job::new("Seer", (7,))?,
        ])
        .await?;
    assert!(bulk[0].jid().is_none() && bulk[1].jid().is_some());

    let stored: Vec<String> = [
        ns.lrange(&keys.queue("default")).await,
        ns.zrange(&keys.schedule()).await,
        ns.lrange(&keys.queue("slow")).await,
    ]
    .concat();
    assert_eq!(stored.len(), 5, "{stored:?}");
    for raw in &stored {
        let job: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(job["tenant_id"], "acme", "{raw}");
    }
    assert!(ns.lrange(&keys.queue("blocked")).await.is_empty());
    // A client without the chain is not affected.
    let plain = ns
        .client
        .push(Job::new("Seer", (8,))?.queue("blocked"))
        .await;
    assert!(plain.is_ok());
    Ok(())
}

/// Sleeps past its own 100 ms timeout. Class name `Sleepy`.
struct Sleepy;
impl Worker for Sleepy {
    type Args = Vec<Value>;
    fn options() -> psychiq::WorkerOptions {
        psychiq::WorkerOptions::default().timeout(Duration::from_millis(100))
    }
    async fn perform(&self, _: Vec<Value>) -> JobResult {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    }
}

#[tokio::test]
async fn middleware_see_a_panic_and_a_timeout_as_outcomes() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let log: Log = Log::default();
    let mut registry = Registry::new();
    registry.register(Panicky).register(Sleepy);
    let mut server = Server::new(ns.config(), registry);
    server.middleware().add(Around {
        name: "seen",
        log: Arc::clone(&log),
    });
    let running = RunningServer::start_server(server);
    ns.client.push(Job::new("Panicky", ())?).await?;
    ns.client.push(Job::new("Sleepy", ())?).await?;
    drained(&ns).await;
    running.stop().await;
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains(&"seen after Panicky: failed Panic".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"seen after Sleepy: failed Psychiq::JobTimeout".to_string()),
        "{log:?}"
    );
    assert_eq!(ns.zrange(&ns.keys().retry()).await.len(), 2);
    Ok(())
}

/// Panics in `call` itself, before any future exists (a middleware written as a plain
/// `fn` returning a future may).
struct Eager;
impl ServerMiddleware for Eager {
    fn call(&self, job: &JobContext, next: Next<'_>) -> impl Future<Output = Outcome> + Send {
        assert_ne!(job.class(), "Seer", "eager boom");
        next.run()
    }
}

#[tokio::test]
async fn a_middleware_that_panics_before_its_future_fails_only_its_job() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let seer = Seer::default();
    let mut server = Server::new(ns.config(), registry(&seer));
    server.middleware().add(Eager);
    let running = RunningServer::start_server(server);
    ns.client.push(Job::new("Seer", (1,))?).await?;
    drained(&ns).await;
    wait_until(Duration::from_secs(10), "the failure recorded", || async {
        ns.zrange(&ns.keys().retry()).await.len() == 1
    })
    .await;
    running.stop().await;
    let retry: Value = serde_json::from_str(&ns.zrange(&ns.keys().retry()).await[0]).unwrap();
    assert_eq!(retry["error_class"], "Panic");
    assert!(
        retry["error_message"]
            .as_str()
            .unwrap()
            .contains("eager boom")
    );
    assert!(seer.seen.lock().unwrap().is_empty());
    Ok(())
}
