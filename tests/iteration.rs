//! Iterable jobs (`src/extensions/iteration.rs`) with the real `psychiq` binary: a
//! 10,000-step walk interrupted by TERM and by `kill -9` resumes from its cursor and visits
//! each step once (at most the step in flight at the kill twice); slices end and resume;
//! cancelling stops a walk.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use psychiq::Job;
use psychiq::api::Api;
use serde_json::Value;

/// The demo `Walk`'s lines: how often each step ran, and the callbacks in order.
fn read_walk(path: &Path) -> (BTreeMap<u64, usize>, Vec<String>) {
    let mut steps = BTreeMap::new();
    let mut callbacks = Vec::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match (parts.get(1).and_then(Value::as_str), parts.get(2)) {
            (Some("step"), Some(n)) => *steps.entry(n.as_u64().unwrap()).or_default() += 1,
            (Some(callback), _) => callbacks.push(callback.to_string()),
            _ => {}
        }
    }
    (steps, callbacks)
}

#[tokio::test]
async fn a_walk_interrupted_by_term_and_kill_9_visits_each_step_once() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let out = std::env::temp_dir().join(format!("{}-walk.jsonl", ns.namespace));
    let path = out.to_string_lossy().to_string();
    const STEPS: u64 = 10_000;
    ns.client
        .push(Job::new("Walk", (STEPS, &path, 300))?)
        .await?;
    let args = ["-s", "demo", "-c", "2", "-t", "5"];
    let visited = || read_walk(&out).0.len();

    // TERM mid-walk: the job saves its cursor after its step and goes back to the schedule.
    let mut server = Spawned::start(&ns, &args);
    wait_until(Duration::from_secs(30), "2,000 steps", || async {
        visited() >= 2_000
    })
    .await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
    let (steps, callbacks) = read_walk(&out);
    assert_eq!(callbacks, ["start", "stop"]);
    assert!(
        steps.values().all(|&n| n == 1),
        "a graceful stop repeats no step"
    );

    // kill -9 mid-walk: the next server recovers the job and resumes from its cursor.
    server = Spawned::start(&ns, &args);
    wait_until(Duration::from_secs(30), "5,000 steps", || async {
        visited() >= 5_000
    })
    .await;
    server.kill9();
    server = Spawned::start(&ns, &args);
    wait_until(Duration::from_secs(60), "the walk's end", || async {
        read_walk(&out).1.last().map(String::as_str) == Some("complete")
    })
    .await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);

    let (steps, callbacks) = read_walk(&out);
    assert_eq!(steps.len() as u64, STEPS, "every step visited");
    assert_eq!(*steps.keys().last().unwrap(), STEPS - 1);
    let twice: Vec<_> = steps.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= 1 && twice.iter().all(|(_, n)| **n == 2),
        "{twice:?}"
    );
    assert_eq!(callbacks, ["start", "stop", "resume", "resume", "complete"]);
    eprintln!(
        "10,000 steps through a TERM and a kill -9: steps run twice {twice:?}, callbacks {callbacks:?}"
    );
    let _ = std::fs::remove_file(&out);
    Ok(())
}

#[tokio::test]
async fn a_walk_can_be_cancelled_from_the_api_and_the_cli() -> psychiq::Result<()> {
    let ns = TestNs::new().await;
    let api = Api::connect(&ns.redis, &ns.namespace).await?;
    let early_out = std::env::temp_dir().join(format!("{}-early.jsonl", ns.namespace));
    let out = std::env::temp_dir().join(format!("{}-cancel.jsonl", ns.namespace));
    let path = out.to_string_lossy().to_string();
    // Cancelled before it starts: it never takes a step.
    let early = ns
        .client
        .push(Job::new("Walk", (100, early_out.to_string_lossy(), 0))?)
        .await?;
    assert!(!api.cancel_iteration(&early).await?);
    // Cancelled from the command line while walking slowly.
    let slow = ns
        .client
        .push(Job::new("Walk", (100_000, &path, 2_000))?)
        .await?;
    let mut server = Spawned::start(&ns, &["-s", "demo", "-c", "2"]);
    wait_until(Duration::from_secs(20), "the walk listed", || async {
        api.iterations(10)
            .await
            .unwrap()
            .iter()
            .any(|i| i.jid == slow && i.cursor.is_some())
    })
    .await;
    let status = psychiq()
        .args([
            "--redis-url",
            &ns.url,
            "-n",
            &ns.namespace,
            "iterations",
            "cancel",
            &slow,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until(Duration::from_secs(10), "both cancels", || async {
        read_walk(&out).1.contains(&"cancel".to_string())
            && read_walk(&early_out).1.contains(&"cancel".to_string())
    })
    .await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), 0);
    let (steps, callbacks) = read_walk(&early_out);
    assert_eq!((steps.len(), callbacks), (0, vec!["cancel".to_string()]));
    let (steps, callbacks) = read_walk(&out);
    assert_eq!(callbacks, ["start", "cancel"]);
    assert!((steps.len() as u64) < 100_000);
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&early_out);
    Ok(())
}

/// Fifty 10 ms steps in slices of 100 ms, recording each. Class name `Sliced`.
#[derive(Clone, Default)]
struct Sliced(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl psychiq::iteration::IterableWorker for Sliced {
    type Args = ();
    type Cursor = u32;
    fn max_run_time(&self) -> Duration {
        Duration::from_millis(100)
    }
    async fn step(&self, _: &(), cursor: Option<u32>) -> Result<Option<u32>, psychiq::JobError> {
        let n = cursor.unwrap_or(0);
        self.0.lock().unwrap().push(format!("step {n}"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok((n < 49).then_some(n + 1))
    }
    async fn on_stop(&self, _: &()) {
        self.0.lock().unwrap().push("stop".into());
    }
    async fn on_resume(&self, _: &()) {
        self.0.lock().unwrap().push("resume".into());
    }
    async fn on_complete(&self, _: &()) {
        self.0.lock().unwrap().push("complete".into());
    }
}

#[tokio::test]
async fn a_long_walk_goes_back_to_the_schedule_after_each_slice_and_resumes() -> psychiq::Result<()>
{
    let ns = TestNs::new().await;
    let sliced = Sliced::default();
    let mut registry = psychiq::Registry::new();
    registry.register_iterable(sliced.clone());
    ns.client.push(Job::new("Sliced", ())?).await?;
    let server = RunningServer::start(ns.config(), registry);
    wait_until(Duration::from_secs(20), "the end", || async {
        sliced.0.lock().unwrap().last().map(String::as_str) == Some("complete")
    })
    .await;
    server.stop().await;
    let events = sliced.0.lock().unwrap().clone();
    let steps: Vec<&String> = events.iter().filter(|e| e.starts_with("step")).collect();
    assert_eq!(steps.len(), 50, "each step once: {events:?}");
    let slices = events.iter().filter(|e| *e == "stop").count();
    assert!(slices >= 3, "{slices} slices: {events:?}");
    assert_eq!(slices, events.iter().filter(|e| *e == "resume").count());
    Ok(())
}
