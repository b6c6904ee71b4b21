//! Workflows: the newest ones with their counts, and one drawn as its graph (server-rendered
//! SVG: a column per depth, each step a box in its state's colour, linked to its job), with
//! its steps' results, and Cancel and Retry buttons.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::actions::{back, forged};
use super::pages::{Page, Params, WebError, csrf_field, layout, segment};
use super::{Ctx, Web};
use crate::api::{WorkflowStatus, WorkflowStep, utc_text};

/// Steps drawn at most; a larger workflow is shown as its table.
const MOST_DRAWN: usize = 200;

pub(super) async fn list(State(web): State<Arc<Web>>, Extension(ctx): Extension<Ctx>) -> Page {
    let workflows = web.api.workflows(100).await?;
    let base = &ctx.base;
    let body = html! {
        h1 { "Workflows" }
        p { "The newest workflows still in Redis (kept 30 days). A step starts when every step it runs after has succeeded." }
        table {
            thead { tr { th { "workflow" } th { "name" } th { "progress" } th { "dead" } th { "skipped" } th { "pushed" } th { "state" } } }
            tbody {
                @for w in &workflows {
                    tr {
                        td { a href={ (base) "/workflows/" (segment(&w.wid)) } { code { (w.wid) } } }
                        td {
                            (w.name)
                            @if let Some((parent, step)) = &w.parent {
                                " " small { "(step " (step) " of " a href={ (base) "/workflows/" (segment(parent)) } { code { (parent) } } ")" }
                            }
                        }
                        td { progress max=(w.total.max(1)) value=(w.done) {} " " (w.done) " / " (w.total) }
                        td { (w.dead) }
                        td { (w.skipped) }
                        td { (utc_text(w.created_at)) }
                        td { (badge(&w.state)) }
                    }
                }
                @if workflows.is_empty() { tr { td colspan="7" { "No workflow in Redis (see the README's workflows)." } } }
            }
        }
    };
    Ok(layout(&ctx, "Workflows", "workflows", true, None, body))
}

