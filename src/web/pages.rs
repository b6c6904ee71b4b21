//! The dashboard's pages, rendered with maud (which escapes every value it prints).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, Web};
use crate::api::{JobRecord, QueueSummary, SetKind, Stats};
use crate::api::{span_text, utc_text};
use crate::error::Error;
use crate::extensions::UniqueLock;
use crate::job::payload;

/// Jobs shown on one page.
pub(super) const PER_PAGE: u64 = 25;
/// The highest page number a URL may ask for.
const MAX_PAGE: u64 = 100_000;
/// The longest search text taken from a URL.
const MAX_SEARCH: usize = 200;

/// A Redis failure shown as a page that says what to do.
pub(crate) struct WebError(pub Error);

impl From<Error> for WebError {
    fn from(e: Error) -> WebError {
        WebError(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Error::NotFound(message) = &self.0 {
            return (StatusCode::NOT_FOUND, format!("{message}\n")).into_response();
        }
        let body = html! {
            (DOCTYPE)
            html { head { meta charset="utf-8"; title { "Psychiq: Redis unavailable" } }
            body { h1 { "Redis error" } p { (self.0.to_string()) } p { "Reload when that is mended." } } }
        };
        (StatusCode::SERVICE_UNAVAILABLE, Html(body.into_string())).into_response()
    }
}

pub(super) type Page = Result<Html<String>, WebError>;

/// Query parameters, read leniently and bounded.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    page: Option<String>,
    q: Option<String>,
    days: Option<String>,
    /// The Classes page's range (`1h` … `72h`).
    range: Option<String>,
    pub(super) notice: Option<String>,
}

impl Params {
    fn page(&self) -> u64 {
        self.page
            .as_deref()
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, MAX_PAGE)
    }
    fn search(&self) -> Option<String> {
        let q = self.q.as_deref()?.trim();
        (!q.is_empty()).then(|| q.chars().take(MAX_SEARCH).collect())
    }
    fn days(&self) -> u32 {
        self.days
            .as_deref()
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(30)
            .clamp(1, 180)
    }
}

/// Percent-encodes a path segment (queue names and jids may hold anything).
pub(super) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn set_kind(name: &str) -> Option<SetKind> {
    match name {
        "scheduled" => Some(SetKind::Scheduled),
        "retries" => Some(SetKind::Retry),
        "dead" => Some(SetKind::Dead),
        _ => None,
    }
}

fn set_title(kind: SetKind) -> &'static str {
    match kind {
        SetKind::Scheduled => "Scheduled",
        SetKind::Retry => "Retries",
        SetKind::Dead => "Dead",
    }
}

pub(super) fn layout(
    ctx: &Ctx,
    title: &str,
    active: &str,
    live: bool,
    notice: Option<String>,
    body: Markup,
) -> Html<String> {
    let base = &ctx.base;
    let nav = [
        ("", "Dashboard"),
        ("busy", "Busy"),
        ("queues", "Queues"),
        ("retries", "Retries"),
        ("scheduled", "Scheduled"),
        ("dead", "Dead"),
        ("classes", "Classes"),
        ("periodic", "Periodic"),
        ("limits", "Limits"),
        ("batches", "Batches"),
        ("iterations", "Iterations"),
    ];
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Psychiq" }
                link rel="stylesheet" href={ (base) "/assets/app.css" };
                link rel="icon" href="data:,";
                script src={ (base) "/assets/app.js" } defer {}
            }
            body data-base=(base) {
                header {
                    a.brand href=(ctx.home()) { "Psychiq" }
                    nav {
                        @for (path, label) in nav {
                            @if path.is_empty() {
                                a.active[active == path] href=(ctx.home()) { (label) }
                            } @else {
                                a.active[active == path] href={ (base) "/" (path) } { (label) }
                            }
                        }
                    }
                    form.find method="get" action={ (base) "/jobs" } role="search" {
                        input type="search" name="jid" placeholder="find a job by jid" aria-label="Find a job by jid" maxlength="100";
                    }
                    span.source title="Redis, database and namespace" { (ctx.source) }
                    div.strip {
                        @for (key, label) in [("processed", "processed"), ("failed", "failed"), ("busy", "busy"), ("enqueued", "enqueued"), ("retries", "retries"), ("dead", "dead")] {
                            span { b data-stat=(key) { "…" } " " (label) }
                        }
                    }
                }
                main data-live[live] {
                    @if let Some(notice) = notice { p.notice role="status" { (notice) } }
                    (body)
                }
                footer { "Psychiq " (env!("CARGO_PKG_VERSION")) " · namespace-aware, Sidekiq-compatible" }
            }
        }
    };
    Html(page.into_string())
}

