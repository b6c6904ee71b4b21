//! Workflows: a diamond whose last step sees both middle results, a step that adds steps
//! while the workflow runs, what a dead step does under each policy (compensation
//! included), a step run twice starting its children once, sub-workflows, and retrying a
//! failed workflow.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use psychiq::workflow::{OnFailure, Workflow};
use psychiq::{Job, JobError, Registry, Retry, Task};
use serde_json::{Value, json};

/// Records each run (`[step, inputs]`) and returns `step` with its inputs' count; fails for
/// a step named "broken", and for one named "flaky" while `flaky` is set.
#[derive(Clone, Default)]
struct Step {
    runs: Arc<Mutex<Vec<(String, Value)>>>,
    flaky: Arc<AtomicBool>,
}

impl Task for Step {
    type Args = (String,);
    type Output = Value;
    async fn run(&self, (name,): Self::Args) -> Result<Value, JobError> {
        let inputs = psychiq::workflow::inputs().await?;
        let inputs: serde_json::Map<String, Value> = inputs.into_iter().collect();
        self.runs
            .lock()
            .unwrap()
            .push((name.clone(), Value::Object(inputs.clone())));
        if name == "broken" || (name == "flaky" && self.flaky.load(Ordering::SeqCst)) {
            return Err(JobError::new("Broken", "as planned"));
        }
        if name == "discarded" {
            return Err(JobError::discard("not needed after all"));
        }
        if name == "stall" && self.flaky.load(Ordering::SeqCst) {
            // Runs until cancelled while `flaky` is set; succeeds once it is not.
            psychiq::context::cancelled().await;
            return Err(JobError::new("Stopped", "cancelled"));
        }
        if name == "hang" {
            psychiq::context::cancelled().await;
            return Err(JobError::new("Stopped", "cancelled"));
        }
        if name == "discover" {
            // Fans out after itself, then fans in.
            for n in 0..3 {
                let job = Job::new("Step", (format!("part-{n}"),))?;
                psychiq::workflow::add_step(&format!("part-{n}"), job, &["discover"]).await?;
            }
            let merge = Job::new("Step", ("merge",))?;
            psychiq::workflow::add_step("merge", merge, &["part-0", "part-1", "part-2"]).await?;
        }
        Ok(json!({"step": name, "inputs": inputs.len()}))
    }
}

/// A server running `Step` with `config`, and the worker to read its runs from.
fn serve_steps(config: psychiq::ServerConfig) -> (Step, RunningServer) {
    let worker = Step::default();
    let mut registry = Registry::new();
    registry.register(worker.clone());
    (worker, RunningServer::start(config, registry))
}

fn step(name: &str) -> Job {
    Job::new("Step", (name,)).unwrap().retry(Retry::Max(0))
}

async fn workflow_state(ns: &TestNs, wid: &str) -> std::collections::HashMap<String, String> {
    ns.query(redis::cmd("HGETALL").arg(ns.keys().key(&format!("wf:{wid}:state"))))
        .await
}

/// The states of steps `names` of workflow `wid`, in that order.
async fn states_of(ns: &TestNs, wid: &str, names: &[&str]) -> Vec<String> {
    let states = workflow_state(ns, wid).await;
    names.iter().map(|n| states[*n].clone()).collect()
}

/// The jid of step `name` of workflow `wid` (a sub-workflow step's is its workflow id).
async fn step_jid(api: &psychiq::api::Api, wid: &str, name: &str) -> String {
    let workflow = api.workflow(wid).await.unwrap().expect("the workflow");
    let step = workflow.steps.into_iter().find(|s| s.name == name);
    step.expect("the step").jid
}

async fn workflow_field(ns: &TestNs, wid: &str, field: &str) -> Option<String> {
    ns.query(
        redis::cmd("HGET")
            .arg(ns.keys().key(&format!("wf:{wid}")))
            .arg(field),
    )
    .await
}

async fn finished(ns: &TestNs, wid: &str) -> String {
    wait_until(Duration::from_secs(15), "the workflow to end", || async {
        workflow_field(ns, wid, "finished_at").await.is_some()
    })
    .await;
    workflow_field(ns, wid, "state").await.unwrap_or_default()
}

