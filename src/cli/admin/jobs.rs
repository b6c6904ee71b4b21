//! `job`, `jobs QUEUE` and `scheduled` / `retries` / `dead`: finding, showing and moving jobs.

use serde_json::json;

use crate::api::{Api, SetKind, utc_text};

use super::*;

/// `psychiq job JID`: where the job is, then the job in full.
pub(super) async fn locate(api: &Api, out: &Out, jid: &str) -> Outcome {
    use crate::api::Whereabouts;
    let (state, job, process) = match api.locate(jid).await? {
        None => {
            return Err(Failure::NotFound(format!(
                "no job {jid:?} is running, taken by a server, waiting in a queue, or in the scheduled, retry or dead set; a job that succeeded, was discarded or was deleted leaves nothing behind unless it was tracked (Job::track, WorkerOptions::track, or a server's --track-all)"
            )));
        }
        Some(Whereabouts::Running(work)) => {
            let place = format!(
                "running on {} (slot {}) from queue {} since {}",
                work.process,
                work.thread,
                work.queue,
                utc_text(work.run_at)
            );
            out.done(
                json!({"state": "running", "process": work.process, "slot": work.thread, "queue": work.queue, "run_at": work.run_at, "job": work.payload}),
                format!("{jid}: {place}\n{}", serde_json::to_string_pretty(&work.payload).unwrap_or_default()),
            );
            return Ok(());
        }
        Some(Whereabouts::Fetched { process, job }) => ("fetched", job, Some(process)),
        Some(Whereabouts::Enqueued(job)) => ("enqueued", job, None),
        Some(Whereabouts::Scheduled(job)) => ("scheduled", job, None),
        Some(Whereabouts::Retrying(job)) => ("retrying", job, None),
        Some(Whereabouts::Dead(job)) => ("dead", job, None),
    };
    if out.json {
        /// The job as `--json` shows it elsewhere ([`job_json`], its numbers exact), with
        /// where it is.
        #[derive(serde::Serialize)]
        struct Located<'a> {
            state: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            process: Option<&'a str>,
            queue: &'a str,
            at: Option<f64>,
            job: Box<serde_json::value::RawValue>,
        }
        let located = Located {
            state,
            process: process.as_deref(),
            queue: job.queue(),
            at: job.score(),
            job: serde_json::value::RawValue::from_string(job_json(&job))
                .map_err(|e| Failure::Other(crate::error::Error::Other(e.to_string())))?,
        };
        println!("{}", serde_json::to_string(&located).unwrap_or_default());
        return Ok(());
    }
    match (&process, job.score()) {
        (Some(process), _) => println!(
            "{jid}: fetched by {process} from queue {}, about to run",
            job.queue()
        ),
        (None, Some(at)) => println!(
            "{jid}: {state} (queue {}), at {}",
            job.queue(),
            utc_text(at)
        ),
        (None, None) => println!("{jid}: {state} in queue {}", job.queue()),
    }
    show(out, &job);
    Ok(())
}

pub(super) async fn jobs(api: &Api, out: &Out, queue: &str, action: Option<JobsAction>) -> Outcome {
    match action.unwrap_or_else(|| JobsAction::List(PageArgs::default())) {
        JobsAction::List(page) => {
            let start = (page.page - 1) * page.per_page;
            let jobs = api.queue_jobs(queue, start, page.per_page).await?;
            if jobs.is_empty() && !api.queue_exists(queue).await? {
                return Err(no_queue(queue));
            }
            out.print_json_text(
                &jobs_json(&jobs),
                &["jid", "class", "queue", "enqueued at (UTC)", "args"],
                job_rows(&jobs, None),
            );
        }
        JobsAction::Show { jid } => {
            let job = api
                .find_in_queue(queue, &jid)
                .await?
                .ok_or_else(|| not_found(&format!("jobs {queue}"), &jid))?;
            show(out, &job);
        }
        JobsAction::Delete { jid } => {
            let job = api
                .queue(queue)
                .find(&jid)
                .await?
                .ok_or_else(|| not_found(&format!("jobs {queue}"), &jid))?;
            let deleted = job.delete().await?;
            out.done(
                json!({"deleted": deleted}),
                if deleted {
                    format!("deleted {jid} from queue {queue}")
                } else {
                    format!("{jid} left queue {queue} before it could be deleted")
                },
            );
        }
        JobsAction::Clear(confirm) => {
            if !api.queue_exists(queue).await? {
                return Err(no_queue(queue));
            }
            let size = api.queue_size(queue).await?;
            confirm.ask(&format!("delete queue {queue} and its {size} jobs"))?;
            let count = api.clear_queue(queue).await?;
            out.done(
                json!({"deleted": count}),
                format!("cleared queue {queue}: {count} jobs deleted"),
            );
        }
    }
    Ok(())
}

