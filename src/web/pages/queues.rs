//! Queues: the list, one queue's jobs, and a job in it.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};

use super::{Ctx, Web};
use crate::api::QueueSummary;
use crate::api::{span_text, utc_text};

use super::*;

/// A queue's state as a badge: paused queues are taken from by no server.
pub(super) fn queue_state(paused: bool) -> Markup {
    html! { @if paused { span.badge.quiet { "paused" } } @else { span.badge { "running" } } }
}

/// The form that pauses a running queue or resumes a paused one.
pub(super) fn pause_button(ctx: &Ctx, queue: &str, paused: bool) -> Markup {
    let (action, label) = if paused {
        ("unpause", "Resume")
    } else {
        ("pause", "Pause")
    };
    html! {
        form method="post" action={ (ctx.base) "/queues/" (segment(queue)) } {
            (csrf_field(ctx))
            button name="action" value=(action) { (label) }
        }
    }
}

/// Queues shown on the dashboard's front page: the largest.
pub(super) const DASHBOARD_QUEUES: usize = 25;

/// The `n` largest queues, largest first.
pub(super) fn largest(queues: &[QueueSummary], n: usize) -> Vec<&QueueSummary> {
    let mut largest: Vec<&QueueSummary> = queues.iter().collect();
    largest.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    largest.truncate(n);
    largest
}

pub(super) fn queue_table(ctx: &Ctx, queues: &[&QueueSummary], actions: bool) -> Markup {
    let base = &ctx.base;
    html! {
        table {
            thead { tr { th { "queue" } th { "size" } th { "latency" } th { "state" } @if actions { th {} } } }
            tbody {
                @for q in queues {
                    tr {
                        td { a href={ (base) "/queues/" (segment(&q.name)) } { (q.name) } }
                        td { (q.size) @if q.with_priority > 0 { " " small { "(" (q.with_priority) " with a priority)" } } }
                        td { (span_text(q.latency)) }
                        td { (queue_state(q.paused)) }
                        @if actions {
                            td.actions {
                                (pause_button(ctx, &q.name, q.paused))
                                form method="post" action={ (base) "/queues/" (segment(&q.name)) } data-confirm={ "Delete queue " (q.name) " and its " (q.size) " jobs?" } {
                                    (csrf_field(ctx))
                                    button.danger name="action" value="clear" { "Clear" }
                                }
                            }
                        }
                    }
                }
                @if queues.is_empty() { tr { td colspan="5" { "No queues yet." } } }
            }
        }
    }
}

pub(in crate::web) async fn queues(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let stats = web.api.stats().await?;
    let page = params.page();
    let total = stats.queues.len() as u64;
    let shown: Vec<&QueueSummary> = stats
        .queues
        .iter()
        .skip(((page - 1) * PER_PAGE) as usize)
        .take(PER_PAGE as usize)
        .collect();
    let body = html! {
        h1 { "Queues (" (total) ")" }
        (queue_table(&ctx, &shown, true))
        (pager(&ctx, "queues", page, total, None))
    };
    Ok(layout(
        &ctx,
        "Queues",
        "queues",
        true,
        web.notices.take(params.notice.as_deref()),
        body,
    ))
}

pub(in crate::web) async fn queue(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Page {
    let page = params.page();
    let total = web.api.queue_size(&name).await?;
    let paused = web.api.paused_queues().await?.contains(&name);
    let jobs = web
        .api
        .queue_jobs(&name, (page - 1) * PER_PAGE, PER_PAGE)
        .await?;
    let base = &ctx.base;
    let action = format!("{base}/queues/{}", segment(&name));
    let body = html! {
        h1 { "Queue " code { (name) } " " (queue_state(paused)) }
        @if paused { p { "Paused: no server takes its jobs until it is resumed." } }
        table {
            thead { tr { th { "jid" } th { "class" } th { "args" } th { "enqueued" } th {} } }
            tbody {
                @for job in &jobs {
                    tr {
                        td { a href={ (action) "/" (segment(job.jid())) } { code { (job.jid()) } } }
                        td { (job.display_class()) }
                        td { code { (args_text(job)) } }
                        td { (utc_text(job.enqueued_at().unwrap_or(0.0))) }
                        td.actions {
                            form method="post" action=(action) {
                                (csrf_field(&ctx))
                                input type="hidden" name="jid" value=(job.jid());
                                button.danger name="action" value="delete" { "Delete" }
                            }
                        }
                    }
                }
                @if jobs.is_empty() { tr { td colspan="5" { "This queue is empty." } } }
            }
        }
        (pager(&ctx, &format!("queues/{}", segment(&name)), page, total, None))
        div.actions {
            (pause_button(&ctx, &name, paused))
            form method="post" action=(action) data-confirm={ "Delete every job in " (name) "?" } {
                (csrf_field(&ctx))
                button.danger name="action" value="clear" { "Clear queue" }
            }
        }
    };
    Ok(layout(
        &ctx,
        &format!("Queue {name}"),
        "queues",
        false,
        web.notices.take(params.notice.as_deref()),
        body,
    ))
}
