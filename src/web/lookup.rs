//! "Where is my job?": the header's search box and `/jobs/JID`, which find a job by jid
//! wherever it is and send the browser to its page (or say where it runs, or that it is
//! nowhere any more).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::pages::{WebError, job_key, layout, segment};
use super::{Ctx, Web};
use crate::api::{Whereabouts, span_text};

/// The search box's query.
#[derive(Debug, Deserialize)]
pub(super) struct Search {
    #[serde(default)]
    jid: String,
}

/// `GET /jobs?jid=…`: the search box sends the browser on to `/jobs/JID`.
pub(super) async fn search(
    Extension(ctx): Extension<Ctx>,
    Query(search): Query<Search>,
) -> Response {
    let jid = search.jid.trim();
    if jid.is_empty() {
        return Redirect::to(ctx.home()).into_response();
    }
    Redirect::to(&format!("{}/jobs/{}", ctx.base, segment(jid))).into_response()
}

/// `GET /jobs/JID`: the job's own page where it waits, or where it runs.
pub(super) async fn job(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(jid): Path<String>,
) -> Result<Response, WebError> {
    let base = &ctx.base;
    let page = |set: &str, key: String| {
        Redirect::to(&format!("{base}/{set}/{}", segment(&key))).into_response()
    };
    Ok(match web.api.locate(&jid).await? {
        Some(Whereabouts::Enqueued(job)) => Redirect::to(&format!(
            "{base}/queues/{}/{}",
            segment(job.queue()),
            segment(job.jid())
        ))
        .into_response(),
        Some(Whereabouts::Scheduled(job)) => page("scheduled", job_key(&job)),
        Some(Whereabouts::Fetched { process, job }) => {
            let body = html! {
                h1 { (job.display_class()) " " code { (jid) } }
                p { "Taken by " code { (process) } " from queue "
                    a href={ (base) "/queues/" (segment(job.queue())) } { (job.queue()) }
                    ", about to run (or started since its last heartbeat). "
                    a href={ (base) "/busy" } { "Busy" } " lists what runs now." }
                pre { code { (job.raw()) } }
            };
            layout(&ctx, "Fetched job", "busy", false, None, body).into_response()
        }
        Some(Whereabouts::Retrying(job)) => page("retries", job_key(&job)),
        Some(Whereabouts::Dead(job)) => page("dead", job_key(&job)),
        Some(Whereabouts::Running(work)) => {
            let now = crate::clock::now_secs();
            let class = work.payload["wrapped"]
                .as_str()
                .or(work.payload["class"].as_str())
                .unwrap_or("");
            let body = html! {
                h1 { (class) " " code { (jid) } }
                p { "Running on " code { (work.process) } " (slot " (work.thread) "), from queue "
                    a href={ (base) "/queues/" (segment(&work.queue)) } { (work.queue) }
                    ", for " (span_text(now - work.run_at)) ". "
                    a href={ (base) "/busy" } { "Busy" } " lists what runs now." }
                pre { code { (serde_json::to_string_pretty(&work.payload).unwrap_or_default()) } }
            };
            layout(&ctx, "Running job", "busy", false, None, body).into_response()
        }
        None => {
            let body = html! {
                h1 { "No job " code { (jid) } }
                p { "It is not running, not taken by a server, not in a queue, and not in the scheduled, retry or dead set. "
                    "A job that succeeded, was discarded or was deleted leaves nothing behind in Sidekiq's layout; "
                    "its outcome is counted on the " a href=(ctx.home()) { "dashboard" } "." }
            };
            (
                StatusCode::NOT_FOUND,
                layout(&ctx, "Job not found", "", false, None, body),
            )
                .into_response()
        }
    })
}
