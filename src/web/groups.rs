//! Groups: each queue that has them, with the groups whose jobs arrived last: backlog,
//! running against the limit, starts against the rate, state; Pause / Resume and a new
//! limit per group.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;

use super::actions::{back, bad, field, forged};
use super::pages::{Page, Params, WebError, csrf_field, layout, segment};
use super::{Ctx, Web};
use crate::api::utc_text;

/// Groups listed per queue (the newest by their last job).
const SHOWN: u64 = 100;

pub(super) async fn list(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let mut queues = Vec::new();
    for queue in web.api.grouped_queues().await? {
        let groups = web.api.groups(&queue, SHOWN).await?;
        queues.push((queue, groups));
    }
    let base = &ctx.base;
    let body = html! {
        h1 { "Groups" }
        p { "Jobs pushed with a group key (a tenant, a customer) run at most their group's limit at once across every server (1: in order), at most its rate, and groups take turns. Each queue lists the " (SHOWN) " groups whose jobs arrived last." }
        @if queues.is_empty() {
            p { "No queue has grouped jobs yet (see the README's groups and sequences)." }
        }
        @for (queue, groups) in &queues {
            h2 id={ "queue-" (queue) } { "Queue " a href={ (base) "/queues/" (segment(queue)) } { (queue) } }
            table {
                thead { tr { th { "group" } th { "backlog" } th { "running" } th { "rate" } th { "state" } th { "last job (UTC)" } th {} } }
                tbody {
                    @for g in groups {
                        tr {
                            td { code { (g.name) } }
                            td { (g.backlog) }
                            td { meter min="0" max=(g.limit) value=(g.running) {} " " (g.running) " / " (g.limit) }
                            td {
                                @if let Some(rate) = g.rate {
                                    (g.started_in_window) " / " (rate.count) " in " (rate.per_secs) "s"
                                } @else { "-" }
                            }
                            td {
                                @if g.paused { span.badge.quiet { "paused" } }
                                @else if g.backlog > 0 && g.running >= g.limit { span.badge { "full" } }
                                @else if g.backlog > 0 { span.badge { "waiting" } }
                                @else { span.badge.quiet { "idle" } }
                            }
                            td { (utc_text(g.last_job_at)) }
                            td.actions {
                                form method="post" action={ (base) "/groups/" (segment(queue)) "/" (segment(&g.name)) } {
                                    (csrf_field(&ctx))
                                    @if g.paused {
                                        button name="action" value="resume" { "Resume" }
                                    } @else {
                                        button name="action" value="pause" { "Pause" }
                                    }
                                    " "
                                    input type="number" name="limit" min="1" value=(g.limit) aria-label="limit" style="width:5em";
                                    button name="action" value="limit" { "Set limit" }
                                }
                            }
                        }
                    }
                    @if groups.is_empty() { tr { td colspan="7" { "No group known." } } }
                }
            }
        }
    };
    Ok(layout(
        &ctx,
        "Groups",
        "groups",
        true,
        web.notices.take(params.notice.as_deref()),
        body,
    ))
}

pub(super) async fn act(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((queue, group)): Path<(String, String)>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let to = format!("{}/groups", ctx.base);
    let notice = match field(&fields, "action") {
        Some("pause") => {
            web.api.pause_group(&queue, &group).await?;
            format!(
                "Paused group {group} of {queue}: its running jobs finish, no other starts until it is resumed."
            )
        }
        Some("resume") => {
            web.api.resume_group(&queue, &group).await?;
            format!("Resumed group {group} of {queue}: its jobs start in its next turn.")
        }
        Some("limit") => {
            let Some(limit) = field(&fields, "limit").and_then(|l| l.trim().parse::<u64>().ok())
            else {
                return Ok(bad("limit must be a whole number, at least 1"));
            };
            web.api.set_group_limit(&queue, &group, limit).await?;
            format!(
                "Group {group} of {queue} now runs at most {} at once.",
                limit.max(1)
            )
        }
        _ => return Ok(bad("action must be pause, resume or limit")),
    };
    Ok(back(&web, &to, &notice))
}
