//! Workflows: a diamond whose last step sees both middle results, a step that adds steps
//! while the workflow runs, what a dead step does under each policy, and a step run twice
//! starting its children once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use psychiq::workflow::{OnFailure, Workflow};
use psychiq::{Job, JobError, Registry, Retry, Task};
use serde_json::{Value, json};

/// Records each run (`[step, inputs]`) and returns `step` with its inputs' count; fails for
/// a step named "broken".
#[derive(Clone, Default)]
struct Step {
    runs: Arc<Mutex<Vec<(String, Value)>>>,
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
        if name == "broken" {
            return Err(JobError::new("Broken", "as planned"));
        }
        if name == "discarded" {
            return Err(JobError::discard("not needed after all"));
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
        .after(&["a"])
        .step("c", step("c"))
        .after(&["a"])
        .step("d", step("d"))
        .after(&["b", "c"])
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
            .after(&["a"])
            .step("after-broken", step("after-broken"))
            .after(&["broken"])
            .step("other", step("other"))
            .after(&["a"])
            .step("after-other", step("after-other"))
            .after(&["other"])
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
        .after(&["a"])
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
        .after(&["b"])
        .step("b", step("b"))
        .after(&["a"])
        .push(&ns.client)
        .await
        .unwrap_err();
    assert!(circle.to_string().contains("circle"), "{circle}");
    let unknown = Workflow::new("typo")
        .step("a", step("a"))
        .after(&["nope"])
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
        .after(&["a"])
        .step("after", step("after"))
        .after(&["hang"])
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
        .after(&["a"])
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
        .after(&["discarded"])
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
