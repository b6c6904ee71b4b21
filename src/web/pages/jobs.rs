//! The scheduled, retry and dead sets, and a page per job.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::{Ctx, Web};
use crate::api::{JobRecord, SetKind};
use crate::api::{span_text, utc_text};
use crate::extensions::UniqueLock;
use crate::job::payload;

use super::*;

pub(in crate::web) async fn set(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, WebError> {
    let Some(kind) = set_kind(&name) else {
        return Ok(not_found(Extension(ctx)).await.into_response());
    };
    let page = params.page();
    let search = params.search();
    let (jobs, total) = match &search {
        Some(q) => {
            let found = web
                .api
                .set_search(kind, q, (PER_PAGE * MAX_PAGE.min(40)) as usize)
                .await?;
            let total = found.len() as u64;
            let start = ((page - 1) * PER_PAGE) as usize;
            (
                found
                    .into_iter()
                    .skip(start)
                    .take(PER_PAGE as usize)
                    .collect::<Vec<_>>(),
                total,
            )
        }
        None => (
            web.api
                .set_page(kind, (page - 1) * PER_PAGE, PER_PAGE)
                .await?,
            web.api.set_size(kind).await?,
        ),
    };
    let base = &ctx.base;
    let title = set_title(kind);
    let when = match kind {
        SetKind::Scheduled => "runs",
        SetKind::Retry => "next retry",
        SetKind::Dead => "died",
    };
    let errors = kind != SetKind::Scheduled;
    let now = crate::clock::now_secs();
    let body = html! {
        h1 { (title) }
        form.search method="get" action={ (base) "/" (name) } {
            input type="search" name="q" value=(search.clone().unwrap_or_default()) placeholder="class, args, error, jid…" maxlength="200";
            button { "Search" }
            @if search.is_some() { a href={ (base) "/" (name) } { "clear search" } }
        }
        form method="post" action={ (base) "/" (name) } #selection {
            (csrf_field(&ctx))
            table {
                thead { tr {
                    th { input type="checkbox" #select-all aria-label="select all"; }
                    th { (when) } th { "class" } th { "args" } th { "queue" }
                    @if errors { th { "error" } th { "retries" } }
                } }
                tbody {
                    @for job in &jobs {
                        @let at = job.score().unwrap_or(0.0);
                        tr {
                            td { input type="checkbox" name="key" value=(job_key(job)) aria-label="select"; }
                            td { a href={ (base) "/" (name) "/" (segment(&job_key(job))) } title=(utc_text(at)) {
                                @if at > now { "in " (span_text(at - now)) } @else { (span_text(now - at)) " ago" }
                            } }
                            td.class { (job.display_class()) }
                            td { code { (args_text(job)) } }
                            td { (job.queue()) }
                            @if errors {
                                td.error { (job.error_class().unwrap_or("")) ": " (job.error_message().unwrap_or("")) }
                                td { (job.retry_count().map(|c| c.to_string()).unwrap_or_default()) }
                            }
                        }
                    }
                    @if jobs.is_empty() { tr { td colspan="7" { @if search.is_some() { "No job matches." } @else { "None." } } } }
                }
            }
            p.bulk {
                "With the selected: "
                @match kind {
                    SetKind::Scheduled => { button name="action" value="add" { "Add to queue" } }
                    _ => { button name="action" value="retry" { "Retry now" } }
                }
                button.danger name="action" value="delete" { "Delete" }
                @if kind != SetKind::Dead { button.danger name="action" value="kill" { "Kill" } }
            }
        }
        (pager(&ctx, &name, page, total, search.as_deref()))
        form.all method="post" action={ (base) "/" (name) } data-confirm={ "Apply to every job in " (title) "?" } {
            (csrf_field(&ctx))
            "Every job: "
            @if kind != SetKind::Scheduled { button name="action" value="retry_all" { "Retry all" } }
            button.danger name="action" value="delete_all" { "Delete all" }
            @if kind != SetKind::Dead { button.danger name="action" value="kill_all" { "Kill all" } }
        }
    };
    Ok(layout(
        &ctx,
        title,
        &name,
        false,
        web.notices.take(params.notice.as_deref()),
        body,
    )
    .into_response())
}

/// The unique lock job `job` names, if it has `unique_key` and the lock is held.
pub(super) async fn unique_lock_of(
    web: &Web,
    job: &JobRecord,
) -> Result<Option<UniqueLock>, WebError> {
    let Some(key) = job
        .item()
        .and_then(|item| item.get("unique_key"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    Ok(web.api.unique_lock(key).await?)
}

/// The lock a job names, with the button that lets it go.
pub(super) fn unique_lock_section(
    ctx: &Ctx,
    job: &JobRecord,
    lock: Option<&UniqueLock>,
    from: &str,
) -> Markup {
    html! {
        @if let Some(lock) = lock {
            section {
                h2 { "Unique lock" }
                p {
                    "Held by " code { (lock.jid) }
                    @if lock.jid == job.jid() { " (this job)" } @else { " (another job, which may have finished)" }
                    "; it lets go by itself in " (span_text(lock.ttl_secs.max(0) as f64)) ". Until then the same job cannot be pushed."
                }
                form method="post" action={ (ctx.base) "/unique" } {
                    (csrf_field(ctx))
                    input type="hidden" name="key" value=(lock.key);
                    input type="hidden" name="from" value=(from);
                    button name="action" value="unlock" { "Unlock" }
                }
            }
        }
    }
}

pub(super) fn job_page(
    ctx: &Ctx,
    title: &str,
    active: &str,
    job: &JobRecord,
    back: &str,
    actions: Markup,
) -> Html<String> {
    let pretty_args = if job.is_encrypted() {
        crate::encryption::SHOWN.to_string()
    } else {
        serde_json::to_string_pretty(job.args()).unwrap_or_default()
    };
    let fields: Vec<(String, String)> = job
        .item()
        .map(|item| {
            item.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "args" | "error_backtrace"))
                .map(|(k, v)| {
                    let shown = match (k.as_str(), v) {
                        ("created_at" | "enqueued_at" | "failed_at" | "retried_at", v) => {
                            payload::timestamp_secs(v)
                                .map(|s| format!("{} UTC", utc_text(s)))
                                .unwrap_or_else(|| v.to_string())
                        }
                        (_, Value::String(s)) => s.clone(),
                        (_, v) => v.to_string(),
                    };
                    (k.clone(), shown)
                })
                .collect()
        })
        .unwrap_or_default();
    let body = html! {
        p { a href=(back) { "← back" } }
        h1 { (job.display_class()) " " code { (job.jid()) } }
        @if job.item().is_none() { p.error { "This payload is not a JSON object; it is shown as stored." } pre { (job.raw()) } }
        @if let Some(class) = job.error_class() {
            section.error-box { h2 { "Error" } p { b { (class) } ": " (job.error_message().unwrap_or("")) } }
        }
        h2 { "Arguments" }
        pre.args { (pretty_args) }
        h2 { "Fields" }
        table.fields { tbody { @for (k, v) in &fields { tr { th { (k) } td { code { (v) } } } } } }
        @if let Some(lines) = job.backtrace() {
            h2 { "Backtrace" }
            pre.backtrace { @for line in lines { (line) "\n" } }
        }
        (actions)
    };
    layout(ctx, title, active, false, None, body)
}

pub(in crate::web) async fn set_job(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((name, jid)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let Some(kind) = set_kind(&name) else {
        return Ok(not_found(Extension(ctx)).await.into_response());
    };
    let Some(job) = web.api.set_find_key(kind, &jid).await? else {
        return Ok(gone(&ctx, &format!("{}/{name}", ctx.base)));
    };
    let base = &ctx.base;
    let actions = html! {
        form method="post" action={ (base) "/" (name) } {
            (csrf_field(&ctx))
            input type="hidden" name="key" value=(job_key(&job));
            @match kind {
                SetKind::Scheduled => { button name="action" value="add" { "Add to queue" } }
                _ => { button name="action" value="retry" { "Retry now" } }
            }
            button.danger name="action" value="delete" { "Delete" }
            @if kind != SetKind::Dead { button.danger name="action" value="kill" { "Kill" } }
        }
    };
    let lock = unique_lock_of(&web, &job).await?;
    let here = format!("{base}/{name}/{}", segment(&jid));
    let actions = html! { (actions) (unique_lock_section(&ctx, &job, lock.as_ref(), &here)) };
    let back = format!("{base}/{name}");
    Ok(job_page(&ctx, set_title(kind), &name, &job, &back, actions).into_response())
}

pub(in crate::web) async fn queue_job(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((name, jid)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let back = format!("{}/queues/{}", ctx.base, segment(&name));
    let Some(job) = web.api.find_in_queue(&name, &jid).await? else {
        return Ok(gone(&ctx, &back));
    };
    let lock = unique_lock_of(&web, &job).await?;
    let here = format!("{back}/{}", segment(&jid));
    let actions = html! {
        form method="post" action=(back) {
            (csrf_field(&ctx))
            input type="hidden" name="jid" value=(job.jid());
            button.danger name="action" value="delete" { "Delete" }
        }
        (unique_lock_section(&ctx, &job, lock.as_ref(), &here))
    };
    Ok(job_page(
        &ctx,
        &format!("Queue {name}"),
        "queues",
        &job,
        &back,
        actions,
    )
    .into_response())
}

pub(super) fn gone(ctx: &Ctx, back: &str) -> Response {
    let body = html! {
        h1 { "Job not found" }
        p { "It has run, moved or been deleted since. " a href=(back) { "Back to the list" } }
    };
    (
        StatusCode::NOT_FOUND,
        layout(ctx, "Not found", "", false, None, body),
    )
        .into_response()
}
