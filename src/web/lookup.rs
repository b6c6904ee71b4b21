//! "Where is my job?": the header's search box and `/jobs/JID`, which show a tracked job's
//! status (state, times, progress, error, result), and find any other job by jid wherever
//! it is and send the browser to its page (or say where it runs, or that it is nowhere any
//! more). A job that waits or runs can be cancelled from here (`POST /jobs/JID/cancel`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::actions::{back, field, forged};
use super::pages::{Params, WebError, csrf_field, job_key, job_progress, layout, segment};
use super::{Ctx, Web};
use crate::api::{Cancellation, Whereabouts, span_text, utc_text};
use crate::status::JobStatus;

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
    Query(params): Query<Params>,
) -> Result<Response, WebError> {
    let base = &ctx.base;
    let notice = web.notices.take(params.notice.as_deref());
    if let Some(stored) = web.api.tracked_status(&jid).await? {
        // Read again in full (its place in its queue) only when it waits there.
        let status = match stored.state {
            crate::status::State::Enqueued => web.api.status(&jid).await?.unwrap_or(stored),
            _ => stored,
        };
        return Ok(tracked(&ctx, &status, notice).into_response());
    }
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
                (cancel_button(&ctx, &jid))
                pre { code { (job.raw()) } }
            };
            layout(&ctx, "Fetched job", "busy", false, notice, body).into_response()
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
                (cancel_button(&ctx, &jid))
                pre { code { (serde_json::to_string_pretty(&work.payload).unwrap_or_default()) } }
            };
            layout(&ctx, "Running job", "busy", false, notice, body).into_response()
        }
        None => {
            let body = html! {
                h1 { "No job " code { (jid) } }
                p { "It is not running, not taken by a server, not in a queue, and not in the scheduled, retry or dead set. "
                    "A job that succeeded, was discarded or was deleted leaves nothing behind in Sidekiq's layout "
                    "unless it is tracked (Job::track, WorkerOptions::track, or a server's --track-all); "
                    "its outcome is counted on the " a href=(ctx.home()) { "dashboard" } "." }
            };
            (
                StatusCode::NOT_FOUND,
                layout(&ctx, "Job not found", "", false, notice, body),
            )
                .into_response()
        }
    })
}

/// A Cancel button for job `jid`, back to its page.
pub(super) fn cancel_button(ctx: &Ctx, jid: &str) -> maud::Markup {
    html! {
        form.inline method="post" action={ (ctx.base) "/jobs/" (segment(jid)) "/cancel" } {
            (csrf_field(ctx))
            button.danger type="submit" { "Cancel" }
        }
    }
}

/// A tracked job's page: its state, times, progress, error and result.
fn tracked(ctx: &Ctx, status: &JobStatus, notice: Option<String>) -> impl IntoResponse {
    let base = &ctx.base;
    let class = status.class.as_deref().unwrap_or("");
    let rows: Vec<(&str, String)> = status
        .queue
        .clone()
        .map(|queue| ("queue", queue))
        .into_iter()
        .chain(status.details(utc_text))
        .collect();
    let failed = matches!(
        status.state,
        crate::status::State::Dead | crate::status::State::Retrying
    );
    let body = html! {
        h1 { (class) " " code { (status.jid) } " "
            @if failed { span.badge.failed { (status.state) } } @else { span.badge { (status.state) } } }
        @if let Some(progress) = &status.progress {
            p { "Progress: " (job_progress(progress)) }
        }
        dl.status {
            @for (name, value) in &rows { dt { (name) } dd { (value) } }
        }
        @if let Some(result) = &status.result { h2 { "Result" } pre { code { (result) } } }
        @if !status.state.is_final() { (cancel_button(ctx, &status.jid)) }
        p { "Tracked: kept for its retention after its last change. "
            a href={ (base) "/busy" } { "Busy" } " lists what runs now." }
    };
    layout(ctx, "Job", "", !status.state.is_final(), notice, body)
}

/// `POST /jobs/JID/cancel`: cancels the job, then back to its page with what happened.
pub(super) async fn cancel(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(jid): Path<String>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let notice = match web.api.cancel(&jid).await? {
        Cancellation::Removed(state) => format!("Cancelled {jid}: it was {state} and is removed."),
        Cancellation::Signalled { process } => {
            format!("Cancelling {jid}: {process} stops it within a second.")
        }
        Cancellation::AlreadyFinished(state) => format!("{jid} is {state} already."),
        Cancellation::NotFound => {
            format!("{jid} is nowhere now; marked, so it ends cancelled if it turns up.")
        }
    };
    let to = match field(&fields, "back") {
        Some("busy") => format!("{}/busy", ctx.base),
        _ => format!("{}/jobs/{}", ctx.base, segment(&jid)),
    };
    Ok(back(&web, &to, &notice))
}
