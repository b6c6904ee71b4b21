//! `periodic`, `limits`, `batches`, `unique` and `iterations`: the extensions' state.

use serde_json::json;

use crate::api::{Api, span_text, utc_text};

use super::*;

pub(super) async fn iterations(api: &Api, out: &Out, action: Option<IterationsAction>) -> Outcome {
    match action.unwrap_or(IterationsAction::List) {
        IterationsAction::List => {
            let iterations = api.iterations(100).await?;
            let now = crate::clock::now_secs();
            let rows = iterations
                .iter()
                .map(|i| {
                    vec![
                        i.jid.clone(),
                        i.unreadable
                            .clone()
                            .or_else(|| i.cursor.clone())
                            .unwrap_or("-".into()),
                        format!("{} ago", span_text(now - i.updated_at)),
                        if i.cancelled {
                            "cancelled"
                        } else {
                            "running or waiting"
                        }
                        .into(),
                    ]
                })
                .collect();
            out.print(
                &json!(iterations),
                &["jid", "cursor", "last step", "state"],
                rows,
            );
        }
        IterationsAction::Cancel { jid } => {
            let already = api.cancel_iteration(&jid).await?;
            let note = if already {
                " (it was cancelled already)"
            } else {
                ""
            };
            out.done(
                json!({"cancelled": jid, "changed": !already}),
                format!(
                    "cancelled {jid}{note}: it ends after its running step, or before its first"
                ),
            );
        }
    }
    Ok(())
}

pub(super) async fn unique(api: &Api, out: &Out, action: Option<UniqueAction>) -> Outcome {
    let row = |l: &crate::extensions::UniqueLock| {
        vec![
            l.key.clone(),
            l.jid.clone(),
            span_text(l.ttl_secs.max(0) as f64),
        ]
    };
    match action.unwrap_or(UniqueAction::List { limit: 100 }) {
        UniqueAction::List { limit } => {
            let locks = api.unique_locks(limit).await?;
            let rows = locks.iter().map(row).collect();
            out.print(&json!(locks), &["key", "jid", "lets go in"], rows);
        }
        UniqueAction::Show { key } => {
            let Some(lock) = api.unique_lock(&key).await? else {
                return Err(Failure::NotFound(format!(
                    "no lock for unique_key {key:?}: the job may be pushed; `psychiq unique` lists the locks"
                )));
            };
            out.print(
                &json!(lock),
                &["key", "jid", "lets go in"],
                vec![row(&lock)],
            );
        }
        UniqueAction::Unlock { key } => {
            if !api.unlock_unique(&key).await? {
                return Err(Failure::NotFound(format!(
                    "no lock for unique_key {key:?} (it may have gone already); `psychiq unique` lists the locks"
                )));
            }
            out.done(
                json!({"key": key, "unlocked": true}),
                format!("Unlocked {key}: the same job can be pushed again"),
            );
        }
    }
    Ok(())
}