#[tokio::test]
async fn a_diamond_runs_each_step_once_and_its_last_step_sees_both_results() -> psychiq::Result<()>
{
    let ns = TestNs::new().await;
    let (worker, server) = serve_steps(ns.config().concurrency(4));
    let wid = Workflow::new("diamond")
        .step("a", step("a"))
        .step("b", step("b"))
        .after(["a"])
        .step("c", step("c"))
        .after(["a"])
        .step("d", step("d"))
        .after(["b", "c"])
        .push(&ns.client)
        .await?;
    assert_eq!(finished(&ns, &wid).await, "succeeded");
    let runs = worker.runs.lock().unwrap().clone();
    let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(names[0], "a");
    assert_eq!(names[3], "d", "d only after b and c: {names:?}");
    let d_inputs = &runs[3].1;
    assert_eq!(d_inputs["b"], json!({"step": "b", "inputs": 1}));
    assert_eq!(d_inputs["c"], json!({"step": "c", "inputs": 1}));
    assert!(
        workflow_state(&ns, &wid)
            .await
            .values()
            .all(|s| s == "succeeded")
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_step_adds_steps_after_itself_and_one_after_those() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let (worker, server) = serve_steps(ns.config().concurrency(4));
    let wid = Workflow::new("etl")
        .step("discover", step("discover"))
        .push(&ns.client)
        .await?;
    assert_eq!(finished(&ns, &wid).await, "succeeded");
    let runs = worker.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 5, "{runs:?}");
    let merge = runs.iter().find(|(n, _)| n == "merge").expect("merge ran");
    assert_eq!(
        merge.1.as_object().unwrap().len(),
        3,
        "merge saw the three parts: {merge:?}"
    );
    assert_eq!(runs.last().unwrap().0, "merge");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_dead_step_stops_the_workflow_or_prunes_only_what_depends_on_it() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let (worker, server) = serve_steps(ns.config().concurrency(1));
    // a → broken → after-broken; a → other → after-other
    let build = |policy| {
        Workflow::new("fragile")
            .on_failure(policy)
            .step("a", step("a"))
            .step("broken", step("broken"))
            .after(["a"])
            .step("after-broken", step("after-broken"))
            .after(["broken"])
            .step("other", step("other"))
            .after(["a"])
            .step("after-other", step("after-other"))
            .after(["other"])
    };

    let stop = build(OnFailure::Stop).push(&ns.client).await?;
    assert_eq!(finished(&ns, &stop).await, "failed");
    let states = workflow_state(&ns, &stop).await;
    assert_eq!(states["broken"], "dead");
    assert_eq!(states["after-broken"], "skipped");
    assert_eq!(
        states["after-other"], "skipped",
        "nothing new starts: {states:?}"
    );

    worker.runs.lock().unwrap().clear();
    let go_on = build(OnFailure::Continue).push(&ns.client).await?;
    assert_eq!(finished(&ns, &go_on).await, "failed");
    let states = workflow_state(&ns, &go_on).await;
    assert_eq!(states["after-broken"], "skipped");
    assert_eq!(states["after-other"], "succeeded", "{states:?}");
    let ran: Vec<String> = worker
        .runs
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert!(!ran.contains(&"after-broken".to_string()), "{ran:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_step_that_runs_twice_starts_its_children_once() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let wid = Workflow::new("twice")
        .step("a", step("a"))
        .step("b", step("b"))
        .after(["a"])
        .push(&ns.client)
        .await?;
    // A crashed process's job recovered after it had run: "a" is in the queue twice.
    let queue = ns.keys().queue("default");
    let first = ns.lrange(&queue).await;
    assert_eq!(first.len(), 1, "only the root is enqueued");
    ns.lpush_raw("default", &first[0]).await;
    let (worker, server) = serve_steps(ns.config().concurrency(1));
    assert_eq!(finished(&ns, &wid).await, "succeeded");
    // Let the duplicate run too.
    wait_until(Duration::from_secs(10), "both runs of a", || async {
        worker.runs.lock().unwrap().len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let names: Vec<String> = worker
        .runs
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "b").count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "a").count(), 2, "{names:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_graph_with_a_circle_or_an_unknown_parent_is_refused() {
    let ns = TestNs::new().await;
    let circle = Workflow::new("circle")
        .step("a", step("a"))
        .after(["b"])
        .step("b", step("b"))
        .after(["a"])
        .push(&ns.client)
        .await
        .unwrap_err();
    assert!(circle.to_string().contains("circle"), "{circle}");
    let unknown = Workflow::new("typo")
        .step("a", step("a"))
        .after(["nope"])
        .push(&ns.client)
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("\"nope\""), "{unknown}");
    assert!(ns.lrange(&ns.keys().queue("default")).await.is_empty());
}