pub(super) fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="_csrf" value=(ctx.csrf); }
}

fn pager(ctx: &Ctx, path: &str, page: u64, total: u64, search: Option<&str>) -> Markup {
    let pages = total.div_ceil(PER_PAGE).max(1);
    let link = |p: u64| {
        let mut url = format!("{}/{path}?page={p}", ctx.base);
        if let Some(q) = search {
            url += &format!("&q={}", segment(q));
        }
        url
    };
    html! {
        nav.pager {
            @if page > 1 { a href=(link(page - 1)) { "← newer" } }
            span { "page " (page) " of " (pages) " · " (total) " jobs" }
            @if page < pages { a href=(link(page + 1)) { "older →" } }
        }
    }
}

/// Sidekiq's `SCORE-JID` key of a job in a set: found again with one `ZRANGE … BYSCORE`.
pub(super) fn job_key(job: &JobRecord) -> String {
    format!("{}-{}", job.score().unwrap_or(0.0), job.jid())
}

/// The arguments, or for a payload that is not a JSON object (or not UTF-8) the stored
/// text itself, escaped, so it can be recognised before it is deleted.
fn args_text(job: &JobRecord) -> String {
    let text = match job.item() {
        Some(_) => job.display_args(),
        None => crate::job::text::printable(job.raw()).into_owned(),
    };
    if text.chars().count() > 120 {
        text.chars().take(119).chain(['…']).collect()
    } else {
        text
    }
}