pub(super) async fn set(api: &Api, out: &Out, kind: SetKind, action: Option<SetAction>) -> Outcome {
    let what = kind.label();
    let set = api.set(kind);
    let find =
        |jid: String| async move { set.find(&jid).await?.ok_or_else(|| not_found(what, &jid)) };
    match action.unwrap_or_else(|| SetAction::List(PageArgs::default())) {
        SetAction::List(page) => {
            let jobs = match &page.search {
                Some(text) => api.set_search(kind, text, page.per_page as usize).await?,
                None => {
                    let start = (page.page - 1) * page.per_page;
                    api.set_page(kind, start, page.per_page).await?
                }
            };
            let value = jobs_json(&jobs);
            let when = match kind {
                SetKind::Scheduled => "runs at (UTC)",
                SetKind::Retry => "next retry (UTC)",
                SetKind::Dead => "died at (UTC)",
            };
            let mut headers = vec!["jid", "class", "queue", when, "args"];
            if kind != SetKind::Scheduled {
                headers.push("error");
            }
            out.print_json_text(&value, &headers, job_rows(&jobs, Some(kind)));
        }
        SetAction::Show { jid } => show(out, &find(jid).await?.into_record()),
        SetAction::Retry { jid } => {
            let job = find(jid.clone()).await?;
            let moved = job.retry_now().await?;
            out.done(
                json!({"retried": moved}),
                if moved {
                    format!("{jid} is back on queue {}", job.queue())
                } else {
                    format!("{jid} left {what} before it could be retried")
                },
            );
        }
        SetAction::Delete { jid } => {
            let job = find(jid.clone()).await?;
            let deleted = job.delete().await?;
            out.done(
                json!({"deleted": deleted}),
                if deleted {
                    format!("deleted {jid} from {what}")
                } else {
                    format!("{jid} left {what} before it could be deleted")
                },
            );
        }
        SetAction::Kill { jid } => {
            if kind == SetKind::Dead {
                return Err(Failure::BadInput(format!(
                    "{jid} is already dead; use `psychiq dead retry {jid}` or `psychiq dead delete {jid}`"
                )));
            }
            let job = find(jid.clone()).await?;
            let killed = job.kill().await?;
            out.done(
                json!({"killed": killed}),
                if killed {
                    format!("{jid} moved to the dead set")
                } else {
                    format!("{jid} left {what} before it could be killed")
                },
            );
        }
        SetAction::RetryAll(confirm) => {
            let size = api.set_size(kind).await?;
            confirm.ask(&format!(
                "put all {size} jobs of {what} back on their queues"
            ))?;
            let count = api.retry_all(kind).await?;
            out.done(
                json!({"retried": count}),
                format!("{count} jobs from {what} are back on their queues"),
            );
        }
        SetAction::Clear(confirm) => {
            let size = api.set_size(kind).await?;
            confirm.ask(&format!("delete all {size} jobs of {what}"))?;
            let count = api.clear(kind).await?;
            out.done(
                json!({"deleted": count}),
                format!("cleared {what}: {count} jobs deleted"),
            );
        }
    }
    Ok(())
}
