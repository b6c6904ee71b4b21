//! The pages of the Pro- and Enterprise-style extensions: Periodic (each entry servers
//! declare, with its schedule, next and last tick, "Enqueue now" and Pause / Resume),
//! Limits (each rate limiter in use and how full it is), Batches (each batch's progress,
//! with links to its failed jobs) and Iterations (iterable jobs in progress, with Cancel).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;

use super::actions::{back, bad, field, forged};
use super::pages::{Page, Params, WebError, csrf_field, layout, segment};
use super::{Ctx, Web};
use crate::extensions::cron::format_in;

pub(super) async fn periodic(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let entries = web.api.periodic_jobs().await?;
    let base = &ctx.base;
    let body = html! {
        h1 { "Periodic" }
        p { "Cron entries the servers declare. Each tick is enqueued once, whatever the number of servers; a paused entry's ticks are skipped everywhere until it is resumed. Times are in each entry's zone." }
        table {
            thead { tr { th { "name" } th { "cron" } th { "zone" } th { "class" } th { "queue" } th { "next" } th { "last" } th { "state" } th {} } }
            tbody {
                @for e in &entries {
                    tr {
                        td { (e.name) }
                        td { code { (e.cron) } }
                        td { (e.tz) }
                        td { (e.class) }
                        td { a href={ (base) "/queues/" (segment(&e.queue)) } { (e.queue) } }
                        td { (e.next_at.map_or("-".to_string(), |t| format_in(t, &e.tz))) }
                        td { (e.last_at.map_or("never".to_string(), |t| format_in(t, &e.tz))) }
                        td {
                            @if e.paused { span.badge.quiet { "paused" } }
                            @else if e.is_live() { span.badge { "ticking" } }
                            @else { span.badge.quiet title="no running server declares it" { "no server" } }
                        }
                        td.actions {
                            form method="post" action={ (base) "/periodic/" (segment(&e.name)) } {
                                (csrf_field(&ctx))
                                button name="action" value="run" { "Enqueue now" }
                                @if e.paused {
                                    button name="action" value="resume" { "Resume" }
                                } @else {
                                    button name="action" value="pause" { "Pause" }
                                }
                            }
                        }
                    }
                }
                @if entries.is_empty() {
                    tr { td colspan="9" { "No server declares a periodic entry (see the README's periodic jobs)." } }
                }
            }
        }
    };
    Ok(layout(
        &ctx,
        "Periodic",
        "periodic",
        true,
        web.notices.take(params.notice.as_deref()),
        body,
    ))
}

pub(super) async fn act_on_periodic(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let to = format!("{}/periodic", ctx.base);
    let notice = match field(&fields, "action") {
        Some("run") => {
            let jid = web.api.run_periodic(&name).await?;
            format!("Enqueued {name} now as {jid}; its schedule is unchanged.")
        }
        Some("pause") => {
            web.api.pause_periodic(&name).await?;
            format!("Paused {name}: no server enqueues its ticks until it is resumed.")
        }
        Some("resume") => {
            web.api.resume_periodic(&name).await?;
            format!("Resumed {name}: it runs again from its next tick.")
        }
        _ => return Ok(bad("action must be run, pause or resume")),
    };
    Ok(back(&web, &to, &notice))
}