pub(super) async fn dashboard(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let stats = web.api.stats().await?;
    let days = params.days();
    let history = web.api.history(days, SystemTime::now()).await?;
    // A Redis that refuses INFO (a restricted ACL) leaves the panel out, not the page.
    let redis = web.api.redis_info().await.unwrap_or_default();
    let cards = cards(&stats);
    let chart = history_chart(&history);
    let base = &ctx.base;
    let body = html! {
        h1 { "Dashboard" }
        div.cards { @for (key, label, value) in cards { div.card { b data-stat=(key) { (value) } span { (label) } } } }
        section {
            h2 { "Live: jobs per second" }
            canvas #live width="900" height="220" data-api={ (base) "/api/stats" } aria-label="processed and failed per second, live" {}
            p.legend { span.processed { "■ processed" } " " span.failed { "■ failed" } " (sampled every 5 s, as servers flush their counters)" }
        }
        section {
            h2 { "History (UTC days)" }
            p.tabs { @for d in [7, 30, 90, 180] { a.active[d == days] href={ (ctx.home()) "?days=" (d) } { (d) " days" } } }
            (chart)
        }
        @if !redis.is_empty() {
            section {
                h2 { "Redis" }
                table.redis {
                    tbody {
                        tr { th { "address" } td { code { (ctx.source) } } }
                        @for (name, value) in &redis {
                            tr {
                                th { (redis_label(name)) }
                                td {
                                    @if name == "uptime_in_seconds" {
                                        (span_text(value.parse().unwrap_or(0.0)))
                                    } @else { (value) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Queues" }
            (queue_table(&ctx, &largest(&stats.queues, DASHBOARD_QUEUES), false))
            @if stats.queues.len() > DASHBOARD_QUEUES {
                p { "The " (DASHBOARD_QUEUES) " largest of " (stats.queues.len()) " queues; " a href={ (base) "/queues" } { "all queues" } "." }
            }
        }
    };
    Ok(layout(
        &ctx,
        "Dashboard",
        "",
        true,
        web.notices.take(params.notice.as_deref()),
        body,
    ))
}

/// How the Redis panel names an `INFO` field.
fn redis_label(name: &str) -> &str {
    match name {
        "redis_version" => "version",
        "uptime_in_seconds" => "up for",
        "connected_clients" => "connected clients",
        "used_memory_human" => "memory used",
        "used_memory_peak_human" => "memory peak",
        "maxmemory_human" => "memory limit (0B: none)",
        "maxmemory_policy" => "eviction policy",
        other => other,
    }
}

fn cards(stats: &Stats) -> Vec<(&'static str, &'static str, u64)> {
    vec![
        ("processed", "processed", stats.processed),
        ("failed", "failed", stats.failed),
        ("discarded", "discarded", stats.discarded),
        ("busy", "busy", stats.busy),
        ("enqueued", "enqueued", stats.enqueued),
        ("scheduled", "scheduled", stats.scheduled),
        ("retries", "retries", stats.retries),
        ("dead", "dead", stats.dead),
        ("processes", "processes", stats.processes),
    ]
}

/// Processed and failed per day as an SVG line chart, oldest day on the left.
fn history_chart(history: &[crate::api::DayStats]) -> Markup {
    let days: Vec<_> = history.iter().rev().collect();
    let processed: Vec<u64> = days.iter().map(|d| d.processed).collect();
    let failed: Vec<u64> = days.iter().map(|d| d.failed).collect();
    let first = days.first().map(|d| d.date.as_str()).unwrap_or("");
    let last = days.last().map(|d| d.date.as_str()).unwrap_or("");
    html! {
        (line_chart(
            (900.0, 200.0),
            &[("processed", &processed), ("failed", &failed)],
            (first, last),
            "a day",
            "processed and failed per day",
        ))
        details {
            summary { "Per day (" (history.len()) " days)" }
            table.compact {
                thead { tr { th { "date" } th { "processed" } th { "failed" } } }
                tbody { @for d in history { tr { td { (d.date) } td { (d.processed) } td { (d.failed) } } } }
            }
        }
    }
}

/// An SVG line chart of `lines` (CSS class, values), oldest on the left, labelled at both
/// ends, its top value per `unit`.
fn line_chart(
    (w, h): (f64, f64),
    lines: &[(&str, &[u64])],
    (first, last): (&str, &str),
    unit: &str,
    label: &str,
) -> Markup {
    let pad = 30.0;
    let len = lines
        .iter()
        .map(|(_, values)| values.len())
        .max()
        .unwrap_or(0);
    let max = lines
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = if len > 1 {
        (w - 2.0 * pad) / (len - 1) as f64
    } else {
        0.0
    };
    let points = |values: &[u64]| {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{:.1},{:.1}",
                    pad + i as f64 * step,
                    h - pad - *v as f64 / max * (h - 2.0 * pad)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        svg.chart viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(label) {
            line x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) class="axis" {}
            @for (class, values) in lines { polyline class=(class) points=(points(values)) {} }
            text x=(pad) y=(h - 8.0) { (first) }
            text x=(w - pad) y=(h - 8.0) text-anchor="end" { (last) }
            text x=(pad) y="16" { "max " (max as u64) " " (unit) }
        }
    }
}

/// A queue's state as a badge: paused queues are taken from by no server.
fn queue_state(paused: bool) -> Markup {
    html! { @if paused { span.badge.quiet { "paused" } } @else { span.badge { "running" } } }
}

/// The form that pauses a running queue or resumes a paused one.
fn pause_button(ctx: &Ctx, queue: &str, paused: bool) -> Markup {
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
const DASHBOARD_QUEUES: usize = 25;

/// The `n` largest queues, largest first.
fn largest(queues: &[QueueSummary], n: usize) -> Vec<&QueueSummary> {
    let mut largest: Vec<&QueueSummary> = queues.iter().collect();
    largest.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    largest.truncate(n);
    largest
}

fn queue_table(ctx: &Ctx, queues: &[&QueueSummary], actions: bool) -> Markup {
    let base = &ctx.base;
    html! {
        table {
            thead { tr { th { "queue" } th { "size" } th { "latency" } th { "state" } @if actions { th {} } } }
            tbody {
                @for q in queues {
                    tr {
                        td { a href={ (base) "/queues/" (segment(&q.name)) } { (q.name) } }
                        td { (q.size) }
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

pub(super) async fn busy(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let processes = web.api.processes().await?;
    let running = web.api.running_of(&processes).await?;
    let now = crate::clock::now_secs();
    let base = &ctx.base;
    let body = html! {
        h1 { "Busy" }
        h2 { "Processes (" (processes.len()) ")" }
        table {
            thead { tr { th { "identity" } th { "tag" } th { "queues" } th { "busy" } th { "rss" } th { "started" } th { "last beat" } th { "state" } th {} } }
            tbody {
                @for p in &processes {
                    tr {
                        td { code { (p.identity) } }
                        td { (p.info["tag"].as_str().unwrap_or("")) }
                        td { (p.info["queues"].as_array().map(|q| q.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        td { (p.busy) " / " (p.info["concurrency"].as_u64().unwrap_or(0)) }
                        td { (format!("{:.1} MB", p.rss as f64 / 1024.0)) }
                        td { (span_text(now - p.info["started_at"].as_f64().unwrap_or(now))) " ago" }
                        td { (span_text(now - p.beat)) " ago" }
                        td { @if p.quiet { span.badge.quiet { "quiet" } } @else { span.badge { "running" } } }
                        td.actions {
                            form method="post" action={ (base) "/busy" } {
                                (csrf_field(&ctx))
                                input type="hidden" name="identity" value=(p.identity);
                                @if !p.quiet { button name="action" value="quiet" { "Quiet" } }
                                button.danger name="action" value="stop" { "Stop" }
                            }
                        }
                    }
                }
                @if processes.is_empty() { tr { td colspan="9" { "No live processes." } } }
            }
        }
        h2 { "Running jobs (" (running.len()) ")" }
        table {
            thead { tr { th { "process" } th { "slot" } th { "jid" } th { "queue" } th { "class" } th { "args" } th { "started" } } }
            tbody {
                @for w in &running {
                    tr {
                        td { code { (w.process) } }
                        td { (w.thread) }
                        td { @let jid = w.payload["jid"].as_str().unwrap_or(""); a href={ (base) "/jobs/" (segment(jid)) } { code { (jid) } } }
                        td { (w.queue) }
                        td { (w.payload["wrapped"].as_str().or(w.payload["class"].as_str()).unwrap_or("")) }
                        td { code { (w.payload["args"].to_string()) } }
                        td { (span_text(now - w.run_at)) " ago" }
                    }
                }
                @if running.is_empty() { tr { td colspan="7" { "Nothing running." } } }
            }
        }
    };
    Ok(layout(
        &ctx,
        "Busy",
        "busy",
        true,
        web.notices.take(params.notice.as_deref()),
        body,
    ))
}

pub(super) async fn queues(
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

pub(super) async fn queue(
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

pub(super) async fn set(
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
async fn unique_lock_of(web: &Web, job: &JobRecord) -> Result<Option<UniqueLock>, WebError> {
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
fn unique_lock_section(
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

fn job_page(
    ctx: &Ctx,
    title: &str,
    active: &str,
    job: &JobRecord,
    back: &str,
    actions: Markup,
) -> Html<String> {
    let pretty_args = serde_json::to_string_pretty(job.args()).unwrap_or_default();
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

pub(super) async fn set_job(
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

pub(super) async fn queue_job(
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

fn gone(ctx: &Ctx, back: &str) -> Response {
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

/// The ranges the Classes page charts: label, seconds.
const CLASS_RANGES: [(&str, u64); 5] = [
    ("1h", 3_600),
    ("3h", 3 * 3_600),
    ("8h", 8 * 3_600),
    ("24h", 24 * 3_600),
    ("72h", 72 * 3_600),
];
/// Classes charted at most (the busiest).
const CHARTED_CLASSES: usize = 12;

pub(super) async fn classes(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<Params>,
) -> Page {
    let metrics = web.api.class_metrics().await?;
    let (range, range_secs) = CLASS_RANGES
        .iter()
        .copied()
        .find(|(name, _)| params.range.as_deref() == Some(*name))
        .unwrap_or(CLASS_RANGES[0]);
    let series = web
        .api
        .class_series(Duration::from_secs(range_secs), SystemTime::now())
        .await?;
    let clock = |secs: u64| crate::api::utc_text(secs as f64);
    let first = series.starts.first().map(|s| clock(*s)).unwrap_or_default();
    let last = series.starts.last().map(|s| clock(*s)).unwrap_or_default();
    let per = if series.step_secs == 60 {
        "a minute"
    } else {
        "per 10 minutes"
    };
    let ms = |secs: f64| {
        if secs.is_infinite() {
            "> 300 s".to_string()
        } else if secs >= 1.0 {
            format!("{secs:.2} s")
        } else {
            format!("{:.2} ms", secs * 1000.0)
        }
    };
    let body = html! {
        h1 { "Classes" }
        section {
            h2 { "Over time (UTC)" }
            p.tabs { @for (name, _) in CLASS_RANGES { a.active[name == range] href={ (ctx.base) "/classes?range=" (name) } { (name) } } }
            p.legend { span.processed { "■ runs" } " " span.failed { "■ failures" } " " (per) ", from the per-minute metrics every server writes (Sidekiq 7/8's Metrics tab reads the same keys)" }
            @for c in series.classes.iter().take(CHARTED_CLASSES) {
                div.class-series {
                    @let (runs, failed, mean) = c.totals();
                    h3 {
                        (c.class) " · " (runs) " runs, " (failed) " failed"
                        @if let Some(mean) = mean { ", mean " (format!("{mean:.1}")) " ms" }
                    }
                    (line_chart((900.0, 120.0), &[("processed", &c.runs), ("failed", &c.failed)], (&first, &last), per, "runs and failures over time"))
                }
            }
            @if series.classes.is_empty() { p { "No job ran in this range." } }
        }
        h2 { "Since the metrics began" }
        p { "Runs of " code { "perform" } " per worker class, summed over every server since the metrics began. p95 is the upper bound of the histogram bucket holding the 95th percentile." }
        table {
            thead { tr { th { "class" } th { "runs" } th { "failed" } th { "failure rate" } th { "mean" } th { "p95 ≤" } } }
            tbody {
                @for m in &metrics {
                    tr {
                        td { (m.class) }
                        td { (m.count) }
                        td { (m.failed) }
                        td { (format!("{:.1}%", if m.count == 0 { 0.0 } else { m.failed as f64 * 100.0 / m.count as f64 })) }
                        td { (ms(m.mean())) }
                        td { (ms(m.p95())) }
                    }
                }
                @if metrics.is_empty() { tr { td colspan="6" { "No job has run yet." } } }
            }
        }
    };
    Ok(layout(&ctx, "Classes", "classes", true, None, body))
}

pub(super) async fn api_stats(State(web): State<Arc<Web>>) -> Result<Json<Value>, WebError> {
    let s = web.api.stats().await?;
    Ok(Json(json!({
        "processed": s.processed, "failed": s.failed, "discarded": s.discarded, "busy": s.busy, "enqueued": s.enqueued,
        "scheduled": s.scheduled, "retries": s.retries, "dead": s.dead, "processes": s.processes,
        "default_queue_latency": s.default_queue_latency, "at": crate::clock::now_secs(),
    })))
}

pub(super) async fn api_history(
    State(web): State<Arc<Web>>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, WebError> {
    let history = web.api.history(params.days(), SystemTime::now()).await?;
    Ok(Json(json!(history)))
}

pub(super) async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/app.css"),
    )
}

pub(super) async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/app.js"),
    )
}

pub(super) async fn not_found(Extension(ctx): Extension<Ctx>) -> Response {
    let body = html! { h1 { "Not found" } p { a href=(ctx.home()) { "Dashboard" } } };
    (
        StatusCode::NOT_FOUND,
        layout(&ctx, "Not found", "", false, None, body),
    )
        .into_response()
}