pub(super) async fn show(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(wid): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, WebError> {
    let notice = web.notices.take(params.notice.as_deref());
    let Some(workflow) = web.api.workflow(&wid).await? else {
        let body = html! {
            h1 { "No workflow " code { (wid) } }
            p { "It is not in Redis (workflows are kept 30 days after they were pushed)." }
        };
        return Ok((
            StatusCode::NOT_FOUND,
            layout(&ctx, "Workflow not found", "workflows", false, notice, body),
        )
            .into_response());
    };
    let base = &ctx.base;
    let running = workflow.state == "running";
    let retryable = workflow.finished_at.is_some()
        && workflow.parent.is_none()
        && matches!(workflow.state.as_str(), "failed" | "cancelled");
    let body = html! {
        h1 { (workflow.name) " " code { (workflow.wid) } " " (badge(&workflow.state)) }
        @if let Some((parent, step)) = &workflow.parent {
            p { "Step " (step) " of workflow " a href={ (base) "/workflows/" (segment(parent)) } { code { (parent) } } "." }
        }
        p { (workflow.done) " of " (workflow.total) " steps succeeded, " (workflow.dead) " dead, "
            (workflow.skipped) " skipped; on a dead step: " (workflow.policy) "."
            @if let Some(step) = &workflow.failed_step { " The first to die: " (step) "." } }
        @if running {
            form.inline method="post" action={ (base) "/workflows/" (segment(&workflow.wid)) "/cancel" } {
                (csrf_field(&ctx))
                button.danger type="submit" { "Cancel workflow" }
            }
        }
        @if retryable {
            form.inline method="post" action={ (base) "/workflows/" (segment(&workflow.wid)) "/retry" } {
                (csrf_field(&ctx))
                button type="submit" { "Retry dead and skipped steps" }
            }
        }
        @if workflow.steps.len() <= MOST_DRAWN { (graph(&ctx, &workflow)) }
        table {
            thead { tr { th { "step" } th { "state" } th { "after" } th { "job or workflow" } th { "started" } th { "took" } th { "result or error" } } }
            tbody {
                @for s in &workflow.steps {
                    tr {
                        td { (s.name) @if s.kind != "job" { " " small { "(" (s.kind) ")" } } }
                        td { (badge(&s.state)) }
                        td { (s.parents.join(", ")) }
                        td { a href=(step_link(base, s)) { code { (s.jid) } } }
                        td { @if let Some(at) = s.started_at { (utc_text(at)) } }
                        td { @if let (Some(from), Some(to)) = (s.started_at, s.ended_at) { (format!("{:.3} s", (to - from).max(0.0))) } }
                        td {
                            @if let Some(result) = &s.result { code { (result) } }
                            @if let Some(error) = &s.error { span.error { (error) } }
                        }
                    }
                }
            }
        }
    };
    Ok(layout(&ctx, "Workflow", "workflows", running, notice, body).into_response())
}

/// Where a step links: its job's page, or a sub-workflow's.
fn step_link(base: &str, step: &WorkflowStep) -> String {
    let page = if step.kind == "workflow" {
        "workflows"
    } else {
        "jobs"
    };
    format!("{base}/{page}/{}", segment(&step.jid))
}

/// `POST /workflows/WID/retry`.
pub(super) async fn retry(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(wid): Path<String>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let notice = match web.api.retry_workflow(&wid).await {
        Ok(dead) => format!("Retrying workflow {wid} from its {dead} dead steps."),
        Err(crate::Error::NotFound(why) | crate::Error::Config(why)) => why,
        Err(e) => return Err(e.into()),
    };
    let to = format!("{}/workflows/{}", ctx.base, segment(&wid));
    Ok(back(&web, &to, &notice))
}

/// `POST /workflows/WID/cancel`.
pub(super) async fn cancel(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(wid): Path<String>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    if let Some(refused) = forged(&ctx, &fields) {
        return Ok(refused);
    }
    let notice = match web.api.cancel_workflow(&wid).await? {
        Some(stopped) => format!("Cancelled workflow {wid}: {stopped} steps stopped or skipped."),
        None => format!("No workflow {wid}."),
    };
    let to = format!("{}/workflows/{}", ctx.base, segment(&wid));
    Ok(back(&web, &to, &notice))
}

fn badge(state: &str) -> Markup {
    match state {
        "dead" | "failed" => html! { span.badge.failed { (state) } },
        "succeeded" => html! { span.badge { (state) } },
        _ => html! { span.badge.quiet { (state) } },
    }
}

/// The graph: each step in the column of its depth (the longest path to it from a step
/// with no parent), edges from parents to children, boxes coloured by state.
fn graph(ctx: &Ctx, workflow: &WorkflowStatus) -> Markup {
    const W: usize = 150;
    const H: usize = 36;
    const GAP_X: usize = 60;
    const GAP_Y: usize = 16;
    let by_name: HashMap<&str, &WorkflowStep> = workflow
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut depth: HashMap<&str, usize> = HashMap::new();
    fn depth_of<'a>(
        name: &'a str,
        by_name: &HashMap<&'a str, &'a WorkflowStep>,
        depth: &mut HashMap<&'a str, usize>,
        guard: usize,
    ) -> usize {
        if let Some(d) = depth.get(name) {
            return *d;
        }
        let d = match by_name.get(name) {
            Some(step) if guard < by_name.len() => step
                .parents
                .iter()
                .map(|p| depth_of(p, by_name, depth, guard + 1) + 1)
                .max()
                .unwrap_or(0),
            _ => 0,
        };
        depth.insert(name, d);
        d
    }
    for step in &workflow.steps {
        depth_of(&step.name, &by_name, &mut depth, 0);
    }
    let mut columns: Vec<Vec<&WorkflowStep>> = Vec::new();
    for step in &workflow.steps {
        let d = depth[step.name.as_str()];
        if columns.len() <= d {
            columns.resize_with(d + 1, Vec::new);
        }
        columns[d].push(step);
    }
    let mut at: HashMap<&str, (usize, usize)> = HashMap::new();
    for (x, column) in columns.iter().enumerate() {
        for (y, step) in column.iter().enumerate() {
            at.insert(step.name.as_str(), (x * (W + GAP_X), y * (H + GAP_Y)));
        }
    }
    let width = columns.len() * (W + GAP_X);
    let height = columns.iter().map(Vec::len).max().unwrap_or(1) * (H + GAP_Y);
    let colour = |state: &str| match state {
        "succeeded" => "#e8f5ec",
        "dead" => "#fde8e8",
        "skipped" => "#eeeeee",
        "enqueued" => "#fff4e0",
        _ => "#ffffff",
    };
    html! {
        svg.workflow width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } role="img" aria-label="the workflow's steps" {
            @for step in &workflow.steps {
                @for parent in &step.parents {
                    @if let (Some((px, py)), Some((cx, cy))) = (at.get(parent.as_str()), at.get(step.name.as_str())) {
                        line x1=(px + W) y1=(py + H / 2) x2=(cx) y2=(cy + H / 2) stroke="#999" {}
                    }
                }
            }
            @for step in &workflow.steps {
                @let (x, y) = at[step.name.as_str()];
                a href=(step_link(&ctx.base, step)) {
                    rect x=(x) y=(y) width=(W) height=(H) rx="4" fill=(colour(&step.state)) stroke="#666"
                        stroke-dasharray=[(step.kind == "compensation").then_some("4 3")]
                        stroke-width=[(step.kind == "workflow").then_some("2.5")] {}
                    text x=(x + 8) y=(y + 15) font-size="12" { (truncate(&step.name)) }
                    text x=(x + 8) y=(y + 29) font-size="10" fill="#555" { (step.state) }
                }
            }
        }
    }
}

/// A step name cut to fit its box.
fn truncate(name: &str) -> String {
    if name.chars().count() <= 20 {
        return name.to_string();
    }
    let cut: String = name.chars().take(19).collect();
    format!("{cut}…")
}