pub(super) async fn batches(api: &Api, out: &Out, action: Option<BatchesAction>) -> Outcome {
    let state = |b: &crate::batch::BatchStatus| {
        if b.success_at.is_some() {
            "succeeded"
        } else if b.death_at.is_some() {
            "has dead jobs"
        } else if b.complete_at.is_some() {
            "complete"
        } else {
            "running"
        }
    };
    match action.unwrap_or(BatchesAction::List { limit: 50 }) {
        BatchesAction::List { limit } => {
            let batches = api.batches(limit).await?;
            let rows = batches
                .iter()
                .map(|b| {
                    vec![
                        b.bid.clone(),
                        b.description.clone(),
                        b.total.to_string(),
                        b.pending.to_string(),
                        b.failures.to_string(),
                        b.dead.to_string(),
                        state(b).into(),
                    ]
                })
                .collect();
            out.print(
                &json!(batches),
                &[
                    "bid",
                    "description",
                    "total",
                    "pending",
                    "failures",
                    "dead",
                    "state",
                ],
                rows,
            );
        }
        BatchesAction::Show { bid } => {
            let Some(b) = api.batch(&bid).await? else {
                return Err(Failure::NotFound(format!(
                    "no batch {bid:?} (it may have expired); `psychiq batches` lists them"
                )));
            };
            let time = |t: Option<f64>| t.map_or("-".to_string(), utc_text);
            let rows = vec![
                vec!["bid".into(), b.bid.clone()],
                vec!["description".into(), b.description.clone()],
                vec!["parent".into(), b.parent.clone().unwrap_or("-".into())],
                vec!["state".into(), state(&b).into()],
                vec!["total".into(), b.total.to_string()],
                vec!["pending".into(), b.pending.to_string()],
                vec!["failures".into(), b.failures.to_string()],
                vec!["dead".into(), b.dead.to_string()],
                vec![
                    "child batches pending".into(),
                    b.children_pending.to_string(),
                ],
                vec!["created at".into(), time(Some(b.created_at))],
                vec!["complete at".into(), time(b.complete_at)],
                vec!["success at".into(), time(b.success_at)],
                vec!["death at".into(), time(b.death_at)],
                vec!["failed jids".into(), b.failed_jids.join(" ")],
            ];
            out.print(&json!(b), &["field", "value"], rows);
        }
    }
    Ok(())
}

pub(super) async fn limits(api: &Api, out: &Out) -> Outcome {
    let limits = api.limits().await?;
    let rows = limits
        .iter()
        .map(|l| {
            let limiter = &l.limiter;
            let interval = limiter.interval_text();
            vec![
                limiter.name().to_string(),
                serde_json::to_value(limiter.kind())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                limiter.size().to_string(),
                interval,
                l.unreadable
                    .clone()
                    .unwrap_or_else(|| format!("{}/{}", l.in_use, limiter.size())),
                l.over.to_string(),
            ]
        })
        .collect();
    out.print(
        &json!(limits),
        &["name", "kind", "size", "interval", "in use", "over"],
        rows,
    );
    Ok(())
}

pub(super) async fn periodic(api: &Api, out: &Out, action: Option<PeriodicAction>) -> Outcome {
    use crate::extensions::cron::format_in;
    match action.unwrap_or(PeriodicAction::List) {
        PeriodicAction::List => {
            let entries = api.periodic_jobs().await?;
            let rows = entries
                .iter()
                .map(|e| {
                    let state = match (e.paused, e.is_live()) {
                        (true, _) => "paused",
                        (false, true) => "ticking",
                        (false, false) => "no server",
                    };
                    let at = |t: Option<i64>| t.map_or("-".to_string(), |t| format_in(t, &e.tz));
                    vec![
                        e.name.clone(),
                        e.cron.clone(),
                        e.tz.clone(),
                        e.class.clone(),
                        e.queue.clone(),
                        at(e.next_at),
                        at(e.last_at),
                        state.into(),
                    ]
                })
                .collect();
            out.print(
                &json!(entries),
                &[
                    "name", "cron", "tz", "class", "queue", "next", "last", "state",
                ],
                rows,
            );
        }
        PeriodicAction::Run { name } => {
            let jid = api.run_periodic(&name).await?;
            out.done(
                json!({"enqueued": name, "jid": jid}),
                format!("enqueued {name} now as {jid}; its schedule is unchanged"),
            );
        }
        PeriodicAction::Pause { name } => {
            let changed = api.pause_periodic(&name).await?;
            let note = if changed {
                ""
            } else {
                " (it was paused already)"
            };
            out.done(
                json!({"paused": name, "changed": changed}),
                format!(
                    "paused {name}{note}: no server enqueues its ticks; `psychiq periodic resume {name}` resumes it"
                ),
            );
        }
        PeriodicAction::Resume { name } => {
            let changed = api.resume_periodic(&name).await?;
            let note = if changed { "" } else { " (it was not paused)" };
            out.done(
                json!({"resumed": name, "changed": changed}),
                format!("resumed {name}{note}: it runs again from its next tick"),
            );
        }
    }
    Ok(())
}