pub(super) async fn limits(State(web): State<Arc<Web>>, Extension(ctx): Extension<Ctx>) -> Page {
    let limits = web.api.limits().await?;
    let body = html! {
        h1 { "Limits" }
        p { "Rate limiters the processes have used, shared by all of them. A job over its limit is snoozed with backoff (not failed) and fails only after waiting longer than its limiter allows." }
        table {
            thead { tr { th { "name" } th { "kind" } th { "size" } th { "interval" } th { "in use" } th { "over limit" } } }
            tbody {
                @for l in &limits {
                    @let limiter = &l.limiter;
                    @let percent = (l.in_use as f64 * 100.0 / f64::from(limiter.size().max(1))).min(100.0);
                    tr {
                        td { (limiter.name()) }
                        td { (serde_json::to_value(limiter.kind()).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                        td { (limiter.size()) }
                        td { (limiter.interval_text()) }
                        td {
                            @if let Some(why) = &l.unreadable { span.badge.quiet { (why) } }
                            @else {
                                meter min="0" max=(limiter.size()) value=(l.in_use) title={ (format!("{percent:.0}%")) } {}
                                " " (l.in_use) " / " (limiter.size())
                            }
                        }
                        td { (l.over) }
                    }
                }
                @if limits.is_empty() {
                    tr { td colspan="6" { "No rate limiter has been used yet (see the README's rate limits)." } }
                }
            }
        }
    };
    Ok(layout(&ctx, "Limits", "limits", true, None, body))
}

pub(super) async fn batches(State(web): State<Arc<Web>>, Extension(ctx): Extension<Ctx>) -> Page {
    let batches = web.api.batches(100).await?;
    let base = &ctx.base;
    let body = html! {
        h1 { "Batches" }
        p { "The newest batches still in Redis. Done is jobs that succeeded (or died) out of all added; failed jobs are retrying." }
        table {
            thead { tr { th { "batch" } th { "description" } th { "progress" } th { "pending" } th { "failures" } th { "dead" } th { "state" } } }
            tbody {
                @for b in &batches {
                    @let done = b.total.saturating_sub(b.pending);
                    tr {
                        td { code { (b.bid) } @if let Some(parent) = &b.parent { br; small { "child of " code { (parent) } } } }
                        td { (b.description) }
                        td { progress max=(b.total.max(1)) value=(done) {} " " (done) " / " (b.total) }
                        td { (b.pending) }
                        td {
                            (b.failures)
                            @for jid in b.failed_jids.iter().take(10) {
                                br; a href={ (base) "/retries/" (segment(jid)) } { code { (jid) } }
                            }
                        }
                        td { (b.dead) }
                        td {
                            @if b.success_at.is_some() { span.badge { "succeeded" } }
                            @else if b.death_at.is_some() { span.badge.quiet { "has dead jobs" } }
                            @else if b.complete_at.is_some() { span.badge { "complete" } }
                            @else { span.badge.quiet { "running" } }
                        }
                    }
                }
                @if batches.is_empty() { tr { td colspan="7" { "No batch in Redis (see the README's batches)." } } }
            }
        }
    };
    Ok(layout(&ctx, "Batches", "batches", true, None, body))
}

pub(super) async fn iterations(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let iterations = web.api.iterations(100).await?;
    let now = crate::clock::now_secs();
    let body = html! {
        h1 { "Iterations" }
        p { "Iterable jobs part-way through their walk, with the cursor saved after their last step. Cancel stops one after its running step; it is not run again." }
        table {
            thead { tr { th { "jid" } th { "cursor" } th { "last step" } th { "state" } th {} } }
            tbody {
                @for i in &iterations {
                    tr {
                        td { code { (i.jid) } }
                        td {
                            @if let Some(why) = &i.unreadable { span.badge.quiet { (why) } }
                            @else { code { (i.cursor.as_deref().unwrap_or("-")) } }
                        }
                        td { (crate::api::span_text(now - i.updated_at)) " ago" }
                        td { @if i.cancelled { span.badge.quiet { "cancelled" } } @else { span.badge { "running or waiting" } } }
                        td.actions {
                            @if !i.cancelled {
                                form method="post" action={ (ctx.base) "/iterations" } {
                                    (csrf_field(&ctx))
                                    input type="hidden" name="jid" value=(i.jid);
                                    button name="action" value="cancel" { "Cancel" }
                                }
                            }
                        }
                    }
                }
                @if iterations.is_empty() { tr { td colspan="5" { "No iterable job in progress." } } }
            }
        }
    };
    Ok(layout(
        &ctx,
        "Iterations",
        "iterations",
        true,
        web.notices.take(params.notice.as_deref()),
        body,
    ))
}

pub(super) async fn cancel_iteration(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let (Some("cancel"), Some(jid)) = (field(&fields, "action"), field(&fields, "jid")) else {
        return Ok(bad("action must be cancel, with a jid"));
    };
    web.api.cancel_iteration(jid).await?;
    let to = format!("{}/iterations", ctx.base);
    Ok(back(
        &web,
        &to,
        &format!("Cancelled {jid}: it ends after its running step."),
    ))
}
