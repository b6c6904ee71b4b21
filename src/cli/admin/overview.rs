//! `stats`, `queues` and `processes`: the figures, the queues and the processes.

use std::time::SystemTime;

use serde_json::json;

use crate::api::{Api, span_text};

use super::*;

pub(super) async fn stats(api: &Api, out: &Out, days: u32) -> Outcome {
    let stats = api.stats().await?;
    let history = api.history(days, SystemTime::now()).await?;
    if out.json {
        println!("{}", json!({"stats": stats, "history": history}));
        return Ok(());
    }
    let rows = vec![
        vec!["processed".into(), stats.processed.to_string()],
        vec!["failed".into(), stats.failed.to_string()],
        vec!["discarded".into(), stats.discarded.to_string()],
        vec!["enqueued".into(), stats.enqueued.to_string()],
        vec!["scheduled".into(), stats.scheduled.to_string()],
        vec!["retries".into(), stats.retries.to_string()],
        vec!["dead".into(), stats.dead.to_string()],
        vec!["processes".into(), stats.processes.to_string()],
        vec!["busy".into(), stats.busy.to_string()],
        vec![
            "default queue latency".into(),
            span_text(stats.default_queue_latency),
        ],
    ];
    println!("{}", out.source);
    print!("{}", table(&["total", "value"], &rows));
    println!();
    let rows = history
        .iter()
        .map(|d| {
            vec![
                d.date.clone(),
                d.processed.to_string(),
                d.failed.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    print!("{}", table(&["date (UTC)", "processed", "failed"], &rows));
    Ok(())
}

pub(super) async fn queues(api: &Api, out: &Out, action: Option<QueuesAction>) -> Outcome {
    match action.unwrap_or(QueuesAction::List) {
        QueuesAction::List => {
            let queues = api.queues().await?;
            let rows = queues
                .iter()
                .map(|q| {
                    let state = if q.paused { "paused" } else { "running" };
                    vec![
                        q.name.clone(),
                        q.size.to_string(),
                        span_text(q.latency),
                        state.into(),
                    ]
                })
                .collect();
            out.print(&json!(queues), &["queue", "size", "latency", "state"], rows);
        }
        QueuesAction::Pause { queue } => {
            let newly = api.pause_queue(&queue).await?;
            let note = if newly {
                ""
            } else {
                " (it was paused already)"
            };
            out.done(
                json!({"paused": queue, "changed": newly}),
                format!(
                    "paused {queue}{note}: servers take none of its jobs from their next fetch (within a second); `psychiq queues unpause {queue}` resumes it"
                ),
            );
        }
        QueuesAction::Unpause { queue } => {
            let changed = api.unpause_queue(&queue).await?;
            let note = if changed { "" } else { " (it was not paused)" };
            out.done(
                json!({"unpaused": queue, "changed": changed}),
                format!("unpaused {queue}{note}: servers take its jobs again"),
            );
        }
    }
    Ok(())
}

pub(super) async fn processes(api: &Api, out: &Out, action: Option<ProcessAction>) -> Outcome {
    let known = |identity: String| async move {
        let all = api.processes().await?;
        if all.iter().any(|p| p.identity == identity) {
            Ok(identity)
        } else {
            Err(Failure::BadInput(format!(
                "no live process {identity:?}; `psychiq processes` lists them"
            )))
        }
    };
    match action.unwrap_or(ProcessAction::List) {
        ProcessAction::List => {
            let list = api.processes().await?;
            let now = crate::clock::now_secs();
            let rows = list
                .iter()
                .map(|p| {
                    vec![
                        p.identity.clone(),
                        p.info["tag"].as_str().unwrap_or("").to_string(),
                        p.queues_text(),
                        format!("{}/{}", p.busy, p.info["concurrency"]),
                        if p.quiet { "quiet" } else { "running" }.into(),
                        format!("{:.1} MB", p.rss as f64 / 1024.0),
                        format!("{} ago", span_text(now - p.beat)),
                    ]
                })
                .collect();
            out.print(
                &json!(list),
                &[
                    "identity",
                    "tag",
                    "queues",
                    "busy",
                    "state",
                    "rss",
                    "last beat",
                ],
                rows,
            );
        }
        ProcessAction::Quiet { identity } => {
            let identity = known(identity).await?;
            api.quiet(&identity).await?;
            out.done(
                json!({"quiet": identity}),
                format!("asked {identity} to quiet (it obeys within a heartbeat, 5 s)"),
            );
        }
        ProcessAction::Stop { identity } => {
            let identity = known(identity).await?;
            api.stop(&identity).await?;
            out.done(
                json!({"stop": identity}),
                format!("asked {identity} to stop (it obeys within a heartbeat, 5 s)"),
            );
        }
    }
    Ok(())
}