#[tokio::test]
async fn a_workflow_is_listed_shown_and_cancelled_while_it_runs() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let (worker, server) = serve_steps(
        ns.config()
            .concurrency(2)
            .cancel_grace(Duration::from_millis(300)),
    );
    let wid = Workflow::new("long one")
        .step("a", step("a"))
        .step("hang", step("hang"))
        .after(["a"])
        .step("after", step("after"))
        .after(["hang"])
        .push(&ns.client)
        .await?;
    let api = ns.jobs.api().await?;
    wait_until(
        Duration::from_secs(10),
        "the hanging step to run",
        || async { worker.runs.lock().unwrap().iter().any(|(n, _)| n == "hang") },
    )
    .await;
    let listed = api.workflows(10).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].state.as_str()),
        ("long one", "running")
    );
    let shown = api.workflow(&wid).await?.expect("the workflow");
    let state_of = |name: &str| {
        shown
            .steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.state.clone())
    };
    assert_eq!(state_of("a").as_deref(), Some("succeeded"));
    assert_eq!(state_of("after").as_deref(), Some("waiting"));

    let output = psychiq_on(&ns, &["workflows", "cancel", &wid]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(finished(&ns, &wid).await, "cancelled");
    let states = workflow_state(&ns, &wid).await;
    assert_eq!(states["hang"], "dead");
    assert_eq!(states["after"], "skipped");
    let shown = psychiq_on(&ns, &["workflows", "show", &wid]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("cancelled") && text.contains("hang"),
        "{text}"
    );
    assert_eq!(
        api.retries().size().await?,
        0,
        "the cancelled step is not retried"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_discarded_step_ends_like_a_dead_one_and_a_waiting_workflow_is_cancelled_once()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = ns.jobs.api().await?;
    // Cancelled before any server: its root leaves its queue, its other step is skipped,
    // each counted once, and a second cancel changes nothing.
    let wid = Workflow::new("never mind")
        .step("a", step("a"))
        .step("b", step("b"))
        .after(["a"])
        .push(&ns.client)
        .await?;
    assert_eq!(api.cancel_workflow(&wid).await?, Some(1));
    assert_eq!(api.cancel_workflow(&wid).await?, Some(0));
    let cancelled = api.workflow(&wid).await?.unwrap();
    assert_eq!(
        (
            cancelled.state.as_str(),
            cancelled.dead,
            cancelled.skipped,
            cancelled.finished_at.is_some()
        ),
        ("cancelled", 1, 1, true)
    );
    assert_eq!(api.queue_size("default").await?, 0);

    let (_, server) = serve_steps(ns.config());
    let wid = Workflow::new("discards")
        .step("discarded", step("discarded"))
        .step("after", step("after"))
        .after(["discarded"])
        .push(&ns.client)
        .await?;
    assert_eq!(finished(&ns, &wid).await, "failed");
    let states = workflow_state(&ns, &wid).await;
    assert_eq!(
        (states["discarded"].as_str(), states["after"].as_str()),
        ("dead", "skipped")
    );
    // Every key of it has a TTL, those made after the push too.
    let keys: Vec<String> = ns
        .query(redis::cmd("KEYS").arg(ns.keys().key(&format!("wf:{wid}*"))))
        .await;
    for key in keys {
        let ttl: i64 = ns.query(redis::cmd("TTL").arg(&key)).await;
        assert!(ttl > 0, "{key} has no TTL");
    }
    server.stop().await;
    Ok(())
}

impl Step {
    fn ran(&self) -> Vec<String> {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[tokio::test]
async fn a_dead_step_starts_its_compensation_which_reads_what_succeeded() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let (worker, server) = serve_steps(ns.config().concurrency(1));
    let order = |ship: &str| {
        Workflow::new("order")
            .step("charge", step("charge"))
            .step("ship", step(ship))
            .after(["charge"])
            .step("email", step("email"))
            .after(["ship"])
            .compensation("refund", step("refund"))
            .on_failure(OnFailure::Compensate("refund".into()))
    };
    let wid = order("broken").push(&ns.client).await?;
    assert_eq!(finished(&ns, &wid).await, "failed");
    assert_eq!(
        states_of(&ns, &wid, &["ship", "email", "refund"]).await,
        ["dead", "skipped", "succeeded"]
    );
    let runs = worker.runs.lock().unwrap().clone();
    let refund = runs
        .iter()
        .find(|(n, _)| n == "refund")
        .expect("the refund ran");
    assert_eq!(refund.1["charge"], json!({"step": "charge", "inputs": 0}));
    assert_eq!(
        workflow_field(&ns, &wid, "failed_step").await.as_deref(),
        Some("ship")
    );
    // Each step's times, and the dead one's error, are kept with it.
    let api = ns.jobs.api().await?;
    let shown = api.workflow(&wid).await?.unwrap();
    let ship = shown.steps.iter().find(|s| s.name == "ship").unwrap();
    assert_eq!(ship.error.as_deref(), Some("Broken: as planned"));
    for step in shown.steps.iter().filter(|s| s.state != "skipped") {
        let (Some(started), Some(ended)) = (step.started_at, step.ended_at) else {
            panic!("{step:?} has no times");
        };
        assert!(started <= ended, "{step:?}");
    }

    // Nothing dies: the compensation is skipped, and the workflow succeeds.
    worker.runs.lock().unwrap().clear();
    let wid = order("ship").push(&ns.client).await?;
    assert_eq!(finished(&ns, &wid).await, "succeeded");
    assert_eq!(workflow_state(&ns, &wid).await["refund"], "skipped");
    assert!(!worker.ran().contains(&"refund".to_string()));

    // A step's own policy overrides the workflow's; a policy naming no compensation step,
    // or a compensation step with parents, is refused.
    let wid = Workflow::new("mixed")
        .step("broken", step("broken"))
        .step_on_failure(OnFailure::Continue)
        .step("other", step("other"))
        .push(&ns.client)
        .await?;
    assert_eq!(finished(&ns, &wid).await, "failed");
    assert_eq!(workflow_state(&ns, &wid).await["other"], "succeeded");
    let unknown = Workflow::new("x")
        .step("a", step("a"))
        .on_failure(OnFailure::Compensate("undo".into()))
        .push(&ns.client)
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("not a compensation step"),
        "{unknown}"
    );
    let after = Workflow::new("x")
        .step("a", step("a"))
        .compensation("undo", step("undo"))
        .after(["a"])
        .push(&ns.client)
        .await
        .unwrap_err();
    assert!(
        after.to_string().contains("runs after other steps"),
        "{after}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_sub_workflow_starts_with_its_step_and_passes_its_last_results_on() -> psychiq::Result<()>
{
    let ns = TestNs::new().await;
    let (worker, server) = serve_steps(ns.config().concurrency(2));
    let inner = Workflow::new("inner")
        .step("x", step("x"))
        .step("y", step("y"))
        .after(["x"]);
    let wid = Workflow::new("outer")
        .step("a", step("a"))
        .sub_workflow("inner", inner.clone())
        .after(["a"])
        .step("z", step("z"))
        .after(["inner"])
        .push(&ns.client)
        .await?;
    assert_eq!(finished(&ns, &wid).await, "succeeded");
    assert_eq!(worker.ran(), ["a", "x", "y", "z"]);
    let runs = worker.runs.lock().unwrap().clone();
    assert_eq!(
        runs[1].1,
        json!({"a": {"step": "a", "inputs": 0}}),
        "the sub-workflow's first step reads its step's inputs"
    );
    assert_eq!(
        runs[3].1,
        json!({"inner": {"y": {"step": "y", "inputs": 1}}}),
        "the step after it reads its last steps' results"
    );
    let api = ns.jobs.api().await?;
    let outer = api.workflow(&wid).await?.unwrap();
    let inner_step = outer.steps.iter().find(|s| s.name == "inner").unwrap();
    assert_eq!(inner_step.kind, "workflow");
    let sub = api.workflow(&inner_step.jid).await?.unwrap();
    assert_eq!(sub.state, "succeeded");
    assert_eq!(sub.parent, Some((wid.clone(), "inner".to_string())));

    // A sub-workflow that fails is a dead step; one that never starts is skipped whole.
    let failing = Workflow::new("inner").step("broken", step("broken"));
    let wid = Workflow::new("outer")
        .sub_workflow("inner", failing)
        .step("never", step("never"))
        .after(["inner"])
        .sub_workflow("later", inner)
        .after(["never"])
        .push(&ns.client)
        .await?;
    assert_eq!(finished(&ns, &wid).await, "failed");
    assert_eq!(
        states_of(&ns, &wid, &["inner", "never", "later"]).await,
        ["dead", "skipped", "skipped"]
    );
    let later = step_jid(&api, &wid, "later").await;
    assert_eq!(api.workflow(&later).await?.unwrap().state, "skipped");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_failed_workflow_is_retried_from_its_dead_steps_under_new_jids() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let (worker, server) = serve_steps(ns.config().concurrency(1));
    worker.flaky.store(true, Ordering::SeqCst);
    let inner = Workflow::new("inner")
        .step("flaky", step("flaky"))
        .step("after-flaky", step("after-flaky"))
        .after(["flaky"]);
    let wid = Workflow::new("retried")
        .step("a", step("a"))
        .sub_workflow("inner", inner)
        .after(["a"])
        .step("last", step("last"))
        .after(["inner"])
        .compensation("undo", step("undo"))
        .on_failure(OnFailure::Compensate("undo".into()))
        .push(&ns.client)
        .await?;
    assert_eq!(finished(&ns, &wid).await, "failed");
    let api = ns.jobs.api().await?;
    assert_eq!(api.dead().size().await?, 1, "the flaky step died");
    let sub_wid = step_jid(&api, &wid, "inner").await;
    let old_jid = step_jid(&api, &sub_wid, "flaky").await;
    // Retrying a workflow that succeeded, or a sub-workflow, says what to do instead.
    let sub_retry = api.retry_workflow(&sub_wid).await.unwrap_err();
    assert!(
        sub_retry.to_string().contains("retry that one"),
        "{sub_retry}"
    );

    worker.flaky.store(false, Ordering::SeqCst);
    worker.runs.lock().unwrap().clear();
    let output = psychiq_on(&ns, &["workflows", "retry", &wid]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(finished(&ns, &wid).await, "succeeded");
    assert_eq!(
        worker.ran(),
        ["flaky", "after-flaky", "last"],
        "a did not run again"
    );
    let shown = api.workflow(&wid).await?.unwrap();
    assert_eq!(
        (shown.done, shown.dead, shown.skipped, shown.standby),
        (3, 0, 1, 0),
        "the compensation that ran went back on standby, then was skipped"
    );
    let new_jid = step_jid(&api, &sub_wid, "flaky").await;
    assert_ne!(old_jid, new_jid);
    assert_eq!(
        api.dead().size().await?,
        0,
        "the old dead job left the dead set"
    );
    let again = api.retry_workflow(&wid).await.unwrap_err();
    assert!(
        again.to_string().contains("no dead or skipped step"),
        "{again}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_batch_step_ends_when_its_batch_does_and_is_retried_through_its_dead_jobs()
-> psychiq::Result<()> {
    use psychiq::batch::Batch;
    let ns = TestNs::new().await;
    let (worker, server) = serve_steps(ns.config().concurrency(2));
    worker.flaky.store(true, Ordering::SeqCst);
    let pages = |last: &str| vec![step("page-1"), step("page-2"), step(last)];
    let wid = Workflow::new("with a batch")
        .step("a", step("a"))
        .batch_step("pages", Batch::new("pages"), pages("page-3"))
        .after(["a"])
        .step("merge", step("merge"))
        .after(["pages"])
        .push(&ns.client)
        .await?;
    assert_eq!(finished(&ns, &wid).await, "succeeded");
    let ran = worker.ran();
    assert_eq!(ran.len(), 5, "{ran:?}");
    assert_eq!(
        (ran[0].as_str(), ran[4].as_str()),
        ("a", "merge"),
        "{ran:?}"
    );
    let runs = worker.runs.lock().unwrap().clone();
    let api = ns.jobs.api().await?;
    let bid = step_jid(&api, &wid, "pages").await;
    assert_eq!(runs[4].1, json!({"pages": {"bid": bid}}));
    assert_eq!(api.batch(&bid).await?.expect("the batch").total, 3);

    // One of its jobs dies: the step dies; retried, the dead job runs again and the
    // batch's success ends the step.
    worker.runs.lock().unwrap().clear();
    let wid = Workflow::new("with a flaky batch")
        .batch_step("pages", Batch::new("pages"), pages("flaky"))
        .step("merge", step("merge"))
        .after(["pages"])
        .push(&ns.client)
        .await?;
    assert_eq!(finished(&ns, &wid).await, "failed");
    assert_eq!(
        states_of(&ns, &wid, &["pages", "merge"]).await,
        ["dead", "skipped"]
    );
    // Retried while the job still fails: it dies again, and so does the step.
    assert_eq!(api.retry_workflow(&wid).await?, 1);
    assert_eq!(finished(&ns, &wid).await, "failed");
    worker.flaky.store(false, Ordering::SeqCst);
    assert_eq!(api.retry_workflow(&wid).await?, 1);
    assert_eq!(finished(&ns, &wid).await, "succeeded");
    assert_eq!(
        api.dead().size().await?,
        0,
        "each old dead job left the dead set"
    );
    assert_eq!(worker.ran().iter().filter(|n| *n == "merge").count(), 1);

    // Cancelled while its batch runs (its running job cancelled, never in the dead set),
    // then retried: the job is pushed again under a new jid and the step ends.
    worker.flaky.store(true, Ordering::SeqCst);
    let wid = Workflow::new("cancelled batch")
        .batch_step("pages", Batch::new("pages"), vec![step("stall")])
        .push(&ns.client)
        .await?;
    wait_until(
        Duration::from_secs(10),
        "the stalling job to run",
        || async { worker.ran().contains(&"stall".to_string()) },
    )
    .await;
    api.cancel_workflow(&wid).await?;
    assert_eq!(finished(&ns, &wid).await, "cancelled");
    worker.flaky.store(false, Ordering::SeqCst);
    api.retry_workflow(&wid).await?;
    assert_eq!(finished(&ns, &wid).await, "succeeded");

    // Its own success or death callback would take the step's place: refused.
    let refused = Workflow::new("x")
        .batch_step("b", Batch::new("b").on_success(step("cb")), pages("page-3"))
        .push(&ns.client)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("its success and death are the step's"),
        "{refused}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_workflow_of_command_workers_is_pushed_from_toml_and_passes_results_through_files()
-> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let dir = std::env::temp_dir().join(&ns.namespace);
    std::fs::create_dir_all(&dir).unwrap();
    let workers = dir.join("workers.toml");
    std::fs::write(
        &workers,
        r#"
[workers."Etl::Count"]
command = ["sh", "-c", 'printf "{\"rows\": %s}" "$(cat | tr -dc 0-9)" > "$PSYCHIQ_RESULT"']

[workers."Etl::Report"]
command = ["sh", "-c", 'printf "{\"step\": \"%s\", \"saw\": %s}" "$PSYCHIQ_STEP" "$(cat "$PSYCHIQ_INPUTS")" > "$PSYCHIQ_RESULT"']

[workers."Etl::Broken"]
command = ["sh", "-c", 'echo "not JSON" > "$PSYCHIQ_RESULT"']
"#,
    )
    .unwrap();
    let flow = dir.join("flow.toml");
    std::fs::write(
        &flow,
        r#"
name = "from toml"

[[step]]
name = "count-a"
class = "Etl::Count"
args = [3]

[[step]]
name = "count-b"
class = "Etl::Count"
args = [4]

[[step]]
name = "report"
class = "Etl::Report"
after = ["count-a", "count-b"]
"#,
    )
    .unwrap();
    let mut server = Spawned::start(&ns, &["-s", workers.to_str().unwrap(), "-c", "2"]);
    let pushed = psychiq_on(
        &ns,
        &["--json", "workflows", "push", flow.to_str().unwrap()],
    );
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let wid = serde_json::from_slice::<Value>(&pushed.stdout).unwrap()["wid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(finished(&ns, &wid).await, "succeeded");
    let api = ns.jobs.api().await?;
    let report = api.workflow(&wid).await?.unwrap();
    let result = report.steps.iter().find(|s| s.name == "report").unwrap();
    let result: Value = serde_json::from_str(result.result.as_deref().unwrap()).unwrap();
    assert_eq!(
        result,
        json!({"step": "report", "saw": {"count-a": {"rows": 3}, "count-b": {"rows": 4}}})
    );

    // A result that is not JSON fails the step, saying so.
    std::fs::write(
        &flow,
        "name = \"broken\"\n[[step]]\nname = \"b\"\nclass = \"Etl::Broken\"\nretry = 0\n",
    )
    .unwrap();
    let pushed = psychiq_on(
        &ns,
        &["--json", "workflows", "push", flow.to_str().unwrap()],
    );
    let wid = serde_json::from_slice::<Value>(&pushed.stdout).unwrap()["wid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(finished(&ns, &wid).await, "failed");
    let dead = api.dead().page(0, 1).await?;
    let message = dead[0].error_message().unwrap_or_default();
    assert!(message.contains("is not JSON"), "{message}");
    // A file with a typo is refused before anything is pushed.
    std::fs::write(
        &flow,
        "name = \"x\"\n[[step]]\nname = \"a\"\nclas = \"A\"\n",
    )
    .unwrap();
    let refused = psychiq_on(&ns, &["workflows", "push", flow.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("clas"));
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(8)), 0);
    Ok(())
}
